"""Does the Bi-LSTM head earn its place over its own meta-learner? (run by hand)

    python benchmarks/bench_head.py                        # frozen members, ~20 min warm
    python benchmarks/bench_head.py --finetune-epochs 2    # MiniLM fine-tuned (bf16 autocast)
    python benchmarks/bench_head.py --quick                # 3,000 / 1,000 / 1,000 rows
    python benchmarks/bench_head.py --only "plain BCE" "pairwise"   # some configurations
    python benchmarks/bench_head.py --only pairwise --rule-sources  # where the rule's rows
                                                                    # come from (seed 0)
    python benchmarks/bench_head.py --words mean           # word mode: the Bi-LSTM reads words

GoEmotions, full splits. One stack is fitted on train: MiniLM (frozen, or fine-tuned on train
for ``--finetune-epochs``), sre-embedding-model (frozen) and character TF-IDF, plus the
out-of-fold meta-learner. On that stack, for seeds 0, 1, 2: the meta-learner alone, and the
Bi-LSTM head with and without the residual path from the meta-learner's logits, under each
loss option. Nets stop early on dev; every decision rule is tuned on dev with
``TunedThresholds(model, cv="prefit")`` and scored on test, for two objectives: per-label F1
thresholds (macro-F1) and per-label Jaccard thresholds with ``min_labels=1`` (Jaccard).
Test rows are used for nothing but the scores. ``--rule-sources`` also fits the residual +
pairwise head inside ``TunedThresholds`` as a pipeline without a dev set would (seed 0):
rules tuned on a 10 % hold-out of train (``cv=0.1, refit=False``) and on out-of-fold
probabilities of all of train (``cv=3``), against the dev-tuned rule. ``--words first|mean``
puts both encoders in word mode: the Bi-LSTM reads each text word by word (MiniLM and sre
states side by side per word), and the character n-grams and the meta block join at the head.
Writes runs/bench_head[-ftN][-words-M][-quick].json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_quality import CACHE, SEEDS, encoders, load_splits, net, scores, summarise
from machine import describe

from skstack import (
    EncoderEmbedder,
    StackingEmbedder,
    TunedThresholds,
    char_tfidf_member,
    decide,
    tune_thresholds,
)

ROOT = Path(__file__).resolve().parents[1]
RULES = {"macro_f1": {"objective": "macro_f1"},
         "jaccard": {"objective": "jaccard", "min_labels": 1}}
NO_EXTRAS = {"criterion__corr_weight": 0.0, "criterion__contrastive_weight": 0.0}
R = {"module__residual": "auto"}
CONFIGS = {
    "head, no residual, hybrid loss (0.1 default)": {"module__residual": None},
    "head + residual, plain BCE": {**R, "criterion__pos_weight": None, **NO_EXTRAS},
    "head + residual, sqrt-weighted BCE": {**R, "criterion__pos_weight": "sqrt", **NO_EXTRAS},
    "head + residual, hybrid loss (balanced BCE + corr + contrastive)": R,
    "head + residual, BCE + Pearson corr + contrastive": {**R, "criterion__pos_weight": None},
    "head + residual, BCE + pairwise corr": {
        **R, "criterion__pos_weight": None, "criterion__corr_form": "pairwise",
        "criterion__contrastive_weight": 0.0},
    "head + residual, ZLPR": {**R, "criterion__bce_weight": 0.0, "criterion__zlpr_weight": 1.0,
                              **NO_EXTRAS},
}
RULE_SOURCES = {"10 % of train held out (cv=0.1, refit=False)": {"cv": 0.1, "refit": False},
                "out of fold on all of train (cv=3, refitted)": {"cv": 3}}


def rule_scores(Y, labels, P_dev, P_test) -> dict[str, dict]:
    """Test scores under each rule tuned on dev."""
    out = {}
    for name, rule in RULES.items():
        t = tune_thresholds(Y["dev"], P_dev, **rule)
        out[name] = scores(Y["test"], decide(P_test, t, rule.get("min_labels", 0)), labels)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rule-sources", action="store_true")
    parser.add_argument("--words", choices=("first", "mean"), default=None,
                        help="word mode with this subword pooling")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the configurations whose names contain one of these")
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    torch.set_num_threads(2)
    texts, Y, labels = load_splits(args.quick)
    log: dict = {"finetune_epochs": args.finetune_epochs, "quick": args.quick,
                 "words": args.words, "configs": {}}

    paths = encoders()
    tuned = {"finetune_epochs": args.finetune_epochs, "finetune_mixed_precision": True,
             "max_length": 64, "finetune_batch_size": 32, "random_state": 0,
             "show_progress_bar": True} if args.finetune_epochs else {"max_length": 128}
    common = {"batch_size": 64, "cache": CACHE, "device": "cpu", "word_pooling": args.words}
    members = [
        ("minilm", EncoderEmbedder(paths["minilm"], **tuned, **common)),
        ("sre", EncoderEmbedder(paths["sre"], max_length=128, **common)),
        ("chars", char_tfidf_member(128)),
    ]
    start = time.perf_counter()
    stack = StackingEmbedder(members, cv=3, random_state=0)
    S = {"train": stack.fit_transform(texts["train"], Y["train"])}
    S.update({s: stack.transform(texts[s]) for s in ("dev", "test")})
    log["stack_seconds"] = time.perf_counter() - start
    print(f"stack: {log['stack_seconds']:.0f} s, blocks {stack.blocks_}", flush=True)

    L = len(labels)
    meta = {s: (Z.sentence if args.words else Z)[:, -L:] for s, Z in S.items()}
    log["configs"]["meta-learner alone"] = {
        "runs": [rule_scores(Y, labels, meta["dev"], meta["test"])], "seconds": 0.0}
    chosen = {n: p for n, p in CONFIGS.items()
              if args.only is None or any(part in n for part in args.only)}
    for name, params in chosen.items():
        start, runs = time.perf_counter(), []
        for seed in SEEDS:
            model = net(seed, (S["dev"], Y["dev"]), **params).fit(S["train"], Y["train"])
            runs.append(rule_scores(Y, labels, model.predict_proba(S["dev"]),
                                    model.predict_proba(S["test"])))
        log["configs"][name] = {"runs": runs, "params": params,
                                "seconds": (time.perf_counter() - start) / len(SEEDS)}
        print(name, {r: round(float(np.mean([run[r][r] for run in runs])), 4) for r in RULES},
              flush=True)

    if args.rule_sources:
        log["rule_sources"] = rule_sources(S, Y, labels)

    suffix = f"-ft{args.finetune_epochs}" if args.finetune_epochs else ""
    suffix += f"-words-{args.words}" if args.words else ""
    suffix += "-quick" if args.quick else ""
    (ROOT / "runs").mkdir(exist_ok=True)
    (ROOT / "runs" / f"bench_head{suffix}.json").write_text(json.dumps(log, indent=1))
    print(table(log))


def rule_sources(S: dict, Y: dict, labels: list[str]) -> dict[str, dict]:
    """Test scores of the residual head with the pairwise term (seed 0), each rule tuned
    without dev rows."""
    params = CONFIGS["head + residual, BCE + pairwise corr"]
    out = {}
    for source, cv in RULE_SOURCES.items():
        start, out[source] = time.perf_counter(), {}
        for name, rule in RULES.items():
            clf = TunedThresholds(net(0, (S["dev"], Y["dev"]), **params), random_state=0,
                                  **rule, **cv).fit(S["train"], Y["train"])
            out[source][name] = scores(Y["test"], clf.predict(S["test"]), labels)
        out[source]["seconds"] = time.perf_counter() - start
        print(source, {r: round(out[source][r][r], 4) for r in RULES}, flush=True)
    return out


def table(log: dict) -> str:
    lines = ["| configuration | macro-F1 (F1 rule) | Jaccard (F1 rule) | macro-F1 (Jaccard rule) "
             "| Jaccard (Jaccard rule) | s / seed |", "|---|---|---|---|---|---|"]
    for name, cfg in log["configs"].items():
        cells = []
        for rule in RULES:
            s = summarise([run[rule] for run in cfg["runs"]])
            cells += [f"{s[k][0]:.3f} ± {s[k][1]:.3f}" for k in ("macro_f1", "jaccard")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cfg['seconds']:.0f} |")
    for source, runs in log.get("rule_sources", {}).items():
        cells = [f"{runs[rule][k]:.3f}" for rule in RULES for k in ("macro_f1", "jaccard")]
        lines.append(f"| residual + pairwise head, rule tuned on {source} | " + " | ".join(cells)
                     + f" | {runs['seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
