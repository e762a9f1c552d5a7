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
  loaded with skops's default trusted types only;
- the archive's comment: the SHA-256 of every byte before it (the zip's own headers, which
  the members' checksums do not cover: a flipped bit in a timestamp or an attribute field
  loaded silently before), checked on load of every file whose manifest says ``sealed``.

Loading never executes code from the file: classes are looked up by name among scikit-learn,
skstack, skorch callbacks, torch optimizers and transformers models (plus names the caller
passes in ``trusted``), and the tokenizer and model loaders run with remote code off.

The format knows no estimator class and sits below them: each one declares its fitted state
(``_portable_state``, ``_portable_parts``, ``_state_constraints``, ``_persist_state`` /
``_restore_state``, ``_check_state``; see :class:`VersionedState`, the protocol, which the
estimators import from here), and the walker here writes, reads and checks that.
:func:`load_model` is the loader of a model file a user names (the CLI's and the server's).

Import rule: ``_config``, ``_files``, ``_loading``, ``_validation``, ``_version``,
``losses`` and ``cards`` (which import no estimator); skops and safetensors only inside the
functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import math
import os
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from skstack._config import progress
from skstack._files import file_sha256, replacing, write_text
from skstack._loading import device_or_cpu
from skstack._validation import check_state, unwrap_search, validate_params
from skstack._version import LIBRARIES, __version__, library_versions
from skstack.cards import model_card
from skstack.losses import LabelStatistics

FORMAT_VERSION = 1
# What a file may unpack to, by default (load's max_bytes): weights of several large encoders.
MAX_BYTES = 16 * 2**30
_JSON_BYTES = 64 * 2**20  # manifest.json and graph.json are parsed in memory
_MAX_RATIO = 200  # weights barely compress; a member unpacking to 200x its size is a zip bomb
_CHUNK = 2**20
# Packages whose classes of each kind a file may name (resolved where they really live).
_KINDS = (
    ("estimator", "sklearn.base.BaseEstimator", ("sklearn", "skstack")),
    ("estimator", "skorch.net.NeuralNet", ("skstack", "skorch")),
    ("callback", "skorch.callbacks.base.Callback", ("skorch.callbacks",)),
    ("module", "torch.nn.modules.module.Module", ("skstack", "torch.nn.modules.loss")),
    ("optimizer", "torch.optim.optimizer.Optimizer", ("torch.optim",)),
    ("encoder", "transformers.modeling_utils.PreTrainedModel", ("transformers.models",)),
)
# Classes a net's parameters name as types (never built from a file's node).
_PARAMETER_TYPES = frozenset({"skorch.dataset.Dataset", "skorch.dataset.ValidSplit",
                              "torch.utils.data.dataloader.DataLoader"})
_DTYPES = frozenset(f"numpy.{t}" for t in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "str_"))
_ARRAY_KINDS = "biufcU"  # dtypes of arrays stored as JSON: numbers, bools, strings
class VersionedState:
    """Mixin for estimators, about what a saved one carries.

    A pickled (joblib) estimator records the skstack version that saved it, and loading it
    under another version warns, as scikit-learn does for its own version.

    For the pickle-free format (``skstack.save``) a class declares its fitted state, and the
    format's walker, which knows no class, reads the declaration: ``_portable_state`` names
    the fitted attributes that are data (numbers, strings, arrays, lists of them),
    ``_portable_parts`` those holding fitted estimators (one, ``None``, or a list of
    ``(name, estimator)`` pairs); ``_persist_state(writer)`` (optional) returns what else a
    fitted instance needs (weights, model files) as entries of its node, and
    ``_restore_state(saved, reader)`` puts that back on a new instance whose declared
    attributes are already set. Any estimator class with ``_portable_state`` (and
    ``get_params``) can be saved; one outside scikit-learn and skstack loads with
    ``load(path, trusted=["its.module.Class"])``.
    """

    _portable_state: tuple[str, ...] = ()
    _portable_parts: tuple[str, ...] = ()
    # parameters added since 0.2 whose default changes what a model computes, with the value
    # that keeps it computing as it did: what a file saved without them loads with
    _added_params: ClassVar[dict] = {}

    def _persist_state(self, writer) -> dict:
        """Entries beyond the declared attributes that a saved fitted instance needs."""
        return {}

    def _restore_state(self, saved: dict, reader) -> None:
        """Put back what :meth:`_persist_state` wrote (``saved``: the node's entries)."""

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_skstack_version"] = __version__
        return state

    def __setstate__(self, state):
        state = {**self._added_params, **state}
        saved = state.pop("_skstack_version", "an unknown version (before 0.2)")
        if saved != __version__:
            warnings.warn(
                f"This {type(self).__name__} was saved by skstack {saved} and is loaded by "
                f"skstack {__version__}; it may not work as it did. Refit it, or load it with "
                "the version that saved it.",
                UserWarning,
                stacklevel=2,
            )
        super().__setstate__(state)


