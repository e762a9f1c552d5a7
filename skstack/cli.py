"""The ``skstack`` command line: ``train``, ``predict``, ``evaluate`` and ``serve``.

    skstack train sample --preset quickstart --output model.skstack
    skstack predict model.skstack "What a lovely day" "I can't believe it"
    skstack evaluate model.skstack sample --split test --html report.html
    skstack serve model.skstack --port 8000

Exit codes: 0 success; 2 a bad command line, file, column or model file (one line on stderr
that names the problem); 1 anything else (with a traceback). Built on argparse: the
standard library does this job without another dependency.

Import rule: any skstack module (the top of the package, with ``__main__`` above it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skstack._config import ADAPT_THREADS, config_context, progress, progress_to_stderr, set_config
from skstack._files import replacing
from skstack._validation import blank_rows
from skstack.datasets import (
    SEMEVAL_LANGUAGES,
    MultilabelData,
    _read_text,
    load_goemotions,
    load_sample_emotions,
    load_semeval2018_ec,
    load_table,
)
from skstack.labels import label_names, predict_label_lists
from skstack.metrics import multilabel_report
from skstack.persistence import ModelFileError, card_path, load_model, save
from skstack.pipelines import PRESET_SETTINGS, language_code, preset_pipeline
from skstack.report import evaluate_model, report_warnings, rule_settings
from skstack.rules import decision_rule
from skstack.serving import ServeSettings, api_keys, loaded_on_own_thread, run

PRESETS = tuple(PRESET_SETTINGS)
_SEMEVAL_NAME = re.compile(r".*E-c-(En|Ar|Es)-(train|dev|test|test-gold)\.txt")
FORMATS = ("auto", "sample", "tsv", "csv", "jsonl", "goemotions", "semeval")
_CONFIG_KEYS = {"preset", "objective"}.union(*PRESET_SETTINGS.values())


class UsageError(Exception):
    """A problem the user can fix: reported in one line, exit code 2."""


def _read_config(path: str | None) -> dict:
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {file} not found.")
    text = file.read_text(encoding="utf-8")
    if file.suffix in (".yaml", ".yml"):
        import yaml

        config = yaml.safe_load(text) or {}
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{file} is not valid TOML: {exc}") from None
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise UsageError(f"{file}: unknown setting(s) {unknown}; the settings are "
                         f"{sorted(_CONFIG_KEYS)}.")
    return config


def _format(args) -> str:
    """``--format``, with ``auto`` resolved: sample, goemotions, semeval or a table format."""
    if args.format != "auto":
        return args.format
    path = Path(args.data)
    if args.data == "sample":
        return "sample"
    if path.is_dir():
        if (path / "labels.txt").is_file():
            return "goemotions"
        if any(path.glob("*E-c-*.txt")):  # the official SemEval-2018 E-c file names
            return "semeval"
    elif _SEMEVAL_NAME.fullmatch(path.name):
        return "semeval"
    return "table"


def _data_language(args) -> str | None:
    """The texts' language: for SemEval data, the code (``"En"``, ``"Ar"``, ``"Es"``) of an
    official file name, else ``--language`` (English when not given); for other data,
    ``--language`` as given (``None`` without it)."""
    if _format(args) != "semeval":
        return args.language
    named = _SEMEVAL_NAME.fullmatch(Path(args.data).name)
    return named.group(1) if named else SEMEVAL_LANGUAGES.get((args.language or "En").lower())


def _split(args) -> str | None:
    """The split read, for data sets that have splits (a table file has none)."""
    return args.split if _format(args) in ("sample", "goemotions", "semeval") else None


def _read_data(args, names: Sequence[str] | None = None) -> MultilabelData:
    fmt, source = _format(args), args.data
    if fmt == "sample":
        return load_sample_emotions(args.split)
    if fmt == "goemotions":
        return load_goemotions(source, args.split)
    if fmt == "semeval":
        return load_semeval2018_ec(source, args.language or "English", args.split)
    return load_table(source, text_column=args.text_column, label_column=args.label_column,
                      label_columns=args.label_columns, label_sep=args.label_sep, names=names,
                      file_format="auto" if fmt == "table" else fmt)


def _load_model(path: str, trust_joblib: bool = True):
    """The model file named on the command line (a joblib file is the user's own pickle,
    except where ``serve`` asks for ``--trust-joblib``)."""
    if not Path(path).is_file():
        raise UsageError(f"model file {path} not found.")
    return load_model(path, trust_joblib)


def _texts(args) -> list[str]:
    if args.input is None:
        if not args.texts:
            raise UsageError("give texts as arguments, or a file with --input.")
        return list(args.texts)
    if args.input == "-":
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    path = Path(args.input)
    if path.suffix.lower() in (".txt", ""):
        if not path.is_file():
            raise UsageError(f"{path} not found.")
        return [line for line in _read_text(path).splitlines() if line.strip()]
    return load_table(path, text_column=args.text_column, label_column=None).texts


def cmd_train(args) -> int:
    config = _read_config(args.config)
    preset = args.preset or config.get("preset", "quickstart")
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; the presets are {list(PRESETS)}.")
    objective = args.objective or config.get("objective", "macro_f1")
    settings = {k: v for k, v in config.items() if k not in ("preset", "objective")}
    language = _data_language(args)  # said before anything is read or fitted
    if language is not None and "language" not in settings and not {"model", "encoders"} & set(
            settings) and "language" in PRESET_SETTINGS[preset]:
        try:
            settings["language"] = language_code(language)
        except ValueError as exc:
            raise UsageError(f"--language: {exc}") from None
    pipe = preset_pipeline(preset, objective, **settings)
    if args.finetune is not None:  # every encoder member, over the config's encoder_params
        members = pipe.named_steps["embed"].members
        pipe.set_params(**{f"embed__{name}__finetune_epochs": args.finetune
                           for name, member in members if hasattr(member, "finetune_epochs")})
    if language is not None:
        encoders = [f"{name} ({member.model})" for name, member in
                    pipe.named_steps["embed"].members if hasattr(member, "model")]
        progress(f"{language} texts; encoders: {', '.join(encoders)}")
    data = _read_data(args)
    if data.Y is None or not len(data.texts):
        raise UsageError(f"{args.data}: no labelled texts to train on.")
    print(f"training the {preset!r} pipeline on {len(data.texts):,} texts, "
          f"{len(data.label_names)} labels ({objective} rule) ...", file=sys.stderr)
    start = time.perf_counter()
    import pandas as pd

    pipe.fit(data.texts, pd.DataFrame(data.Y, columns=data.label_names))
    out = save(pipe, args.output)
    rule = decision_rule(pipe)
    print(f"fitted in {time.perf_counter() - start:.0f} s; validation {objective} "
          f"{rule.validation_score:.3f} on {rule.n_tuning_rows:,} held-out rows; saved to {out} "
          f"and its card {card_path(out)}", file=sys.stderr)
    return 0


def cmd_predict(args) -> int:
    model = _load_model(args.model)
    texts = _texts(args)
    blank = blank_rows(texts)
    if blank:  # answered all the same, so that output lines match input lines
        rows = ", ".join(str(i + 1) for i in blank[:5]) + (", ..." if len(blank) > 5 else "")
        print(f"skstack predict: warning: {len(blank)} text(s) are empty or only white space "
              f"(text {rows}, counting from 1): their labels come from the model alone, not "
              "from any words.", file=sys.stderr)
    lists = predict_label_lists(model, texts)
    as_json = args.json or (args.output is not None and args.output.endswith(".jsonl"))
    lines = (json.dumps({"text": text, "labels": labels}, ensure_ascii=False) if as_json
             else f"{','.join(labels)}\t{text}" for text, labels in zip(texts, lists,
                                                                        strict=True))
    if args.output is None:
        for line in lines:
            print(line)
        return 0
    # the previous file stays as it was unless the new one is written whole
    with replacing(args.output) as partial, open(partial, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")
    return 0


def cmd_evaluate(args) -> int:
    model = _load_model(args.model)
    names = label_names(model)
    data = _read_data(args, names=names)
    if data.Y is None:
        raise UsageError(f"{args.data}: no labels to evaluate against.")
    if list(data.label_names) != list(names):
        raise UsageError(f"{args.data} has the labels {data.label_names}; the model predicts "
                         f"{names}.")
    pred = np.asarray(model.predict(data.texts))
    rule = rule_settings(model)
    report = multilabel_report(data.Y, pred, names, **rule)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report)
    split = _split(args)
    warnings = report_warnings(model, len(data.texts), split)
    for warning in warnings:
        print(f"skstack evaluate: warning: {warning}", file=sys.stderr)
    if args.html:
        evaluate_model(model, data.texts, data.Y, args.html, names, split=split, y_pred=pred,
                       title=f"skstack evaluation: {Path(args.model).name} on {args.data}"
                             + (f", {split} split" if split else ""))
        print(f"report written to {args.html}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    # a file that fails to load stops here, before any port opens; loaded on the thread
    # that will run it
    model, executor = loaded_on_own_thread(_load_model, args.model, args.trust_joblib)
    settings = ServeSettings(model=args.model, trust_joblib=args.trust_joblib,
                             max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             max_texts=args.max_texts, max_chars=args.max_chars,
                             max_explain_words=args.max_explain_words,
                             api_key_file=args.api_key_file,
                             examples=_examples(args.examples))
    keys = api_keys(settings)  # a key file that cannot be read stops here
    if not keys and not _loopback(args.host) and not args.allow_unauthenticated:
        raise UsageError(f"--host {args.host} serves beyond this machine, and no API key is "
                         "set: give --api-key-file (or $SKSTACK_API_KEYS), or pass "
                         "--allow-unauthenticated.")
    print(f"skstack serve: {args.model} ({len(label_names(model))} labels) on "
          f"http://{args.host}:{args.port}: POST /predict {{\"texts\": [...]}}, /explain; "
          "GET / (demo page), /health, /labels, /card"
          + (f"; {len(keys)} API key(s) required" if keys else ""), file=sys.stderr, flush=True)
    _keep_threads()
    run(settings, host=args.host, port=args.port, workers=args.workers,
        model=model if args.workers == 1 else None, drain_seconds=args.drain_seconds,
        executor=executor if args.workers == 1 else None)
    return 0


# A server answers on the process's torch threads however crowded the cores, unless
# $SKSTACK_ADAPT_THREADS says otherwise: a text's last bits follow the thread count, and
# with predictions moved to one thread under load 0-37 of 400 served answers (three runs)
# differed from `skstack predict`'s by up to 0.007, for no throughput (130 against 134
# texts/s with micro-batching, 20 against 22 without: bench_serve.py --threads-rule;
# docs/benchmarks.md, "Serving").


def _keep_threads() -> None:
    """Turn off the thread rule for predictions (skstack._threads) in this process and in the
    worker processes it starts, unless the environment sets it."""
    if ADAPT_THREADS not in os.environ:
        os.environ[ADAPT_THREADS] = "0"
        set_config(adapt_threads=False)


def _examples(path: str | None) -> tuple[str, ...]:
    """The demo page's texts from ``--examples``: one a line, blank lines skipped."""
    if path is None:
        return ()
    if not Path(path).is_file():
        raise UsageError(f"--examples {path} not found.")
    return tuple(line.strip() for line in _read_text(Path(path)).splitlines() if line.strip())


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1 or localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _positive(kind, zero_ok: bool = False):
    """An argparse type: a number of ``kind`` above zero (or zero with ``zero_ok``)."""
    def parse(text: str):
        value = kind(text)
        if value < 0 or (value == 0 and not zero_ok):
            expected = "zero or more" if zero_ok else "a number above zero"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


