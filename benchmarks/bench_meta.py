"""How much does the meta-learner's regularisation matter? (issue 31; run by hand, ~5 min)

    python benchmarks/bench_meta.py goemotions 3000 2000
    python benchmarks/bench_meta.py kaomoji 3000 2000
    python benchmarks/bench_meta.py kaomoji 3000 2000 --multilingual   # e5 instead of MiniLM

The stack's members as the quickstart has them (MiniLM, or e5, frozen, ``dtype="auto"``, and
character TF-IDF + SVD), fitted once with ``meta_learner="drop"``: one pooled vector per text.
On those vectors, the default meta-learner's form (standardised features, one logistic
regression per label) with each ``C`` of a grid, then ``C`` chosen per label or shared by
the out-of-fold log loss and by other criteria, skstack's default (``tuned_meta_learner``:
``C`` walked along its grid by out-of-fold macro average precision), and scikit-learn's
``LogisticRegressionCV`` per label (inner 3-fold CV, log loss). Each variant's out-of-fold
probabilities (3 folds) tune the rule (shrinkage 10, at least one label), as the pipelines'
meta-learner alone is scored; the test rows are used for the scores only. Until 0.3 the
meta-learner was ``C=0.05`` fixed; a plain LR is ``C=1``. Prints one line per variant:
out-of-fold log loss, test macro-F1 and Jaccard, and the seconds of its out-of-fold fits and
final fit (one BLAS thread, as in the stack).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from data_sets import load
from machine import describe
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skstack import (
    EncoderEmbedder,
    StackingEmbedder,
    char_tfidf_member,
    decide,
    default_minilm,
    tune_thresholds,
)
from skstack.pipelines import E5_PARAMS, default_multilingual
from skstack.stacking import META_C_START, tuned_meta_learner
from skstack.thresholds import score_predictions

GRID = (0.003, 0.01, 0.03, 0.05, 0.1, 0.3, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", choices=("goemotions", "kaomoji"))
    parser.add_argument("train", type=int)
    parser.add_argument("test", type=int)
    parser.add_argument("--multilingual", action="store_true",
                        help="multilingual-e5-small instead of MiniLM")
    args = parser.parse_args()
    print(describe())
    X, Y, _ = load(args.data, args.train, args.test)
    encoder = (("e5", default_multilingual(), E5_PARAMS) if args.multilingual
               else ("minilm", default_minilm(), {}))
    members = [(encoder[0], EncoderEmbedder(encoder[1], max_length=128, batch_size=64,
                                            dtype="auto", **encoder[2])),
               ("chars", char_tfidf_member(128, random_state=0))]
    stack = StackingEmbedder(members, meta_learner="drop", cv=3, random_state=0)
    F = np.asarray(stack.fit_transform(X["train"], Y["train"]))
    G = np.asarray(stack.transform(X["test"]))
    Y_train, Y_test = Y["train"], Y["test"]
    folds = list(KFold(3, shuffle=True, random_state=0).split(F))

    def losses(oof):
        return np.array([log_loss(Y_train[:, j], oof[:, j], labels=[0, 1])
                         for j in range(Y_train.shape[1])])

    def report(name, oof, test, seconds=None):
        scores = []
        for objective in ("macro_f1", "jaccard"):
            t = tune_thresholds(Y_train, oof, objective=objective, shrinkage=10.0,
                                min_labels=1)
            scores.append(score_predictions(Y_test, decide(test, t, min_labels=1), objective))
        timing = "" if seconds is None else f" | {seconds:.1f} s"
        print(f"| {name} | {losses(oof).mean():.4f} | {scores[0]:.4f} | {scores[1]:.4f}"
              f"{timing} |", flush=True)

    def oof_rule(oof, objective):
        t = tune_thresholds(Y_train, oof, objective=objective, shrinkage=10.0, min_labels=1)
        return score_predictions(Y_train, decide(oof, t, min_labels=1), objective)

    def run(model):
        start = time.perf_counter()
        with threadpool_limits(1, user_api="blas"):
            oof = cross_val_predict(model, F, Y_train, cv=folds, method="predict_proba")
            test = model.fit(F, Y_train).predict_proba(G)
        return oof, test, time.perf_counter() - start

    print(f"\n{args.data}: {F.shape[0]} training rows, {G.shape[0]} test rows, "
          f"{F.shape[1]} features, {Y_train.shape[1]} labels\n")
    print("| meta-learner | out-of-fold log loss | test macro-F1 | test Jaccard | fit |")
    print("|---|---|---|---|---|")
    runs = {}
    for C in GRID:
        runs[C] = run(make_pipeline(StandardScaler(), OneVsRestClassifier(
            LogisticRegression(C=C, max_iter=2000))))
        report(f"C={C}", *runs[C])
    per_label = np.array([losses(runs[C][0]) for C in GRID]).T  # (labels, grid)
    best = per_label.argmin(axis=1)
    picked = [np.column_stack([runs[GRID[b]][i][:, j] for j, b in enumerate(best)])
              for i in (0, 1)]
    report("C per label by out-of-fold log loss", *picked)
    shared = GRID[int(per_label.sum(axis=0).argmin())]
    report(f"one C by out-of-fold log loss ({shared})", *runs[shared][:2])
    criteria = {
        "macro average precision": lambda p: average_precision_score(Y_train, p,
                                                                      average="macro"),
        "macro ROC AUC": lambda p: roc_auc_score(Y_train, p, average="macro"),
        "out-of-fold tuned macro-F1": lambda p: oof_rule(p, "macro_f1"),
        "out-of-fold tuned Jaccard": lambda p: oof_rule(p, "jaccard"),
    }
    for name, score in criteria.items():
        values = [score(runs[C][0]) for C in GRID]
        chosen = GRID[int(np.argmax(values))]
        report(f"one C by {name} ({chosen})", *runs[chosen][:2])
    start = time.perf_counter()
    with threadpool_limits(1, user_api="blas"):
        model, oof, tried = tuned_meta_learner(F, Y_train, Y_train, folds, random_state=0)
        test = model.fit(F, Y_train).predict_proba(G)
    report(f"skstack's default: C walked from {META_C_START} by out-of-fold macro average "
           f"precision ({model[-1].estimator.C}; tried {sorted(tried)})", oof, test,
           time.perf_counter() - start)
    report("LogisticRegressionCV per label (inner 3-fold, log loss)", *run(make_pipeline(
        StandardScaler(), OneVsRestClassifier(LogisticRegressionCV(
            Cs=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0], cv=3, scoring="neg_log_loss",
            max_iter=2000)))))


if __name__ == "__main__":
    main()