class ModelFileError(ValueError):
    """A file that is not a readable ``.skstack`` model: damaged, truncated or untrusted."""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _within(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _kinds_of(cls: type) -> set[str]:
    """The kinds (``_KINDS``) of ``cls``: which allowed base it derives from, in a package
    allowed for that base."""
    found = set()
    for kind, base_name, packages in _KINDS:
        module, _, attr = base_name.rpartition(".")
        if not _within(cls.__module__, packages):
            continue
        base = getattr(importlib.import_module(module), attr)
        if issubclass(cls, base):
            found.add(kind)
    return found


def _import_exactly(name: str, importable: Iterable[str]) -> type | None:
    """The class whose ``__module__`` + ``__qualname__`` is ``name``; ``None`` if there is
    none. Only modules inside ``importable`` are imported: naming a module runs its code."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module, qualname = ".".join(parts[:cut]), ".".join(parts[cut:])
        if not _within(module, importable):
            continue
        try:
            found = importlib.import_module(module)
        except ImportError:
            continue
        for attr in qualname.split("."):
            found = getattr(found, attr, None)
        # a name imported into an allowed module (its real home is elsewhere) is refused
        if isinstance(found, type) and found.__module__ == module and \
                found.__qualname__ == qualname:
            return found
    return None


def _resolve(name, trusted: frozenset[str], kinds: frozenset[str]) -> type:
    """The class a file names, accepted only when the name is where the class really lives
    and it is of one of ``kinds`` (see ``_KINDS``; ``"type"``: also the parameter types and
    numpy dtypes the format defines), or when the caller trusts that exact name."""
    if not isinstance(name, str):
        raise ModelFileError(f"A class name must be a string, found {name!r:.60}.")
    if name in _DTYPES and "type" in kinds:
        return getattr(np, name.rpartition(".")[2])
    packages = {p for _, _, ps in _KINDS for p in ps} | {"skorch.dataset", "torch.utils.data"}
    trusted_here = name in trusted
    if trusted_here:
        packages.add(name.rpartition(".")[0])
    found = _import_exactly(name, packages)
    allowed = found is not None and (
        trusted_here or bool(_kinds_of(found) & kinds)
        or ("type" in kinds and name in _PARAMETER_TYPES))
    if allowed:
        return found
    if found is None and trusted_here:
        raise ModelFileError(f"The file names the class {name!r}, which cannot be imported "
                             "here (or lives under another name).")
    raise ModelFileError(f"The file names the class {name!r}, which is not trusted as "
                         f"{' or '.join(sorted(kinds))}; if you trust it, load with "
                         f"trusted=[{name!r}].")


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
        if _is_estimator(v) or _is_callback(v):
            return {"__node__": self.node(v)}
        raise _NotData(type(v).__name__)

    def data(self, v, what: str):
        """``v`` as JSON, or ``None`` (named in the warning ``save`` gives) when it is not
        data; for the entries an estimator's ``_persist_state`` writes."""
        try:
            return self.value(v)
        except _NotData as exc:
            self.dropped.append(f"{what} ({exc})")
            return None

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

    def part(self, v):
        """A fitted part: ``None``, an estimator's node, or ``[[name, node], ...]``."""
        if v is None:
            return None
        if _is_named_estimators(v):
            return [[name, self.node(est)] for name, est in v]
        return self.node(v)

    def node(self, obj) -> dict:
        if isinstance(obj, Pipeline):
            return {"kind": "pipeline", "params": self.params(obj, skip=("steps",)),
                    "steps": [[name, self.node(step)] for name, step in obj.steps]}
        portable = hasattr(type(obj), "_portable_state")
        if not portable and (_is_callback(obj) or not _is_fitted(obj)):
            return {"kind": "object", "class": _qualname(type(obj)), "params": self.params(obj)}
        if not portable:
            return self.skops(obj)
        # an estimator that declares its state (VersionedState): parameters, then, fitted,
        # the declared attributes, its parts and what its _persist_state adds
        groups = {k: v for k, v in obj.get_params(deep=False).items()
                  if _is_named_estimators(v)}  # e.g. a stack's members, kept as nodes
        node = {"kind": "skstack", "class": _qualname(type(obj)),
                "params": self.params(obj, skip=groups), "state": {}}
        node.update({k: self.part(v) for k, v in groups.items()})
        declared = (*obj._portable_state, *getattr(obj, "_portable_parts", ()))
        if not any(hasattr(obj, k) for k in declared):
            return node  # not fitted: parameters only
        node["state"] = {k: self.value(getattr(obj, k)) for k in obj._portable_state
                         if hasattr(obj, k)}
        node.update({k: self.part(getattr(obj, k)) for k in getattr(obj, "_portable_parts", ())})
        if hasattr(obj, "_persist_state"):  # more than the declared attributes
            node.update(obj._persist_state(self))
        return node

    def tensors(self, tensors: dict) -> str:
        """Write torch tensors as one safetensors member; returns its name."""
        from safetensors.torch import save_file

        name = f"tensors/{self._name()}.safetensors"
        (self.root / "tensors").mkdir(exist_ok=True)
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
                  str(self.root / name))
        return name

    def folder(self) -> tuple[str, Path]:
        """A new folder for an estimator's files (``save_pretrained`` output): its member
        name and where to write it."""
        name = f"models/{self._name()}"
        (self.root / name).mkdir(parents=True)
        return name, self.root / name

    @staticmethod
    def class_name(cls: type) -> str:
        """How a file names a class: where it is defined (what the reader resolves)."""
        return _qualname(cls)

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


