"""Where the fit of the quickstart pipeline spends its time, against the plain baseline.

``quickstart_pipeline`` (MiniLM in word mode + character n-grams, the out-of-fold
meta-learner, the Bi-LSTM head and its rule) is fitted on the first ``--n`` GoEmotions
training texts (``--data kaomoji``: ``--n`` kaomoji, see ``data_sets.py``; ``--data sample``:
the quickstart's bundled sample), its stages
timed: the encoder, the other member, the meta-learner (its out-of-fold fits and the final
one) and the head (the net and its tuned rule). Beside it, in the same process:
``SentenceTransformer.encode`` + one-vs-rest logistic regression with tuned thresholds. Both
are scored on ``--n-test`` test texts. The head's own profile follows: epochs run, the
padding its word batches carry, and its most expensive calls.

To measure a CPU without bfloat16 on one that has it (the issue's target)::

    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/bench_head_cost.py --dtype float32

Run from the repository root, with ``../shared/data/goemotions`` beside it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np
import torch
from data_sets import load_kaomoji
from machine import describe
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

import skstack.stacking
from skstack import (
    EncoderEmbedder,
    TunedThresholds,
    default_minilm,
    load_goemotions,
    load_sample_emotions,
    multilabel_report,
    quickstart_pipeline,
)

DATA = "../shared/data/goemotions"


class Clock:
    """Seconds spent in wrapped calls, by name."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return timed


def padding_share(net, Z, Y) -> float:
    """Share of padded word steps in one epoch of the net's training batches (all rows)."""
    lengths = np.maximum(Z.lengths, 1)  # a text without words reads one step
    batches = net.get_iterator(net.get_dataset(Z, Y), training=True).batch_sampler
    padded = sum(lengths[b].max() * len(b) for b in batches)
    return 1 - lengths.sum() / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="goemotions",
                        choices=("goemotions", "kaomoji", "sample"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-order", default=None, choices=("rows", "shuffled", "by_length"),
                        help="the head's batch_order (default: the pipeline's)")
    args = parser.parse_args()
    print(describe())
    if args.data == "sample":  # the quickstart's bundled sample (--n and --n-test ignored)
        texts, Y, label_names = load_sample_emotions("train")
        test_texts, Y_test, _ = load_sample_emotions("test")
    elif args.data == "kaomoji":
        split_texts, split_Y, label_names = load_kaomoji(args.n, args.n_test)
        texts, Y, test_texts, Y_test = (split_texts["train"], split_Y["train"],
                                        split_texts["test"], split_Y["test"])
    else:  # the first rows of each split, as before this option
        train, test = load_goemotions(DATA, "train"), load_goemotions(DATA, "test")
        texts, Y, label_names = train.texts[: args.n], train.Y[: args.n], train.label_names
        test_texts, Y_test = test.texts[: args.n_test], test.Y[: args.n_test]

    # the pipeline, its stages timed
    pipe = quickstart_pipeline(random_state=args.seed)
    pipe.set_params(embed__minilm__dtype=args.dtype, embed__minilm__cache=None)
    if args.batch_order is not None:
        pipe.set_params(clf__estimator__batch_order=args.batch_order)
    clock = Clock()
    stack, rule = pipe.named_steps["embed"], pipe.named_steps["clf"]
    # the stack fits clones of its members: time their classes' fit_transform (the
    # meta-learner is fitted with fit, so the character pipeline's class is safe to wrap)
    chars_class = type(stack.members[1][1])
    patched = [(EncoderEmbedder, "fit_transform", "encoder (MiniLM, word mode)"),
               (chars_class, "fit_transform", "character n-grams"),
               (skstack.stacking, "cross_val_predict", "meta-learner, out of fold")]
    originals = [getattr(owner, attr) for owner, attr, _ in patched]
    for (owner, attr, name), real in zip(patched, originals, strict=True):
        setattr(owner, attr, clock.wrap(name, real))
    start = time.perf_counter()
    Z = stack.fit_transform(texts, Y)
    stack_seconds = time.perf_counter() - start
    for (owner, attr, _), real in zip(patched, originals, strict=True):
        setattr(owner, attr, real)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    rule.fit(Z, Y)
    profile.disable()
    clock.seconds["head (net + rule)"] = time.perf_counter() - start
    clock.seconds["rest of the stack (final meta fit, word alignment)"] = stack_seconds - sum(
        v for k, v in clock.seconds.items() if k != "head (net + rule)")  # the remainder
    pipe_seconds = stack_seconds + clock.seconds["head (net + rule)"]
    pred = pipe.predict(test_texts)

    # the baseline: sentence-transformers + one-vs-rest logistic regression, tuned thresholds
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    st = SentenceTransformer(default_minilm(), device="cpu")
    vectors = st.encode(texts, batch_size=64)
    base = TunedThresholds(OneVsRestClassifier(LogisticRegression(max_iter=1000)), cv=0.1,
                           random_state=args.seed).fit(vectors, Y)
    base_seconds = time.perf_counter() - start
    base_pred = base.predict(st.encode(test_texts, batch_size=64))

    print(f"\n{len(texts)} {args.data} training texts, dtype {args.dtype}, seed {args.seed}")
    print("| stage | seconds | share of the pipeline's fit |\n|---|---|---|")
    for name, seconds in clock.seconds.items():
        print(f"| {name} | {seconds:.1f} | {seconds / pipe_seconds:.0%} |")
    print(f"| **pipeline fit** | {pipe_seconds:.1f} | 100% |")
    print(f"| ST encode + LR + tuned thresholds | {base_seconds:.1f} | "
          f"ratio pipeline/baseline **{pipe_seconds / base_seconds:.1f}x** |")
    for name, p in (("pipeline", pred), ("baseline", base_pred)):
        report = multilabel_report(Y_test, p, label_names)
        print(f"{name}: macro-F1 {report.averages['macro']['f1']:.3f}, Jaccard "
              f"{report.jaccard_accuracy:.3f}")

    net = rule.estimator_.estimators_[0][1]  # the first of the fold nets
    lengths = np.maximum(Z.lengths, 1)
    print(f"\nhead: {len(net.history)} epochs (patience {net.patience}, at most "
          f"{net.max_epochs}), words per text median {np.median(lengths):.0f}, max "
          f"{lengths.max()}; padded share of word steps in batches of {net.batch_size}: "
          f"{padding_share(net, Z, Y):.0%} (batch_order={net.batch_order!r}); module "
          f"{sum(p.numel() for p in net.module_.parameters()):,} parameters, word width "
          f"{sum(w for _, w in net.word_blocks_)} -> projection "
          f"{net.module_.word_projection.out_features}, LSTM hidden "
          f"{net.module_.lstm.hidden_size}")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(12)
    print("\nthe head's most expensive calls (own time):")
    print("\n".join(out.getvalue().splitlines()[6:22]))
    print(f"torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
