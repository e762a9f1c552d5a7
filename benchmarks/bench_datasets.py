"""Do the defaults hold beyond GoEmotions? Two data sets, two scripts, 3 seeds (run by hand).

    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/bench_datasets.py --dtype float32          # both data sets
    python benchmarks/bench_datasets.py --data kaomoji --train 10000
    python benchmarks/bench_datasets.py --dtype float32 --backend openvino --quantization int8
    python benchmarks/bench_datasets.py --extra with-e5 --only "3 fold" meta   # three encoders
    python benchmarks/bench_datasets.py --multilingual --data goemotions --train 43410 \\
        --test 5427 --seeds 1 --only "3 fold heads averaged" "meta-learner alone"  # all of it

Data sets: GoEmotions (English Reddit comments, 28 labels; the first ``--train`` rows of a
fixed shuffle of train, the first ``--test`` rows of test) and kaomoji-dataset (Japanese text
emoticons, CC BY 4.0, see ``data_sets.py``; ``--train`` + ``--test`` rows of one shuffle).
On each, the stack that ``make_stacked_pipeline`` builds (MiniLM and sre-embedding-model
frozen, character TF-IDF + SVD, the out-of-fold meta-learner, ``cv=3``) is fitted once per
mode with a cold cache, its stages timed; then, for seeds 0, 1, 2 (the net, its early-stopping
split and the rule's hold-out), every configuration is scored under both rules
(``RECOMMENDED_RULE_PARAMS``, tuned on training rows only):

- the default pipeline: word mode, the recommended head (``RECOMMENDED_CLASSIFIER_PARAMS``);
- the same head in block mode (one vector per text and member);
- the meta-learner alone (its out-of-fold training probabilities tune the rule);
- one-vs-rest logistic regression (C=1) on the same pooled vectors (the block-mode members'
  outputs, standardised), inside ``TunedThresholds`` with the pipelines' rule.
- the default head as fold heads (3 or 5 nets, the rule tuned on every training row out of
  fold; 3 is the pipelines' rule), blended with the meta-learner, 64 wide (its projection
  and LSTM half the default 128), or with the label-correlation term at 0.3: the default
  of a pipeline built for ``objective="jaccard"`` (``OBJECTIVE_CLASSIFIER_PARAMS``), so the
  Jaccard column of that row is the Jaccard objective's default (the others' head keeps 0.1);
  ``--head-params`` adds the fold heads with other net parameters (screens by hand).

Writes runs/bench_datasets[-DTYPE].json and prints a Markdown table per data set.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from bench_defaults import (
    EARLY,
    NEW_HEAD,
    fold_head_scores,
    head_scores,
    make_stack,
    meta_scores,
)
from bench_head import ROOT, RULES
from bench_head_cost import Clock
from bench_quality import SEEDS, scores, summarise
from data_sets import load
from machine import describe
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skstack import EncoderEmbedder, TunedThresholds
from skstack.pipelines import OBJECTIVE_CLASSIFIER_PARAMS, RECOMMENDED_RULE_PARAMS

DEFAULT = "default pipeline (word mode, recommended head)"
BLOCK = "same head, block mode"
META = "meta-learner alone (word mode stack)"
LR = "one-vs-rest LR (C=1) on the pooled vectors"
FOLDS = "default head, {k} fold heads averaged, rule on all rows out of fold"
BLEND = "the same {k} fold heads blended with the meta-learner, weight tuned out of fold"
NARROW = "3 fold heads averaged, 64 wide (the head's projection and LSTM half as wide)"
CORR = "3 fold heads averaged, correlation term 0.3 (the Jaccard objective's default)"
STAGES = ("encoders", "character n-grams", "meta-learner (out of fold + final)")


def fit_stack(words: bool, dtype: str, X_train, Y_train, X_test, backend: str = "torch",
              quantization: str | None = None, multilingual: bool = False,
              extra: tuple[str, ...] = ()):
    """The stack's training and test blocks and the seconds of each stage of its fit."""
    stack = make_stack(words, dtype=dtype, cache=None, backend=backend,
                       quantization=quantization, multilingual=multilingual, extra=extra)
    clock = Clock()
    chars_class = type(dict(stack.members)["chars"])
    patched = [(EncoderEmbedder, "fit_transform", STAGES[0]),
               (chars_class, "fit_transform", STAGES[1])]
    originals = [getattr(owner, attr) for owner, attr, _ in patched]
    for (owner, attr, name), real in zip(patched, originals, strict=True):
        setattr(owner, attr, clock.wrap(name, real))
    start = time.perf_counter()
    try:
        S_train = stack.fit_transform(X_train, Y_train)
    finally:
        for (owner, attr, _), real in zip(patched, originals, strict=True):
            setattr(owner, attr, real)
    seconds = {**clock.seconds, "stack fit": time.perf_counter() - start}
    # the remainder is the meta-learner's out-of-fold and final fits (and word alignment)
    seconds[STAGES[2]] = seconds["stack fit"] - seconds[STAGES[0]] - seconds[STAGES[1]]
    return stack, S_train, stack.transform(X_test), seconds