def _is_estimator(v) -> bool:
    from skorch import NeuralNet

    return isinstance(v, (BaseEstimator, NeuralNet)) or hasattr(type(v), "_portable_state")


def _is_named_estimators(v) -> bool:
    """A list of ``(name, estimator)`` pairs, as a Pipeline's steps or a stack's members."""
    return isinstance(v, list) and bool(v) and all(
        isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) and _is_estimator(x[1])
        for x in v)


def _is_fitted(obj) -> bool:
    return any(k.endswith("_") and not k.startswith("__") for k in vars(obj))


def save(estimator, path: str | os.PathLike, card: bool = True) -> Path:
    """Save a fitted (or unfitted) pipeline or estimator, with a model card beside it.

    Parameters
    ----------
    estimator : Pipeline, skstack estimator or scikit-learn estimator
        A fitted search (``GridSearchCV``, ...) is saved as its ``best_estimator_``, with a
        warning that says so; one fitted with ``refit=False`` holds no model and is refused.
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
    for target in (path, card_path(path)) if card else (path,):
        if target.is_dir():  # refused before anything is written or replaced
            raise IsADirectoryError(f"{target} is a folder; save writes a file: give a file "
                                    f"name such as {target / 'model.skstack'}.")
    search = estimator
    estimator = unwrap_search(estimator, "save")
    if estimator is not search:
        warnings.warn(f"Saving the {type(search).__name__}'s best_estimator_ (refitted on "
                      "all rows with its best_params_); the search itself (cv_results_) is "
                      "not saved.", UserWarning, stacklevel=2)
    progress(f"saving {path}")
    if path.suffix in (".joblib", ".pkl"):
        with replacing(path) as partial:
            joblib.dump(estimator, partial)
    else:
        _save_skstack(estimator, path)
    progress(f"saved {path} ({path.stat().st_size / 2**20:,.1f} MiB)")
    if card:  # after the model: a card never describes a model that failed to save
        write_text(card_path(path), model_card(estimator))
    return path


def card_path(path: str | os.PathLike) -> Path:
    """Where :func:`save` writes the model card of ``path``: ``model.skstack`` →
    ``model.card.md``."""
    path = Path(path)
    return path.with_name(path.stem + ".card.md")


# The seal: the archive's comment, after the 2-byte comment length that ends the zip's
# end-of-central-directory record (22 bytes without a comment).
_SEAL = b"skstack-sha256:"
_SEALED_TAIL = 2 + len(_SEAL) + 64


def _seal(path: Path) -> None:
    """Write, as the archive's comment, the SHA-256 of every byte before the comment."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size - 22)
        end = f.read(22)
        if end[:4] != b"PK\x05\x06" or end[20:] != b"\0\0":
            raise ValueError(f"{path}: the zip's end record is not where it was written")
        digest = file_sha256(path, size - 2)
        f.seek(size - 2)
        f.write(struct.pack("<H", _SEALED_TAIL - 2) + _SEAL + digest.encode("ascii"))


