"""One switch for every progress bar skstack shows or lets a library show.

``set_config(show_progress_bar=True)`` (or ``with config_context(...)``) turns on the bars of
encoder loading (transformers'), encoding, fine-tuning and net training; off by default, so
that a quiet program stays quiet. An ``EncoderEmbedder(show_progress_bar=...)`` that is not
``None`` overrides the switch for that encoder.

:func:`quiet` keeps other libraries' logs and terminal bars out of a quiet program.

Import rule: standard library only (every module may import this one).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

_CONFIG = {"show_progress_bar": False}


def get_config() -> dict:
    """The current settings, as a new dict."""
    return dict(_CONFIG)


def set_config(show_progress_bar: bool | None = None) -> None:
    """Change the settings; ``None`` leaves one as it is.

    Examples
    --------
    >>> import skstack
    >>> skstack.set_config(show_progress_bar=True)
    >>> skstack.get_config()["show_progress_bar"]
    True
    >>> skstack.set_config(show_progress_bar=False)
    """
    if show_progress_bar is not None:
        if not isinstance(show_progress_bar, bool):
            raise TypeError(f"show_progress_bar must be a bool, got {show_progress_bar!r}.")
        _CONFIG["show_progress_bar"] = show_progress_bar


@contextlib.contextmanager
def config_context(show_progress_bar: bool | None = None) -> Iterator[None]:
    """Change the settings inside a ``with`` block, and restore them after."""
    old = get_config()
    set_config(show_progress_bar=show_progress_bar)
    try:
        yield
    finally:
        _CONFIG.update(old)


def progress_enabled(override: bool | None = None) -> bool:
    """Whether to show a bar: the caller's own setting if it has one, else the switch."""
    return _CONFIG["show_progress_bar"] if override is None else bool(override)


@contextlib.contextmanager
def quiet(*loggers: str, output: bool = False) -> Iterator[None]:
    """Keep libraries' loggers to errors for a block; with ``output``, also swallow what
    they print (progress bars drawn on the terminal, such as NNCF's, ignore loggers)."""
    logs = [logging.getLogger(name) for name in loggers]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.ExitStack() as stack:
            if output:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            yield
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)
