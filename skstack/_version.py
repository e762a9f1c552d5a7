"""The package version, and the versions of the libraries a saved model depends on.

Import rule: a leaf (the standard library only).
"""

import importlib

__version__ = "0.3.0.dev0"

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