def _check_seal(path: Path) -> None:
    """Refuse a file whose bytes do not match its seal (see the module's notes)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(size - _SEALED_TAIL, 0))
        tail = f.read()
    if len(tail) != _SEALED_TAIL or tail[:2] != struct.pack("<H", _SEALED_TAIL - 2) \
            or not tail[2:].startswith(_SEAL):
        raise ModelFileError("the archive's seal (its comment) is missing or damaged")
    if file_sha256(path, size - _SEALED_TAIL) != tail[2 + len(_SEAL):].decode("latin-1"):
        raise ModelFileError("the archive's bytes do not match its seal (SHA-256): the file is "
                             "damaged")


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
            "sha256": {str(p.relative_to(root)): file_sha256(p) for p in files},
        }
        with replacing(path) as partial:
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("manifest.json", json.dumps({**manifest, "sealed": True},
                                                             indent=1))
                for p in files:
                    archive.write(p, str(p.relative_to(root)))
            _seal(partial)
    if writer.dropped:
        warnings.warn("These parameters are objects, not data, and were not saved (the loaded "
                      f"estimator uses their defaults): {', '.join(writer.dropped)}.",
                      UserWarning, stacklevel=3)


_ANY_TYPE = frozenset({"estimator", "callback", "module", "optimizer", "encoder", "type"})


class _Reader:
    """Builds the object tree of a checked graph. Every class comes through :func:`_resolve`;
    ``trail`` names where in the tree the reader is, for the errors."""

    def __init__(self, root: Path, trusted: frozenset[str], max_bytes: int,
                 cache="memory", device: str | None = None):
        self.root, self.trusted, self.max_bytes = root, trusted, max_bytes
        self.trail, self.failed_at = [], None
        self._cache, self._device = cache, device

    def where(self) -> str:
        """The node an error came from, as ``Pipeline > TunedThresholds > ...``."""
        return " > ".join(self.failed_at or []) or "the top"

    def value(self, v):
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            return v
        key = next((k for k in v if k.startswith("__")), None)
        if key is None or (len(v) > 1 and key != "__array__"):
            raise ModelFileError(f"an unknown value {sorted(v)[:3]}")
        if key == "__float__":
            return float(_expect(v[key], str, "__float__"))
        if key == "__array__":
            dtype = np.dtype(_expect(v.get("dtype"), str, "an array's dtype"))
            if dtype.kind not in _ARRAY_KINDS:
                raise ModelFileError(f"an array of dtype {dtype.str!r}, which the format does "
                                     "not store")
            return np.asarray(v[key], dtype=dtype).reshape(_expect(v.get("shape"), list,
                                                                   "an array's shape"))
        if key == "__objects__":
            return np.asarray([self.value(x) for x in _expect(v[key], list, key)], dtype=object)
        if key == "__tuple__":
            return tuple(self.value(x) for x in _expect(v[key], list, key))
        if key == "__dict__":
            return {k: self.value(x) for k, x in _expect(v[key], dict, key).items()}
        if key == "__type__":
            return _resolve(v[key], self.trusted, _ANY_TYPE)
        if key == "__label_statistics__":
            n, positives, correlation = _expect(v[key], list, key)
            return LabelStatistics(n, self.value(positives), self.value(correlation))
        if key == "__node__":
            return self.node(v[key])
        raise ModelFileError(f"an unknown value {sorted(v)[:3]}")

    def params(self, node: dict) -> dict:
        return {k: self.value(v) for k, v in _expect(node.get("params", {}), dict,
                                                     "params").items()}

    def node(self, node):
        node = _expect(node, dict, "a node")
        kind = node.get("kind")
        name = "Pipeline" if kind == "pipeline" else str(node.get("class") or kind)
        self.trail.append(name.rpartition(".")[2])
        try:
            return self._build(node, kind)
        except BaseException:
            if self.failed_at is None:  # the innermost node, where it went wrong
                self.failed_at = list(self.trail)
            raise
        finally:
            self.trail.pop()

    def _build(self, node: dict, kind):
        if kind == "pipeline":
            steps = [(name, self.node(step)) for name, step in _expect(node.get("steps"), list,
                                                                       "steps")]
            return _valid_params(Pipeline(steps, **self.params(node)))
        if kind == "skops":
            return _valid_params(self.skops(_expect(node.get("file"), str,
                                                    "a skops file name")))
        if kind not in ("object", "skstack"):
            raise ModelFileError("a node without a known 'kind' (pipeline, skops, object, "
                                 f"skstack); found {kind!r:.40}")
        if kind == "object":  # a callback or an unfitted estimator
            return _valid_params(_resolve(node.get("class"), self.trusted, frozenset(
                {"estimator", "callback"}))(**self.params(node)))
        cls = _resolve(node.get("class"), self.trusted, frozenset({"estimator"}))
        if not hasattr(cls, "_portable_state"):
            raise ModelFileError(f"a skstack node of class {_qualname(cls)}, which declares "
                                 "no portable state")
        params = {**getattr(cls, "_added_params", {}), **self.params(node)}
        accepted = inspect.signature(cls.__init__).parameters
        for key in set(node) - set(params) - {"kind", "class", "params", "state"}:
            if key in accepted and key not in getattr(cls, "_portable_parts", ()):  # members
                params[key] = self.part(node[key])
        obj = _valid_params(cls(**params))
        state = _expect(node.get("state", {}), dict, "state")
        unknown = sorted(set(state) - set(cls._portable_state))
        if unknown:  # setattr of anything else could replace a method or the class
            raise ModelFileError(f"fitted attributes {unknown[:3]} that {cls.__name__} does "
                                 "not have")
        if not state:
            return obj  # not fitted
        for key, v in state.items():
            setattr(obj, key, self.value(v))
        for key in getattr(cls, "_portable_parts", ()):
            setattr(obj, key, self.part(node[key]))
        # the state a fit would have made, or a ModelFileError: declared types and ranges,
        # then what ties the attributes together (the class's _check_state), then what
        # needs the weights (checked as _restore_state loads them)
        with _refused():
            check_state(cls.__name__, getattr(cls, "_state_constraints", {}), obj)
            if hasattr(obj, "_check_state"):
                obj._check_state()
            if hasattr(obj, "_restore_state"):
                obj._restore_state(node, self)
        return obj

    def part(self, saved):
        """What :meth:`_Writer.part` wrote: ``None``, an estimator, or (name, estimator)
        pairs."""
        if saved is None:
            return None
        if isinstance(saved, list):
            return [(name, self.node(m)) for name, m in saved]
        return self.node(saved)

    def resolve(self, name, kind: str) -> type:
        """The class a node's entry names, of ``kind`` (e.g. ``"encoder"``), under the
        format's rules (:func:`_resolve`)."""
        return _resolve(name, self.trusted, frozenset({kind}))

    def device(self, name, owner: str) -> str:
        """The device :func:`load` was given (the CPU where it is missing here, with a
        warning); else ``"cpu"``: the file's device (``name``) is not used, with a warning
        naming it where it was a GPU, so that a file never places work on a device."""
        if self._device is not None:
            return str(device_or_cpu(self._device, owner))
        if name not in (None, "cpu", "auto"):
            warnings.warn(f"The {owner} was saved with device={name!r}; a loaded file runs on "
                          f"the CPU unless load(..., device={name!r}) says otherwise.",
                          UserWarning, stacklevel=2)
        return "cpu"

    def cache(self, stored, owner: str):
        """The embedding cache of a loaded encoder: the one :func:`load` was given. A folder
        or URL the file names is not used (a file does not choose where this process writes
        or what it reads as cached vectors); a warning says how to use it."""
        named = stored is not None and not (isinstance(stored, str) and stored == "memory")
        if not named:  # in memory, or off: the file's choice, unless load was given a place
            return stored if isinstance(self._cache, str) and self._cache == "memory" \
                else self._cache
        if os.fspath(stored) != (None if self._cache is None else os.fspath(self._cache)):
            warnings.warn(f"{owner} was saved with cache={os.fspath(stored)!r}, which a loaded "
                          f"file does not choose: it uses cache={self._cache!r}. Pass "
                          f"load(..., cache={os.fspath(stored)!r}) to use that cache.",
                          UserWarning, stacklevel=2)
        return self._cache

    def folder(self, name) -> Path:
        """An extracted folder (``save_pretrained`` output) that a node names."""
        return self._extracted(name, "folder", Path.is_dir)

    def member(self, name) -> Path:
        """The extracted file a node names (only files the manifest listed exist there)."""
        return self._extracted(name, "file", Path.is_file)

    def _extracted(self, name, what: str, exists) -> Path:
        name = _expect(name, str, f"a {what} name")
        target = self.root / name
        if not _safe_member_name(name) or not exists(target):
            raise ModelFileError(f"the {what} {name!r:.80}, which the archive does not hold")
        return target

    def skops(self, name: str):
        import skops.io

        file = self.member(name)
        try:
            with zipfile.ZipFile(file) as inner:  # a skops file is a zip of its own
                _check_sizes(inner.infolist(), self.max_bytes)
            return skops.io.load(file)
        except ModelFileError:
            raise
        except Exception as exc:  # skops raises its own types for untrusted content
            raise ModelFileError(f"{name} could not be loaded safely: {exc}") from None

    def load_weights(self, module: torch.nn.Module, name, device="cpu") -> None:
        """Load a safetensors member into ``module``; tensors that do not fit its shapes
        are a :class:`ModelFileError` naming the member."""
        from safetensors.torch import load_file

        file = self.member(name)
        try:
            module.load_state_dict(load_file(str(file), device=str(device)))
        except Exception as exc:  # safetensors' header errors, load_state_dict's shape errors
            first = str(exc).strip().splitlines()
            raise ModelFileError(f"{name} does not fit the model it belongs to "
                                 f"({type(exc).__name__}: {' '.join(first[:3])[:300]})") from None

