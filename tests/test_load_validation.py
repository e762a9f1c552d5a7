"""``skstack.load`` checks a file's state as ``fit`` would: an edited file whose checksums were
recomputed (the manifest is not signed) is refused with a :class:`ModelFileError` naming the
node and the attribute, its cache key comes from the weights it really holds, and it chooses
no place for the loading process to write."""

import hashlib
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skstack import ModelFileError, load
from skstack.persistence import _seal

TEXTS = ["thank you so much!", "this is terrible", "I am scared", "what a lovely day"]


def members_of(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewritten(source, target, graph=None, members=None):
    """``source`` with its graph (and members) replaced, the checksums made to match."""
    found = members_of(source)
    if graph is not None:
        found["graph.json"] = json.dumps(graph).encode()
    found.update(members or {})
    manifest = json.loads(found["manifest.json"])
    manifest["sha256"] = {name: hashlib.sha256(data).hexdigest()
                          for name, data in found.items() if name != "manifest.json"}
    found["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in found.items():
            archive.writestr(name, data)
    _seal(target)  # as save does
    return target


def graph_of(path) -> dict:
    return json.loads(members_of(path)["graph.json"])


def rule(graph) -> dict:
    return graph["steps"][1][1]  # TunedThresholds


def encoder(graph) -> dict:
    return graph["steps"][0][1]["members_"][0][1]


def net(graph) -> dict:
    return rule(graph)["estimator_"]["estimators_"][0][1]  # the first of the fold nets


def _array(values, dtype="<f8"):
    return {"__array__": values, "dtype": dtype, "shape": [len(values)]}


EDITS = {  # what fit refuses or never makes -> what the error names
    "max_labels=0": (lambda g: rule(g)["params"].update(max_labels=0),
                     r"TunedThresholds: The 'max_labels' parameter of TunedThresholds must be "
                     r"an integer >= 1 or None; got 0"),
    "thresholds out of [0, 1]": (lambda g: rule(g)["state"].update(
        thresholds_=_array([7.0, -2.0, 0.5])), r"TunedThresholds: the fitted attribute "
                                               r"'thresholds_': .*in \[0, 1\]"),
    "a NaN threshold": (lambda g: rule(g)["state"].update(
        thresholds_=_array([float("nan"), 0.5, 0.5])), r"'thresholds_': .*got array\(\[nan"),
    "2 thresholds for 3 labels": (lambda g: rule(g)["state"].update(
        thresholds_=_array([0.5, 0.5])), r"'thresholds_': .* or 3 such numbers"),
    "duplicate label names": (lambda g: rule(g)["state"].update(
        label_names_=["joy", "joy", "fear"]), r"'label_names_' of TunedThresholds must be a "
                                              r"list of distinct strings"),
    "label names of another length": (lambda g: net(g)["state"].update(
        label_names_=["a", "b"]), r"BiLSTMClassifier: the fitted attribute 'label_names_' of "
                                  r"BiLSTMClassifier holds 2 names for n_labels_=3"),
    "an unknown backend_": (lambda g: encoder(g)["state"].update(backend_="tpu"),
                            r"EncoderEmbedder: the fitted attribute 'backend_' of "
                            r"EncoderEmbedder must be one of 'torch', 'onnx', 'openvino'"),
    "a wrong embedding_dim_": (lambda g: encoder(g)["state"].update(embedding_dim_=31),
                               r"'embedding_dim_' of EncoderEmbedder is 31; its layers give 32"),
    "a layer index of 2**63": (lambda g: encoder(g)["state"].update(layer_indices_=[2**63]),
                               r"'layer_indices_' of EncoderEmbedder must be a non-empty list"),
    "a layer index of 1e308": (lambda g: encoder(g)["state"].update(layer_indices_=[1e308]),
                               r"'layer_indices_' of EncoderEmbedder must be a non-empty list"),
    "a layer the encoder lacks": (lambda g: encoder(g)["state"].update(layer_indices_=[9]),
                                  r"names layer 9; the encoder has 3 hidden states"),
    "classes_ holding 2**63": (lambda g: rule(g)["state"].update(
        classes_=_array([0, 1, 2**63], "<i8")), r"malformed at Pipeline > TunedThresholds "
                                                r"\(OverflowError"),
    "a negative batch_size": (lambda g: encoder(g)["params"].update(batch_size=-3),
                              r"The 'batch_size' parameter of EncoderEmbedder must be an "
                              r"integer >= 1; got -3"),
    "members_ renamed": (lambda g: g["steps"][0][1]["members_"][0].__setitem__(0, "other"),
                         r"'members_' of StackingEmbedder holds \['other', 'chars'\]"),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_state_fit_would_refuse_is_a_model_file_error_naming_it(trained, tmp_path, case):
    edit, message = EDITS[case]
    graph = graph_of(trained[2])
    edit(graph)
    path = rewritten(trained[2], tmp_path / "edited.skstack", graph)
    with pytest.raises(ModelFileError, match=r"edited\.skstack: graph\.json.*" + message):
        load(path)


def test_a_missing_fingerprint_is_recomputed_from_the_weights(trained, tmp_path):
    original = load(trained[2])
    graph = graph_of(trained[2])
    del encoder(graph)["state"]["fingerprint_"]
    loaded = load(rewritten(trained[2], tmp_path / "edited.skstack", graph))
    assert loaded.steps[0][1].members_[0][1].fingerprint_ == \
        original.steps[0][1].members_[0][1].fingerprint_
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), original.predict_proba(TEXTS))


def test_weights_changed_under_a_kept_fingerprint_never_read_the_originals_cache(
        trained, tmp_path):
    import torch
    from safetensors.torch import load as read_tensors
    from safetensors.torch import save as write_tensors

    shared = tmp_path / "shared-cache"
    original = load(trained[2], cache=shared)
    before = original.predict_proba(TEXTS)  # fills the shared cache
    name = encoder(graph_of(trained[2]))["model"]["weights"]
    tensors = read_tensors(members_of(trained[2])[name])
    scaled = {k: v * 1.5 if v.is_floating_point() else v for k, v in tensors.items()}
    path = rewritten(trained[2], tmp_path / "scaled.skstack",
                     members={name: write_tensors(scaled)})
    tampered = load(path, cache=shared)
    member = tampered.steps[0][1].members_[0][1]
    assert member.fingerprint_ != original.steps[0][1].members_[0][1].fingerprint_
    after = tampered.predict_proba(TEXTS)
    assert np.abs(after - before).max() > 1e-3  # its own weights' answers, not the cache's
    with torch.inference_mode():
        member.cache = None  # computed afresh, nothing cached: the same answers
        np.testing.assert_allclose(tampered.predict_proba(TEXTS), after, atol=1e-6)
    again = load(trained[2], cache=shared)  # the original's cache is unchanged
    np.testing.assert_allclose(again.predict_proba(TEXTS), before, atol=1e-6)


def test_a_cache_folder_stored_in_the_file_is_not_used(trained, tmp_path):
    elsewhere = tmp_path / "chosen-by-the-file"
    graph = graph_of(trained[2])
    encoder(graph)["params"]["cache"] = str(elsewhere)
    path = rewritten(trained[2], tmp_path / "edited.skstack", graph)
    with pytest.warns(UserWarning, match=r"saved with cache='.*chosen-by-the-file', which a "
                                         r"loaded file does not choose: it uses "
                                         r"cache='memory'"):
        model = load(path)
    model.predict(TEXTS)
    assert not elsewhere.exists()
    mine = tmp_path / "mine"
    with pytest.warns(UserWarning, match=r"it uses cache='.*mine'"):
        model = load(path, cache=str(mine))
    model.predict(["a text no other test encodes"])  # so it is in no memory cache either
    assert mine.is_dir() and not elsewhere.exists()


def test_a_device_stored_in_the_file_is_not_used(trained, tmp_path):
    graph = graph_of(trained[2])
    net(graph)["params"]["device"] = "cuda:3"
    encoder(graph)["params"]["device"] = ["cuda:0", "cuda:1"]  # would start two processes
    path = rewritten(trained[2], tmp_path / "edited.skstack", graph)
    with pytest.warns(UserWarning, match=r"The net was saved with device='cuda:3'; a loaded "
                                         r"file runs on the CPU unless "
                                         r"load\(\.\.\., device='cuda:3'\) says otherwise"):
        model = load(path)
    member = model.steps[0][1].members_[0][1]
    fold_net = model.steps[1][1].estimator_.estimators_[0][1]
    assert fold_net.device == "cpu" and member.device == "cpu"
    assert member.device_.type == "cpu" and len(model.predict(TEXTS)) == len(TEXTS)


# ------------------------------------------------------------------ any edit of any leaf

def _leaves(node, path=()):
    """(path, value) of every leaf of a graph, inside the nodes' parameters and state."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path, node


def _set(graph, path, value):
    for key in path[:-1]:
        graph = graph[key]
    graph[path[-1]] = value


BAD_VALUES = st.sampled_from([
    "x", "", [], {}, None, True, -1, 0, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 0.5,
    float("nan"), float("inf"), {"__float__": "nan"}, {"__float__": "-inf"}, [1, 1, 1],
    ["joy", "joy"], {"__node__": {}}, {"__type__": "os.system"},
])


@pytest.fixture(scope="module")
def leaves(trained):
    graph = graph_of(trained[2])
    # the leaves fit and predict read: parameters, fitted state, layout (not file names)
    return [p for p, _ in _leaves(graph)
            if any(k in ("params", "state") for k in p) or p[-1] in ("kind", "class")]


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_invalid_leaf_is_refused_at_load_or_named_at_predict(trained, leaves, tmp_path,
                                                                 data):
    path = data.draw(st.sampled_from(leaves), label="leaf")
    value = data.draw(BAD_VALUES, label="value")
    graph = graph_of(trained[2])
    _set(graph, path, value)
    file = rewritten(trained[2], tmp_path / "edited.skstack", graph)
    try:
        model = load(file)
    except ModelFileError as exc:
        assert "edited.skstack" in str(exc) and "\n" not in str(exc).strip()
        return
    try:  # a file that loads predicts, or says clearly why not
        proba = np.asarray(model.predict_proba(TEXTS))
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert proba.shape == (len(TEXTS), 3) and np.isfinite(proba).all()
