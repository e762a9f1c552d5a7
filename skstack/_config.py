"""The package's switches: progress bars, and the home folder of what skstack builds.

``set_config(show_progress_bar=True)`` (or ``with config_context(...)``) turns on the bars of
encoder loading (transformers'), encoding, fine-tuning and net training; off by default, so
that a quiet program stays quiet. An ``EncoderEmbedder(show_progress_bar=...)`` that is not
``None`` overrides the switch for that encoder.

``set_config(home=folder)`` names where built artifacts live on disk: exported ONNX/OpenVINO
models (``<home>/exports``) and seeded fine-tunings (``<home>/finetuned``). Without it,
``$SKSTACK_HOME``; without that, exports go to ``~/.cache/skstack`` and fine-tunings stay in
memory. (The embedding cache is the encoders' ``cache`` parameter, apart from this.)

``set_config(adapt_threads=False)`` keeps torch on the process's threads for predictions
(encoders' forward passes, the heads' predictions); by default they run on one thread while
other work crowds the cores (:mod:`skstack._threads`). ``$SKSTACK_ADAPT_THREADS=0`` sets
that default for a whole process (``skstack serve``, ``skstack predict``). A net's training
follows its own ``callbacks__threads``.

:func:`quiet` keeps other libraries' logs and terminal bars out of a quiet program.

Progress *lines* are apart from bars: every long stage (encoding, each fine-tuning epoch,
each epoch of the net, the decision rule's fits, saving) logs one line when it starts or
ends to the ``skstack.progress`` logger (:func:`progress`), at INFO. A library stays silent
(no handler); :func:`progress_to_stderr` prints them, which the command line and the
quickstart do unless told ``--quiet``. They are plain lines, so they show in a log file or a
CI job as well as on a terminal.

Import rule: standard library only (every module may import this one).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# $SKSTACK_ADAPT_THREADS=0 sets adapt_threads's default for a process one cannot edit (a
# server started by a command line)
ADAPT_THREADS = "SKSTACK_ADAPT_THREADS"
_CONFIG: dict = {"show_progress_bar": False, "home": None,
                 "adapt_threads": os.environ.get(ADAPT_THREADS, "1").strip().lower()
                 not in ("0", "false", "no", "off")}
_PROGRESS = logging.getLogger("skstack.progress")


def get_config() -> dict:
    """The current settings, as a new dict."""
    return dict(_CONFIG)


def set_config(show_progress_bar: bool | None = None,
               home: str | os.PathLike | bool | None = None,
               adapt_threads: bool | None = None) -> None:
    """Change the settings; ``None`` leaves one as it is.

    Parameters
    ----------
    show_progress_bar : bool
    home : path-like or False
        The folder for exported models and kept fine-tunings (see the module's notes);
        ``False`` unsets it (``$SKSTACK_HOME`` or the default apply again).
    adapt_threads : bool
        Whether predictions run on one torch thread while other work crowds the cores
        (default True).

    Examples
    --------
    >>> import skstack
    >>> skstack.set_config(show_progress_bar=True)
    >>> skstack.get_config()["show_progress_bar"]
    True
    >>> skstack.set_config(show_progress_bar=False)
    """
    for name, value in (("show_progress_bar", show_progress_bar),
                        ("adapt_threads", adapt_threads)):
        if value is not None:
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}.")
            _CONFIG[name] = value
    if home is False:
        _CONFIG["home"] = None
    elif home is not None:
        if not isinstance(home, (str, os.PathLike)):
            raise TypeError(f"home must be a folder path, got {home!r}.")
        _CONFIG["home"] = Path(home).expanduser()


@contextlib.contextmanager
def config_context(show_progress_bar: bool | None = None,
                   home: str | os.PathLike | bool | None = None,
                   adapt_threads: bool | None = None) -> Iterator[None]:
    """Change the settings inside a ``with`` block, and restore them after."""
    old = get_config()
    set_config(show_progress_bar=show_progress_bar, home=home, adapt_threads=adapt_threads)
    try:
        yield
    finally:
        _CONFIG.update(old)


def home_folder(default: bool = True) -> Path | None:
    """The home folder: ``set_config(home=...)``, else ``$SKSTACK_HOME``, else (with
    ``default``) ``~/.cache/skstack``; ``None`` when none is set and ``default`` is False."""
    if _CONFIG["home"] is not None:
        return _CONFIG["home"]
    if os.environ.get("SKSTACK_HOME"):
        return Path(os.environ["SKSTACK_HOME"]).expanduser()
    return Path.home() / ".cache" / "skstack" if default else None


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


class _Stderr(logging.StreamHandler):
    """A handler on ``sys.stderr`` as it is when a line is written (a test's capture, a
    redirected stream), not as it was when the handler was made."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def progress(message: str) -> None:
    """One progress line (logger ``skstack.progress``, INFO)."""
    _PROGRESS.info(message)


def progress_to_stderr(on: bool = True) -> None:
    """Print progress lines on standard error as ``skstack: <line>`` (``on=False``: stop)."""
    for handler in [h for h in _PROGRESS.handlers if getattr(h, "_skstack", False)]:
        _PROGRESS.removeHandler(handler)
    if on:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("skstack: %(message)s"))
        handler._skstack = True
        _PROGRESS.addHandler(handler)
    _PROGRESS.setLevel(logging.INFO if on else logging.NOTSET)


def outside_caller_level() -> int:
    """``stacklevel`` for a warning raised here that names the user's line, skipping
    skstack's frames and scikit-learn's ``set_output`` wrapper."""
    package = os.path.dirname(__file__)
    wrapper = os.path.join("sklearn", "utils", "_set_output.py")
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith(package)
                                 or frame.f_code.co_filename.endswith(wrapper)):
        frame, level = frame.f_back, level + 1
    return level