@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """A check's ValueError or TypeError as the :class:`ModelFileError` of the node."""
    try:
        yield
    except ModelFileError:
        raise
    except (ValueError, TypeError) as exc:
        raise ModelFileError(_first_line(exc, 300).rstrip(".")) from None


def _first_line(exc: BaseException, limit: int) -> str:
    """An error's message as one line (torch's carry C++ stack traces), at most ``limit``
    characters."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


def _valid_params(obj):
    """``obj`` once its parameters pass its class's constraints (skstack's tables, or
    scikit-learn's own ``_validate_params``), as its ``fit`` would check them."""
    cls = type(obj)
    if not hasattr(cls, "_parameter_constraints"):
        return obj
    with _refused():
        if _within(cls.__module__, ("skstack",)):
            validate_params(obj)
        elif hasattr(obj, "_validate_params"):
            obj._validate_params()
    return obj


def _expect(value, kind: type, what: str):
    """``value`` if it is a ``kind``; else the error that names ``what`` was malformed."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelFileError(f"{what} must be a JSON {_JSON_NAMES.get(kind, kind.__name__)}, "
                             f"found {type(value).__name__}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "integer"}


def _safe_member_name(name: str) -> bool:
    """A relative POSIX path of plain parts: nothing absolute, no ``..``, no backslash."""
    parts = name.split("/")
    return bool(name) and "\\" not in name and "\x00" not in name and all(
        p not in ("", ".", "..") for p in parts) and ":" not in parts[0]


def _check_sizes(infos: list[zipfile.ZipInfo], max_bytes: int) -> None:
    """Refuse a zip whose members, one or all together, declare more than ``max_bytes``, or
    whose large member unpacks to more than ``_MAX_RATIO`` times its packed size."""
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > max_bytes or total > max_bytes:
            raise ModelFileError(
                f"member {info.filename!r} declares {info.file_size:,} bytes, which takes the "
                f"file past the {max_bytes:,} bytes it may unpack to (load's max_bytes)")
        if info.file_size > 16 * _CHUNK and info.file_size > _MAX_RATIO * info.compress_size:
            raise ModelFileError(
                f"member {info.filename!r} unpacks to {info.file_size:,} bytes from "
                f"{info.compress_size:,}, more than {_MAX_RATIO}:1 as no model file does "
                "(damaged, or a zip bomb)")


def load(path: str | os.PathLike, trusted: Iterable[str] = (), max_bytes: int = MAX_BYTES,
         *, cache: str | os.PathLike | None = "memory", device: str | None = None):
    """Load what :func:`save` wrote, checking every file's size and checksum first, then
    every parameter and fitted attribute as ``fit`` would have made them.

    Parameters
    ----------
    path : path-like
    trusted : iterable of str
        Fully qualified names (``module.Class``, where the class is defined) of further
        classes the file may name: your own module or criterion class, say. Without it,
        a file may name only scikit-learn and skstack estimators, skorch nets and
        callbacks, skstack modules, torch losses and optimizers, transformers models and
        numpy dtypes, each by the module that defines it.
    max_bytes : int, default=16 GiB
        The most the file may unpack to, each member and all together; checked against
        the sizes the archive declares before anything is read, and against the bytes
        actually read.
    cache : "memory", None, folder or URL, default="memory"
        The embedding cache of the model's encoders (see ``EncoderEmbedder``'s ``cache``).
        A folder or URL stored in the file is never used (a file does not choose where the
        loading process writes, or which cached vectors it reads): such an encoder gets
        ``cache``, with a warning naming the stored place. An encoder saved with ``"memory"``
        or ``None`` keeps it unless ``cache`` names a folder or URL.
    device : str, default=None
        The device of every encoder and net (``"cpu"``, ``"cuda"``, ...). ``None``: the CPU;
        the device a file was saved with is not used (a warning names a GPU one).

    Returns
    -------
    The estimator or pipeline.

    Raises
    ------
    ModelFileError
        The file is damaged, truncated, malformed, too large, from a newer format, names
        untrusted classes, or holds a parameter or fitted attribute that ``fit`` would
        refuse or never make (thresholds outside [0, 1], label lists of the wrong length,
        duplicate names, unknown backends, layers the encoder lacks, ...); the message
        names the file, the node and the attribute or member at fault.

    Notes
    -----
    An encoder's ``fingerprint_`` (the key of its cached vectors) is recomputed from the
    weights loaded, never read from the file.
    """
    path = Path(path)
    if path.suffix in (".joblib", ".pkl"):
        raise ModelFileError(f"{path} is a pickle, which load() never runs: read it with "
                             "joblib.load, and only if you trust where it came from.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is not a readable skstack model file ({exc}).") from None
    with archive, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            infos = archive.infolist()
            _check_sizes(infos, max_bytes)
            manifest = _read_manifest(archive, infos)
            if manifest.get("sealed") is not None:  # files written before 0.3 have none
                if manifest["sealed"] is not True:
                    raise ModelFileError(f"manifest.json's sealed is {manifest['sealed']!r:.40}")
                _check_seal(path)
            _extract(archive, infos, manifest["sha256"], root)
            # read from the extracted, checksummed copy
            graph = _expect(_json((root / "graph.json").read_bytes(), "graph.json"), dict,
                            "graph.json")
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}.") from None
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
            raise ModelFileError(f"{path} is damaged ({type(exc).__name__}: {exc}).") from None
        _check_versions(path, manifest.get("versions", {}))
        reader = _Reader(root, frozenset(trusted), max_bytes, cache, device)
        try:
            return reader.node(graph)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: graph.json, at {reader.where()}: {exc}.") from None
        except Exception as exc:  # building what a malformed graph describes failed
            raise ModelFileError(
                f"{path}: graph.json is malformed at {reader.where()} "
                f"({type(exc).__name__}: {_first_line(exc, 200)}).") from None


def _read_manifest(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> dict:
    """The manifest, checked: a known format, one SHA-256 per member, exactly the members."""
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ModelFileError(f"the archive holds {twice[0]!r} more than once")
    if "manifest.json" not in names:
        raise ModelFileError("the archive has no manifest.json")
    manifest = _expect(_parse_json(archive, "manifest.json"), dict, "manifest.json")
    fmt = manifest.get("format")
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT_VERSION:
        versions = manifest.get("versions")
        by = versions.get("skstack") if isinstance(versions, dict) else None
        raise ModelFileError(f"written in format {fmt} by skstack {by}; this skstack "
                             f"({__version__}) reads format {FORMAT_VERSION} at most")
    if fmt != FORMAT_VERSION or isinstance(fmt, bool):
        raise ModelFileError(f"manifest.json declares the format {fmt!r:.40}, which is not a "
                             f"skstack format (1..{FORMAT_VERSION})")
    _expect(manifest.get("versions", {}), dict, "the manifest's versions")
    digests = _expect(manifest.get("sha256"), dict, "the manifest's sha256")
    for name, digest in digests.items():
        if not (isinstance(digest, str) and len(digest) == 64
                and all(c in "0123456789abcdef" for c in digest)):
            raise ModelFileError(f"the manifest's sha256 of {name!r:.80} is {digest!r:.80}, "
                                 "not a SHA-256 hex digest")
        if not _safe_member_name(name):
            raise ModelFileError(f"the manifest names a file outside the archive: {name!r:.80}")
    members = set(names) - {"manifest.json"}
    missing, unlisted = sorted(set(digests) - members), sorted(members - set(digests))
    if missing or unlisted:
        raise ModelFileError(
            "it does not hold the files its manifest lists ("
            + "; ".join(filter(None, [missing and f"missing: {missing[:3]}",
                                      unlisted and f"not in the manifest: {unlisted[:3]}"]))
            + ")")
    if "graph.json" not in digests:
        raise ModelFileError("the archive has no graph.json")
    return manifest


def _parse_json(archive: zipfile.ZipFile, name: str):
    if archive.getinfo(name).file_size > _JSON_BYTES:
        raise ModelFileError(f"{name} is over {_JSON_BYTES:,} bytes")
    with archive.open(name) as src:
        return _json(src.read(_JSON_BYTES + 1), name)


def _json(data: bytes, name: str):
    """A JSON member's content; anything else is a :class:`ModelFileError` naming it."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{name} is not JSON ({str(exc)[:120]})") from None