def _epochs_or_auto(text: str) -> int | str:
    """An argparse type for ``--finetune``: ``auto`` or a number of epochs (0 or more)."""
    if text == "auto":
        return text
    try:
        return _positive(int, zero_ok=True)(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of epochs or 'auto', got {text}"
                                         ) from None


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="'sample' (the bundled GoEmotions sample), a GoEmotions "
                        "folder, a SemEval-2018 E-c file or folder, or a TSV/CSV/JSONL file")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="how to read DATA (default: by its name and suffix)")
    parser.add_argument("--split", default="train", help="split of sample/GoEmotions/SemEval")
    parser.add_argument("--language", default=None,
                        help="the texts' language, a code or a name ('es', 'Spanish'): "
                        "picks the encoders (docs/method.md, 'Languages'); for SemEval-2018 "
                        "E-c data, the file's language (default: English)")
    _column_options(parser)
    parser.add_argument("--label-column", default="labels",
                        help="column of label names (default: labels)")
    parser.add_argument("--label-columns", nargs="+", default=None, metavar="NAME",
                        help="one 0/1 column per label instead of --label-column")
    parser.add_argument("--label-sep", default=",", help="separator of label names")


def _column_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-column", default="text", help="column of texts")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skstack", description="Multi-label text classification with stacked "
        "transformer embeddings: train, predict, evaluate.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__import__('skstack').__version__}")
    bars = parser.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="progress bars too (default: when stderr is a terminal)")
    bars.add_argument("--quiet", dest="progress", action="store_false",
                      help="no progress lines and no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="fit a pipeline and save it (with its model card)")
    _data_options(train)
    train.add_argument("--preset", choices=PRESETS, default=None,
                       help="ready-made pipeline (default: the config's, else quickstart)")
    train.add_argument("--config", help="TOML or YAML file: preset, objective, encoders, ...")
    train.add_argument("--objective", choices=("macro_f1", "jaccard", "micro_f1"),
                       help="what the decision rule maximises (default: macro_f1)")
    train.add_argument("--finetune", type=_epochs_or_auto, default=None, metavar="EPOCHS",
                       help="fine-tune every encoder for EPOCHS epochs, or 'auto': 2 where "
                       "the time estimated on this machine fits finetune_budget (600 s)")
    train.add_argument("--output", "-o", required=True,
                       help="model file: .skstack (safe format) or .joblib")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="label names for each text")
    predict.add_argument("model", help="a file written by skstack train or skstack.save")
    predict.add_argument("texts", nargs="*", help="texts to label")
    predict.add_argument("--input", "-i", help="file of texts: .txt (one per line), TSV, CSV "
                         "or JSONL (with --text-column), or - for standard input")
    _column_options(predict)
    predict.add_argument("--output", "-o", help="write here instead of standard output "
                         "(.jsonl: JSON lines)")
    predict.add_argument("--json", action="store_true", help="JSON lines: {text, labels}")
    predict.set_defaults(func=cmd_predict)

    evaluate = sub.add_parser("evaluate", help="score a model on labelled texts")
    evaluate.add_argument("model", help="a file written by skstack train or skstack.save")
    _data_options(evaluate)
    evaluate.add_argument("--html", help="also write a self-contained HTML report here")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    serve = sub.add_parser("serve", help="answer HTTP requests with the model's labels")
    serve.add_argument("model", help="a .skstack file (or .joblib with --trust-joblib)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default: 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive(int), default=1,
                       help="processes, each with its own copy of the model")
    serve.add_argument("--max-batch", type=_positive(int), default=64,
                       help="texts per model call, gathered from waiting requests "
                            "(1: no micro-batching)")
    serve.add_argument("--max-wait-ms", type=_positive(float, zero_ok=True), default=5.0,
                       help="how long a batch waits for more requests after its first, "
                            "at most (it stops once it holds as many as the last call "
                            "answered plus those that queued meanwhile)")
    serve.add_argument("--max-texts", type=_positive(int), default=256,
                       help="texts per request (more: 413)")
    serve.add_argument("--max-chars", type=_positive(int), default=10_000,
                       help="characters per text (more: 413)")
    serve.add_argument("--max-explain-words", type=_positive(int),
                       default=ServeSettings.max_explain_words,
                       help="words per /explain request, all texts together (each word is "
                            "one more text for the model)")
    serve.add_argument("--trust-joblib", action="store_true",
                       help="allow a joblib file (unpickling runs code: only your own files)")
    serve.add_argument("--api-key-file", help="API keys, one a line: every route but / and "
                       "/health then needs 'Authorization: Bearer <key>' (else the keys in "
                       "$SKSTACK_API_KEYS)")
    serve.add_argument("--examples", help="a text file, one text a line: the demo page's "
                       "example texts (say, in the model's language)")
    serve.add_argument("--drain-seconds", type=_positive(float, zero_ok=True), default=30.0,
                       help="on SIGTERM or SIGINT, how long to answer the requests already "
                            "received before exiting (default 30)")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       help="serve beyond this machine (--host) without API keys")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = make_parser()
    args = parser.parse_args(argv)
    bars = sys.stderr.isatty() if args.progress is None else args.progress
    # a line per long stage on stderr, terminal or not; serve answers requests instead
    progress_to_stderr(args.progress is not False and args.command != "serve")
    try:
        with config_context(show_progress_bar=bars):
            return args.func(args)
    # OSError: a file that cannot be written (a full disk); what it replaces is unchanged
    except (UsageError, ModelFileError, ValueError, OSError, TypeError) as exc:
        print(f"skstack {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        progress_to_stderr(False)