def lr_scores(seed: int, S_train, Y_train, S_test, Y_test, labels, n_labels: int) -> dict:
    """One-vs-rest LR on the members' pooled vectors (the meta block left out), both rules."""
    X_train, X_test = (np.asarray(S)[:, :-n_labels] for S in (S_train, S_test))
    out = {}
    for name, rule in RULES.items():
        model = make_pipeline(StandardScaler(),
                              OneVsRestClassifier(LogisticRegression(max_iter=2000)))
        # the rule of the table's LR column (a 10 % hold-out, the pipelines' until 0.3)
        params = {**RECOMMENDED_RULE_PARAMS, "cv": 0.1, **rule, "random_state": seed}
        fitted = TunedThresholds(model, **params).fit(X_train, Y_train)
        out[name] = scores(Y_test, fitted.predict(X_test), labels)
    return out


def table(entry: dict) -> str:
    head = ("| configuration | macro-F1 (F1 rule) | Jaccard (Jaccard rule) | fit s (stack + "
            "model) |\n|---|---|---|---|")
    lines = [head]
    for name, cfg in entry["configs"].items():
        f1 = summarise([run["macro_f1"] for run in cfg["runs"]])["macro_f1"]
        jac = summarise([run["jaccard"] for run in cfg["runs"]])["jaccard"]
        lines.append(f"| {name} | {f1[0]:.3f} ± {f1[1]:.3f} | {jac[0]:.3f} ± {jac[1]:.3f} | "
                     f"{cfg['stack_seconds']:.0f} + {cfg['seconds']:.1f} |")
    for mode, seconds in entry["stack_seconds"].items():
        lines.append(f"| *{mode} stack's fit* | " + ", ".join(
            f"{k} {v:.1f} s" for k, v in seconds.items()) + " | | |")
    return "\n".join(lines)