def _extract(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], digests: dict,
             root: Path) -> None:
    """Copy every listed member under ``root`` in chunks, hashing as it goes: memory stays
    at one chunk whatever a member declares, and no byte past its declared size is read."""
    for info in infos:
        if info.filename == "manifest.json":
            continue
        if info.filename == "graph.json" and info.file_size > _JSON_BYTES:
            raise ModelFileError(f"graph.json is over {_JSON_BYTES:,} bytes")
        target = root / info.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with archive.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > info.file_size:
                    raise ModelFileError(f"{info.filename} holds more bytes than it declares")
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != digests[info.filename]:
            raise ModelFileError(f"it is damaged: {info.filename} fails its checksum")


def _check_versions(path: Path, saved: dict) -> None:
    here = library_versions()
    differ = [f"{name} {saved[name]} (here {here[name]})" for name in LIBRARIES
              if name in saved and saved[name] != here[name]]
    if differ:
        warnings.warn(f"{path} was saved with other versions: {', '.join(differ)}. It loaded, "
                      "but check its predictions before relying on them.", UserWarning,
                      stacklevel=3)


def load_model(path: str | os.PathLike, trust_joblib: bool = False):
    """A model file a user names: ``skstack.load`` for a ``.skstack`` file; a joblib file
    only with ``trust_joblib`` (unpickling runs code), a damaged one as a
    :class:`~skstack.ModelFileError`."""
    path = str(path)
    if path.endswith((".joblib", ".pkl")):
        if not trust_joblib:
            raise ValueError(f"{path} is a joblib file, which runs code when loaded; serve a "
                             ".skstack file (skstack.save), or pass --trust-joblib for a file "
                             "you made.")
        try:
            return joblib.load(path)
        except Exception as exc:  # unpickling a damaged file can raise almost anything
            raise ModelFileError(f"{path} is damaged or truncated: joblib could not read it "
                                 f"({type(exc).__name__}: {str(exc)[:120]}).") from None
    return load(path)
