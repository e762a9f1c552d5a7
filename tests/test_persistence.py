"""The pickle-free .skstack format: round trips, damage, trust and versions."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline

from skstack import (
    BiLSTMClassifier,
    EncoderEmbedder,
    HybridLoss,
    ModelFileError,
    StackingEmbedder,
    TunedThresholds,
    char_tfidf_member,
    load,
    save,
)


@pytest.fixture(scope="module")
def fitted(tiny_bert):
    rng = np.random.default_rng(0)
    from conftest import FIXTURE_TEXTS

    texts = [f"{FIXTURE_TEXTS[i % len(FIXTURE_TEXTS)]} {i}" for i in range(60)]
    Y = (rng.random((60, 4)) < 0.3).astype(int)
    Y[Y.sum(axis=1) == 0, 1] = 1
    stack = StackingEmbedder([("bert", EncoderEmbedder(tiny_bert, dtype="bfloat16")),
                              ("chars", char_tfidf_member(8))], cv=3, random_state=0)
    net = BiLSTMClassifier(max_epochs=2, batch_size=16, random_state=0,
                           module__residual="auto", criterion__corr_form="pairwise",
                           module__projection_dim=16, module__hidden_size=8)
    pipe = Pipeline([("embed", stack),
                     ("clf", TunedThresholds(net, objective="jaccard", min_labels=1, cv=0.2,
                                             refit=False, random_state=0))])
    return pipe.fit(texts, Y), texts


def test_a_stacked_pipeline_loads_in_a_fresh_process_and_predicts_identically(fitted,
                                                                              tmp_path):
    pipe, texts = fitted
    save(pipe, tmp_path / "model.skstack")
    np.save(tmp_path / "expected.npy", pipe.predict_proba(texts))
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = (
        "import json, sys, numpy as np, skstack\n"
        f"folder = {str(tmp_path)!r}\n"
        "pipe = skstack.load(folder + '/model.skstack')\n"
        "texts = json.load(open(folder + '/texts.json'))\n"
        "np.save(folder + '/got.npy', pipe.predict_proba(texts))\n"
        "print(type(pipe.named_steps['clf'].estimator_.module_).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "",
                                            "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "BiLSTMModule"
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"),
                                  np.load(tmp_path / "expected.npy"))


def test_round_trip_keeps_parameters_state_and_decisions(fitted, tmp_path):
    pipe, texts = fitted
    loaded = load(save(pipe, tmp_path / "m.skstack"))
    np.testing.assert_array_equal(loaded.predict(texts), pipe.predict(texts))
    clf, orig = loaded.named_steps["clf"], pipe.named_steps["clf"]
    np.testing.assert_array_equal(clf.thresholds_, orig.thresholds_)
    assert clf.get_params()["estimator__criterion__corr_form"] == "pairwise"
    assert clf.estimator_.blocks_ == orig.estimator_.blocks_
    assert len(clf.estimator_.history) == 2
    emb = loaded.named_steps["embed"].members_[0][1]
    assert emb.fingerprint_ == pipe.named_steps["embed"].members_[0][1].fingerprint_
    assert emb.model_.dtype == torch.bfloat16  # the precision it was fitted with
    assert not zipfile.ZipFile(tmp_path / "m.skstack").namelist().count("model.pkl")


def test_a_word_mode_pipeline_round_trips(tiny_bert, emotion_data, tmp_path):
    texts, Y = emotion_data
    stack = StackingEmbedder([("a", EncoderEmbedder(tiny_bert, word_pooling="first"))],
                             cv=2, random_state=0)
    pipe = Pipeline([("embed", stack), ("clf", BiLSTMClassifier(max_epochs=1, random_state=0))])
    pipe.fit(texts, Y)
    loaded = load(save(pipe, tmp_path / "w.skstack"))
    np.testing.assert_array_equal(loaded.predict_proba(texts), pipe.predict_proba(texts))


@pytest.mark.parametrize("where", [0.0, 0.3, 0.6, 0.9, 0.999])
def test_one_flipped_byte_is_refused_with_a_clear_error(fitted, tmp_path, where):
    path = save(fitted[0], tmp_path / "m.skstack")
    raw = bytearray(path.read_bytes())
    raw[int(where * (len(raw) - 1))] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=r"m\.skstack"):
        load(path)


def test_a_truncated_file_is_refused(fitted, tmp_path):
    path = save(fitted[0], tmp_path / "m.skstack")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="not a readable skstack model file"):
        load(path)


class OwnLoss(HybridLoss):
    """A user's criterion: a class the format does not trust unless told."""


def test_classes_outside_the_allow_list_load_only_when_trusted(tmp_path):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 6)), rng.integers(0, 2, size=(40, 3))
    net = BiLSTMClassifier(criterion=OwnLoss, blocks=[6], max_epochs=1, random_state=0)
    path = save(net.fit(X, Y), tmp_path / "own.skstack")
    name = f"{OwnLoss.__module__}.OwnLoss"
    with pytest.raises(ModelFileError, match=rf"not trusted.*trusted=\['{name}'\]"):
        load(path)
    np.testing.assert_array_equal(load(path, trusted=[name]).predict_proba(X),
                                  net.predict_proba(X))


def test_versions_are_recorded_and_a_mismatch_is_named(fitted, tmp_path, monkeypatch):
    import skstack._version

    monkeypatch.setattr(skstack._version, "__version__", "0.0.1")
    path = save(fitted[0], tmp_path / "old.skstack")
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert manifest["versions"]["skstack"] == "0.0.1" and "torch" in manifest["versions"]
    monkeypatch.undo()
    with pytest.warns(UserWarning, match=r"saved with other versions: skstack 0\.0\.1"):
        load(path)


def test_parameters_that_are_not_data_are_named_when_saving(tmp_path):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 6)), rng.integers(0, 2, size=(40, 3))

    def my_split(dataset, y):
        return dataset, None

    net = BiLSTMClassifier(blocks=[6], max_epochs=1, train_split=my_split).fit(X, Y)
    with pytest.warns(UserWarning, match=r"BiLSTMClassifier\.train_split \(function\)"):
        path = save(net, tmp_path / "n.skstack")
    assert load(path).train_split is None


def test_joblib_files_record_the_version_that_saved_them(fitted, tmp_path, monkeypatch):
    import joblib

    import skstack._version

    joblib.dump(fitted[0], tmp_path / "m.joblib")
    monkeypatch.setattr(skstack._version, "__version__", "9.9")
    with pytest.warns(UserWarning, match=r"saved by skstack 0\.2\.0\.dev0 and is loaded by "
                                         r"skstack 9\.9") as caught:
        joblib.load(tmp_path / "m.joblib")
    owners = {str(w.message).split()[1] for w in caught}
    assert {"EncoderEmbedder", "StackingEmbedder", "TunedThresholds",
            "BiLSTMClassifier"} <= owners