def configurations(batch_orders: list[str], head_params: list[str] = ()
                   ) -> dict[str, tuple[str, str, dict]]:
    """name: (stack mode, kind of model, the head's parameters); each of ``head_params`` (a
    JSON object of the net's parameters) adds the 3 fold heads with those on top."""
    head = {**EARLY, **NEW_HEAD}
    out = {DEFAULT: ("word mode", "head", head), META: ("word mode", "meta", {}),
           BLOCK: ("block mode", "head", head), LR: ("block mode", "lr", {}),
           **{FOLDS.format(k=k): ("word mode", f"folds{k}", head) for k in (3, 5)},
           **{BLEND.format(k=k): ("word mode", f"blend{k}", head) for k in (3, 5)},
           NARROW: ("word mode", "folds3", {**head, "module__projection_dim": 64,
                                            "module__hidden_size": 64}),
           CORR: ("word mode", "folds3", {**head, **OBJECTIVE_CLASSIFIER_PARAMS["jaccard"]})}
    for order in batch_orders:  # the default head with other training batches
        out[f"default pipeline, batch_order={order!r}"] = (
            "word mode", "head", {**head, "batch_order": order})
    for text in head_params:
        out[f"3 fold heads averaged, {text}"] = ("word mode", "folds3",
                                                 {**head, **json.loads(text)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="*", default=["goemotions", "kaomoji"],
                        choices=("goemotions", "kaomoji"))
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--dtype", default="auto", choices=("float32", "bfloat16", "auto"))
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx", "openvino"))
    parser.add_argument("--quantization", default=None, choices=("int8",))
    parser.add_argument("--batch-orders", nargs="*", default=[],
                        choices=("rows", "shuffled", "by_length"),
                        help="also the default head with these batch orders")
    parser.add_argument("--head-params", nargs="*", default=[],
                        help='also 3 fold heads with these net parameters on top of the '
                        'default\'s, one JSON object each (e.g. \'{"lr": 0.0005}\')')
    parser.add_argument("--multilingual", action="store_true",
                        help="multilingual-e5-small as the one encoder (skstack's choice for "
                        "languages other than English) instead of MiniLM and sre")
    parser.add_argument("--extra", nargs="*", default=[],
                        choices=("words", "layer-4", "layer-8", "last-layer", "with-e5",
                                 "mpnet"),
                        help="more to stack from what is there (issue 31, item 3): word "
                        "n-grams; the first encoder's fourth layer from the top beside its "
                        "last (e5's default); its last, fourth and eighth; its last layer "
                        "only (e5 until 0.3); multilingual-e5-small beside MiniLM and sre; "
                        "all-mpnet-base-v2 in place of MiniLM and sre, or beside e5 with "
                        "--multilingual")
    parser.add_argument("--with-dev", action="store_true",
                        help="GoEmotions: train on the --train rows and the whole dev split "
                        "(5,426 texts), as the issue's tweet sets fit on train+dev")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), choices=range(1, 4),
                        help="the first of seeds 0, 1, 2 to run (fewer for the full data)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the configurations whose names contain one of these")
    args = parser.parse_args()
    if args.with_dev and "kaomoji" in args.data:  # before an hour of GoEmotions, not after
        parser.error("--with-dev needs --data goemotions: kaomoji-dataset has no dev split")
    print(describe())
    torch.set_num_threads(2)
    runtime = "" if args.backend == "torch" else f"-{args.backend}-{args.quantization or 'fp'}"
    runtime += "-e5" if args.multilingual else ""
    runtime += "".join(f"-{name}" for name in args.extra)
    runtime += "-with-dev" if args.with_dev else ""
    out_path = ROOT / "runs" / f"bench_datasets-{args.dtype}{runtime}.json"
    out_path.parent.mkdir(exist_ok=True)
    log = json.loads(out_path.read_text()) if out_path.exists() else {}
    configs = {name: c for name, c in configurations(args.batch_orders, args.head_params).items()
               if args.only is None or any(part in name for part in args.only)}
    for data in args.data:
        texts, Y, labels = load(data, args.train, args.test, args.with_dev)
        L = len(labels)
        print(f"\n{data}: {len(texts['train'])} training texts, {len(texts['test'])} test "
              f"texts, {L} labels, {Y['train'].sum(axis=1).mean():.2f} labels per text",
              flush=True)
        entry = log.setdefault(f"{data}-{args.train}", {"configs": {}, "stack_seconds": {}})
        entry["labels"] = labels
        for mode in dict.fromkeys(m for m, _, _ in configs.values()):
            _, S_train, S_test, seconds = fit_stack(mode == "word mode", args.dtype,
                                                    texts["train"], Y["train"], texts["test"],
                                                    args.backend, args.quantization,
                                                    args.multilingual, tuple(args.extra))
            entry["stack_seconds"][mode] = seconds
            runs = {name: [] for name, (m, _, _) in configs.items() if m == mode}
            fold_runs = {}
            spent = dict.fromkeys(runs, 0.0)
            for seed in SEEDS[:args.seeds]:
                for name in runs:
                    _, kind, params = configs[name]
                    start = time.perf_counter()
                    if kind == "meta":
                        result = meta_scores(S_train, Y["train"], S_test, Y["test"], labels)
                    elif kind.startswith(("folds", "blend")):  # one fit serves both
                        k = int(kind[5:])
                        key = (k, seed, json.dumps(params, sort_keys=True, default=str))
                        if key not in fold_runs:
                            fold_runs[key] = fold_head_scores(
                                params, seed, k, S_train, Y["train"], S_test, Y["test"],
                                labels)
                        result = fold_runs[key]
                        result = result["blend"] if kind.startswith("blend") else result
                    elif kind == "lr":
                        result = lr_scores(seed, S_train, Y["train"], S_test, Y["test"],
                                           labels, L)
                    else:
                        result = head_scores(params, seed, S_train, Y["train"], S_test,
                                             Y["test"], labels)
                    spent[name] += (time.perf_counter() - start) / args.seeds
                    runs[name].append(result)
            for name, results in runs.items():
                entry["configs"][name] = {"runs": results, "seconds": spent[name],
                                          "stack_seconds": seconds["stack fit"]}
                print(name, {r: round(float(np.mean([x[r][r] for x in results])), 4)
                             for r in RULES}, "best epochs", [x.get("best_epoch") for x in
                                                              results],
                      "blend weights", [[x.get(f"{r} weight") for r in RULES] for x in results],
                      flush=True)
            out_path.write_text(json.dumps(log, indent=1))
        print(f"\n{table(entry)}\n", flush=True)


if __name__ == "__main__":
    main()
