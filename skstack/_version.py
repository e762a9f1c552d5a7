"""The package version, and the stamp that saved estimators carry.

Import rule: a leaf (the standard library only).
"""

import importlib
import warnings

__version__ = "0.2.0.dev0"

LIBRARIES = ("skstack", "torch", "transformers", "sklearn", "skorch", "skops", "numpy")


def library_versions() -> dict[str, str]:
    """The versions of skstack and the libraries a saved model depends on."""
    out = {"skstack": __version__}
    for name in LIBRARIES[1:]:
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = "absent"
    return out


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
        state = dict(state)
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
