"""
# Quickstart: the stacked pipeline on the bundled sample

The stacked pipeline on the bundled GoEmotions sample, offline.

Fits ``StackingEmbedder([MiniLM, character TF-IDF] + meta-learner) -> BiLSTMClassifier``
with the recommended settings (the Bi-LSTM reads MiniLM's word states, starts from the
meta-learner's logits, trains on BCE + the pairwise label-correlation term and stops early),
inside ``TunedThresholds`` (three such nets, one per fold, averaged; per-label thresholds
tuned on every training row out of fold, at least one label per text), on 3,000 texts;
prints the multi-label report on 1,000 test texts next to a predict-the-most-frequent-label
baseline, saves the fitted pipeline with joblib and in the safe ``.skstack`` format, reloads
both and checks that the predictions are identical.

    python examples/quickstart.py                       # offline MiniLM from PyPI
    python examples/quickstart.py --model sentence-transformers/all-MiniLM-L6-v2  # hub id

About a minute on 2 CPU cores (59 s on an AMD EPYC Zen 4, 53 s limited to AVX2 in float32).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from skstack import (
    decision_rule,
    default_minilm,
    load,
    load_sample_emotions,
    multilabel_report,
    predict_label_lists,
    progress_to_stderr,
    quickstart_pipeline,
    save,
)


def main() -> None:
    parser = argparse.ArgumentParser(description="The quickstart: skstack on the "
                                     "bundled GoEmotions sample.")
    parser.add_argument("--model", default=default_minilm(), help="hub id or model folder")
    parser.add_argument("--out", default="quickstart_pipeline.joblib")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    progress_to_stderr(not args.quiet)  # a line per long stage: encoding, epochs, saving

    X_train, Y_train, labels = load_sample_emotions("train")
    X_test, Y_test, _ = load_sample_emotions("test")
    print(f"{len(X_train)} training and {len(X_test)} test texts, {len(labels)} labels")

    # MiniLM + character n-grams + meta-learner -> Bi-LSTM, per-label thresholds for macro-F1
    pipe = quickstart_pipeline(args.model, objective="macro_f1")
    start = time.perf_counter()
    pipe.fit(X_train, pd.DataFrame(Y_train, columns=labels))  # a DataFrame names the labels
    print(f"fitted in {time.perf_counter() - start:.0f} s")

    rule = decision_rule(pipe)  # the tuned thresholds of TunedThresholds around the net
    pred = pipe.predict(X_test)
    report = multilabel_report(Y_test, pred, labels, thresholds=rule.thresholds,
                               threshold_objective=rule.objective)
    print(report)
    for text, names in zip(X_test[:3], predict_label_lists(pipe, X_test[:3]), strict=True):
        print(f"{names} <- {text!r}")

    top = np.argmax(Y_train.sum(axis=0))
    baseline_pred = np.zeros_like(Y_test)
    baseline_pred[:, top] = 1
    baseline = multilabel_report(Y_test, baseline_pred, labels)
    print(f"\nBaseline (every text gets the most frequent label, {labels[top]!r}):")
    print(f"{'':22}{'stacked':>9}{'baseline':>10}")
    for name, ours, theirs in [
        ("micro F1", report.averages["micro"]["f1"], baseline.averages["micro"]["f1"]),
        ("macro F1", report.averages["macro"]["f1"], baseline.averages["macro"]["f1"]),
        ("Jaccard accuracy", report.jaccard_accuracy, baseline.jaccard_accuracy),
        ("Hamming loss", report.hamming_loss, baseline.hamming_loss),
    ]:
        print(f"{name:22}{ours:9.3f}{theirs:10.3f}")
    print(f"Why the Hamming loss is higher: it counts every wrong label cell, and the "
          f"{rule.objective} rule lowers rare labels' thresholds to find them "
          f"({pred.sum(axis=1).mean():.1f} labels per text against "
          f"{Y_test.sum(axis=1).mean():.1f} in the gold), while the baseline's one label per "
          "text makes few wrong cells; objective='jaccard' predicts fewer labels.")

    joblib.dump(pipe, args.out)
    safe = save(pipe, Path(args.out).with_suffix(".skstack"))
    same = all(np.array_equal(reloaded.predict(X_test), pred)
               for reloaded in (joblib.load(args.out), load(safe)))
    print(f"\nsaved to {args.out} (joblib) and {safe} (safe format); reloaded predictions "
          f"identical: {same}")
    if not same:
        raise SystemExit("reloaded pipeline predicts differently")


if __name__ == "__main__":
    main()
