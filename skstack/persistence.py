"""A pickle-free file format for fitted pipelines: :func:`save` and :func:`load`.

joblib files are pickles: loading one runs whatever code it names, and a damaged one can load
partly. A ``.skstack`` file is a zip archive of data only:

- ``manifest.json``: the format version, the versions of skstack and the libraries that
  wrote it, and a SHA-256 checksum of every other file;
- ``graph.json``: the object tree (pipelines, skstack estimators, their parameters and small
  fitted attributes as JSON; classes by name, resolved on load from an allow-list);
- ``tensors/<n>.safetensors``: torch weights (encoders, the Bi-LSTM) and arrays;
- ``models/<n>/``: each encoder's config and tokenizer files, as ``save_pretrained`` writes
  them (JSON and vocabulary files);
- ``sklearn/<n>.skops``: scikit-learn parts (TF-IDF, SVD, the meta-learner) through skops,
  loaded with skops's default trusted types only.

Loading never executes code from the file: classes are looked up by name among scikit-learn,
skstack, skorch callbacks, torch optimizers and transformers models (plus names the caller
passes in ``trusted``), and the tokenizer and model loaders run with remote code off.

Import rule: any skstack module except ``pipelines``, ``plotting``, ``report`` and ``cli``;
skops and safetensors only inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from skstack._loading import device_or_cpu
from skstack._version import LIBRARIES, __version__, library_versions
from skstack.cards import model_card
from skstack.encoder import EncoderEmbedder
from skstack.losses import LabelStatistics
from skstack.nets import BiLSTMClassifier
from skstack.stacking import StackingEmbedder
from skstack.thresholds import TunedThresholds

FORMAT_VERSION = 1
# Where classes named in a file may come from without the caller trusting them by name.
_TRUSTED_PREFIXES = ("sklearn.", "skstack.", "skorch.callbacks.", "torch.optim.",
                     "transformers.models.")
_TRUSTED_NAMES = {"skorch.dataset.Dataset", "skorch.dataset.ValidSplit",
                  "torch.utils.data.dataloader.DataLoader"}
# Fitted attributes kept as JSON, per class; the heavy ones are handled by name below.
_STATE = {
    EncoderEmbedder: ("max_length_", "dtype_", "layer_indices_", "embedding_dim_", "fingerprint_",
                      "weights_hash_", "finetune_loss_"),
    StackingEmbedder: ("blocks_", "word_blocks_", "n_labels_", "label_names_"),
    BiLSTMClassifier: ("blocks_", "word_blocks_", "label_names_", "n_labels_",
                       "n_features_in_", "classes_", "target_type_"),
    TunedThresholds: ("estimator_", "thresholds_", "best_score_", "n_tuning_rows_",
                      "n_samples_fit_", "label_names_", "classes_", "target_type_", "n_labels_"),
}


@contextlib.contextmanager
def _atomically(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; when the block succeeds it replaces
    ``path`` in one step, so a reader sees the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


class ModelFileError(ValueError):
    """A file that is not a readable ``.skstack`` model: damaged, truncated or untrusted."""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve(name: str, trusted: frozenset[str]) -> type:
    """The class ``name`` if it may be named in a file: a trusted class, or a numpy scalar
    type (a ``dtype`` parameter). Never a function."""
    module, _, attr = name.rpartition(".")
    allowed = name in trusted or name in _TRUSTED_NAMES or name.startswith(_TRUSTED_PREFIXES)
    if not (allowed or module == "numpy"):
        raise ModelFileError(f"The file names the class {name!r}, which is not trusted; if you "
                             f"trust it, load with trusted=[{name!r}].")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelFileError(f"The file names the class {name!r}, which cannot be imported "
                             f"here: {exc}") from None
    if not isinstance(found, type) or (not allowed and not issubclass(found, np.generic)):
        raise ModelFileError(f"The file names {name!r}, which is not a class it may name.")
    return found


class _NotData(TypeError):
    """A parameter value with no data representation (a function, an open dataset, ...)."""


class _Writer:
    """Turns an object tree into JSON nodes and files under ``root``."""

    def __init__(self, root: Path):
        self.root, self.count, self.dropped = root, 0, []

    def _name(self) -> str:
        self.count += 1
        return str(self.count)

    def value(self, v):
        """A parameter or small attribute as JSON (estimators become nodes)."""
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            v = float(v)
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                return {"__objects__": [self.value(x) for x in v.tolist()]}
            return {"__array__": v.tolist(), "dtype": v.dtype.str, "shape": list(v.shape)}
        if isinstance(v, tuple):
            return {"__tuple__": [self.value(x) for x in v]}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"__dict__": {k: self.value(x) for k, x in v.items()}}
        if isinstance(v, type):
            return {"__type__": _qualname(v)}
        if isinstance(v, torch.device):
            return str(v)
        if isinstance(v, LabelStatistics):
            return {"__label_statistics__": [v.n_samples, self.value(v.positives),
                                             self.value(v.correlation)]}
        if isinstance(v, (Pipeline, BaseEstimator, BiLSTMClassifier)) or _is_callback(v):
            return {"__node__": self.node(v)}
        raise _NotData(type(v).__name__)

    def params(self, obj, skip: Iterable[str] = ()) -> dict:
        out = {}
        for key, v in obj.get_params(deep=False).items():
            if key.startswith("_") or key in skip:
                continue
            try:
                out[key] = self.value(v)
            except _NotData as exc:
                self.dropped.append(f"{type(obj).__name__}.{key} ({exc})")
        return out

    def node(self, obj) -> dict:
        if isinstance(obj, Pipeline):
            return {"kind": "pipeline", "params": self.params(obj, skip=("steps",)),
                    "steps": [[name, self.node(step)] for name, step in obj.steps]}
        skstack = type(obj) in _STATE
        if not skstack and (_is_callback(obj) or not _is_fitted(obj)):
            return {"kind": "object", "class": _qualname(type(obj)), "params": self.params(obj)}
        if not skstack:
            return self.skops(obj)
        node = {"kind": "skstack", "class": _qualname(type(obj)),
                "params": self.params(obj, skip=("members",)), "state": {}}
        if isinstance(obj, StackingEmbedder):
            node["members"] = [[name, self.node(m)] for name, m in obj.members]
        if not hasattr(obj, _STATE[type(obj)][0]):
            return node  # not fitted: parameters only
        node["state"] = {k: self.value(getattr(obj, k)) for k in _STATE[type(obj)]
                         if hasattr(obj, k) and k != "estimator_"}
        if isinstance(obj, EncoderEmbedder):
            node["model"] = self.encoder_files(obj)
        elif isinstance(obj, StackingEmbedder):
            node["members_"] = [[name, self.node(m)] for name, m in obj.members_]
            node["meta_learner_"] = None if obj.meta_learner_ is None else self.node(
                obj.meta_learner_)
        elif isinstance(obj, BiLSTMClassifier):
            node["state"]["label_statistics_"] = self.value(obj.label_statistics_)
            node["weights"] = self.tensors(obj.module_.state_dict())
            try:
                node["history"] = self.value(obj.history.to_list())
            except _NotData as exc:
                self.dropped.append(f"{type(obj).__name__}.history ({exc})")
        elif isinstance(obj, TunedThresholds):
            node["estimator_"] = self.node(obj.estimator_)
        return node

    def tensors(self, tensors: dict) -> str:
        from safetensors.torch import save_file

        name = f"tensors/{self._name()}.safetensors"
        (self.root / "tensors").mkdir(exist_ok=True)
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
                  str(self.root / name))
        return name

    def encoder_files(self, emb: EncoderEmbedder) -> dict:
        folder = f"models/{self._name()}"
        emb.tokenizer_.save_pretrained(self.root / folder)
        emb.model_.config.to_json_file(self.root / folder / "config.json")
        # float32 whatever dtype the encoder runs in; it is cast again on load
        weights = {k: v.float() if v.is_floating_point() else v
                   for k, v in emb.model_.state_dict().items()}
        return {"folder": folder, "class": _qualname(type(emb.model_)),
                "weights": self.tensors(weights)}

    def skops(self, obj) -> dict:
        import skops.io

        name = f"sklearn/{self._name()}.skops"
        (self.root / "sklearn").mkdir(exist_ok=True)
        skops.io.dump(obj, self.root / name)
        untrusted = skops.io.get_untrusted_types(file=self.root / name)
        if untrusted:
            raise TypeError(f"{type(obj).__name__} holds types that the safe format would have "
                            f"to trust blindly ({untrusted[:5]}); save it with joblib instead.")
        return {"kind": "skops", "file": name}


def _is_callback(v) -> bool:
    return type(v).__module__.startswith("skorch.callbacks")


def _is_fitted(obj) -> bool:
    return any(k.endswith("_") and not k.startswith("__") for k in vars(obj))


def save(estimator, path: str | os.PathLike, card: bool = True) -> Path:
    """Save a fitted (or unfitted) pipeline or estimator, with a model card beside it.

    Parameters
    ----------
    estimator : Pipeline, skstack estimator or scikit-learn estimator
    path : path-like
        The file to write, replaced atomically (an existing file is never left
        half-written). A name ending in ``.joblib`` or ``.pkl`` is written with
        ``joblib.dump`` (a pickle: load it only from sources you trust); any other name
        (conventionally ``*.skstack``) in the pickle-free ``.skstack`` format.
    card : bool, default=True
        Also write :func:`~skstack.cards.model_card` as ``<name>.card.md`` beside the
        file (``model.skstack`` → ``model.card.md``).

    Returns
    -------
    Path of the model file written.

    Notes
    -----
    Parameters that are objects rather than data (a ``train_split`` callable, a
    ``predefined_split`` dataset) cannot be stored; they are listed in one warning and the
    loaded estimator has their defaults. Optimizer state is not stored: the loaded net
    predicts identically, and a further ``partial_fit`` starts a fresh optimizer.

    Examples
    --------
    >>> from skstack import TunedThresholds, save, load
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multiclass import OneVsRestClassifier
    >>> X, Y = [[0.0], [1.0], [2.0], [3.0]], [[0, 1], [0, 1], [1, 0], [1, 0]]
    >>> clf = TunedThresholds(OneVsRestClassifier(LogisticRegression()), cv="prefit")
    >>> clf.estimator.fit(X, Y)  # doctest: +ELLIPSIS
    OneVsRestClassifier(...)
    >>> _ = clf.fit(X, Y)
    >>> import tempfile, os
    >>> file = save(clf, os.path.join(tempfile.mkdtemp(), "model.skstack"))
    >>> (load(file).predict(X) == clf.predict(X)).all()
    np.True_
    """
    path = Path(path)
    if path.suffix in (".joblib", ".pkl"):
        with _atomically(path) as partial:
            joblib.dump(estimator, partial)
    else:
        _save_skstack(estimator, path)
    if card:  # after the model: a card never describes a model that failed to save
        with _atomically(card_path(path)) as partial:
            partial.write_text(model_card(estimator), encoding="utf-8")
    return path


def card_path(path: str | os.PathLike) -> Path:
    """Where :func:`save` writes the model card of ``path``: ``model.skstack`` →
    ``model.card.md``."""
    path = Path(path)
    return path.with_name(path.stem + ".card.md")


def _save_skstack(estimator, path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        writer = _Writer(root)
        graph = writer.node(estimator)
        (root / "graph.json").write_text(json.dumps(graph), encoding="utf-8")
        files = sorted(p for p in root.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT_VERSION,
            "versions": library_versions(),
            "sha256": {str(p.relative_to(root)): _sha256(p.read_bytes()) for p in files},
        }
        with _atomically(path) as partial, \
                zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=1))
            for p in files:
                archive.write(p, str(p.relative_to(root)))
    if writer.dropped:
        warnings.warn("These parameters are objects, not data, and were not saved (the loaded "
                      f"estimator uses their defaults): {', '.join(writer.dropped)}.",
                      UserWarning, stacklevel=3)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Reader:
    def __init__(self, root: Path, trusted: frozenset[str]):
        self.root, self.trusted = root, trusted

    def value(self, v):
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "__float__" in v:
            return float(v["__float__"])
        if "__array__" in v:
            return np.asarray(v["__array__"], dtype=np.dtype(v["dtype"])).reshape(v["shape"])
        if "__objects__" in v:
            return np.asarray([self.value(x) for x in v["__objects__"]], dtype=object)
        if "__tuple__" in v:
            return tuple(self.value(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {k: self.value(x) for k, x in v["__dict__"].items()}
        if "__type__" in v:
            return _resolve(v["__type__"], self.trusted)
        if "__label_statistics__" in v:
            n, positives, correlation = v["__label_statistics__"]
            return LabelStatistics(n, self.value(positives), self.value(correlation))
        if "__node__" in v:
            return self.node(v["__node__"])
        raise ModelFileError(f"Unknown value in graph.json: {sorted(v)[:3]}.")

    def params(self, node: dict) -> dict:
        return {k: self.value(v) for k, v in node["params"].items()}

    def node(self, node: dict):
        kind = node["kind"]
        if kind == "pipeline":
            steps = [(name, self.node(step)) for name, step in node["steps"]]
            return Pipeline(steps, **self.params(node))
        if kind == "skops":
            import skops.io

            try:
                return skops.io.load(self.root / node["file"])
            except Exception as exc:  # skops raises its own types for untrusted content
                raise ModelFileError(f"{node['file']} could not be loaded safely: {exc}") from None
        cls = _resolve(node["class"], self.trusted)
        params = self.params(node)
        if kind == "object":
            return cls(**params)
        if cls is StackingEmbedder:
            params["members"] = [(name, self.node(m)) for name, m in node["members"]]
        if cls is BiLSTMClassifier:
            params["device"] = str(device_or_cpu(params.get("device", "cpu"), "net"))
        obj = cls(**params)
        for key, v in node["state"].items():
            setattr(obj, key, self.value(v))
        if not node["state"]:
            return obj
        if cls is EncoderEmbedder:
            self.encoder(obj, node["model"])
        elif cls is StackingEmbedder:
            obj.members_ = [(name, self.node(m)) for name, m in node["members_"]]
            meta = node["meta_learner_"]
            obj.meta_learner_ = None if meta is None else self.node(meta)
        elif cls is BiLSTMClassifier:
            from skorch.history import History

            obj.initialize()
            obj.module_.load_state_dict(self.tensors(node["weights"], obj.device))
            obj.module_.eval()
            obj.history_ = History(self.value(node.get("history", [])))
        elif cls is TunedThresholds:
            obj.estimator_ = self.node(node["estimator_"])
        return obj

    def tensors(self, name: str, device="cpu") -> dict:
        from safetensors.torch import load_file

        return load_file(str(self.root / name), device=str(device))

    def encoder(self, emb: EncoderEmbedder, files: dict) -> None:
        from transformers import AutoConfig, AutoTokenizer

        folder = self.root / files["folder"]
        emb.tokenizer_ = AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                       trust_remote_code=False)
        model_cls = _resolve(files["class"], self.trusted)
        config = AutoConfig.from_pretrained(folder, local_files_only=True,
                                            trust_remote_code=False)
        model = model_cls(config)
        model.load_state_dict(self.tensors(files["weights"]))
        emb.device_ = device_or_cpu(emb.device, "embedder")
        emb.model_ = emb._placed(model.float().eval(), shared=False)


def load(path: str | os.PathLike, trusted: Iterable[str] = ()):
    """Load what :func:`save` wrote, checking every file's checksum first.

    Parameters
    ----------
    path : path-like
    trusted : iterable of str
        Fully qualified names of further classes the file may name (your own module or
        criterion class, say). scikit-learn, skstack, skorch callbacks, torch optimizers and
        transformers models are trusted already.

    Returns
    -------
    The estimator or pipeline, on the CPU unless the device it was saved with exists here.

    Raises
    ------
    ModelFileError
        The file is damaged, truncated, from a newer format, or names untrusted classes.
    """
    path = Path(path)
    if path.suffix in (".joblib", ".pkl"):
        raise ModelFileError(f"{path} is a pickle, which load() never runs: read it with "
                             "joblib.load, and only if you trust where it came from.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable skstack model file ({exc}).") from None
    with archive, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            manifest = json.loads(archive.read("manifest.json"))
            expected = manifest["sha256"]
            names = set(archive.namelist()) - {"manifest.json"}
            if names != set(expected):
                raise ModelFileError(f"{path} does not hold the files its manifest lists.")
            for name, digest in expected.items():
                data = archive.read(name)
                if _sha256(data) != digest:
                    raise ModelFileError(f"{path} is damaged: {name} fails its checksum.")
                target = root / name
                if root.resolve() not in target.resolve().parents:
                    raise ModelFileError(f"{path} names a file outside the archive: {name}.")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
            raise ModelFileError(f"{path} is damaged ({type(exc).__name__}: {exc}).") from None
        if manifest.get("format", 0) > FORMAT_VERSION:
            raise ModelFileError(f"{path} was written in format {manifest['format']} by "
                                 f"skstack {manifest['versions'].get('skstack')}; this skstack "
                                 f"({__version__}) reads format {FORMAT_VERSION} at most.")
        _check_versions(path, manifest.get("versions", {}))
        graph = json.loads((root / "graph.json").read_text(encoding="utf-8"))
        return _Reader(root, frozenset(trusted)).node(graph)


def _check_versions(path: Path, saved: dict) -> None:
    here = library_versions()
    differ = [f"{name} {saved[name]} (here {here[name]})" for name in LIBRARIES
              if name in saved and saved[name] != here[name]]
    if differ:
        warnings.warn(f"{path} was saved with other versions: {', '.join(differ)}. It loaded, "
                      "but check its predictions before relying on them.", UserWarning,
                      stacklevel=3)

