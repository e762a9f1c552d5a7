"""What the fold heads cost: the head and its rule with one net or with k fold nets (run by hand).

    python benchmarks/bench_fold_heads.py              # 3,000 GoEmotions texts, 2 rounds
    python benchmarks/bench_fold_heads.py --n 1000 --rounds 3

The quickstart's stack (MiniLM in word mode + character n-grams + the meta-learner) is
fitted once on the first ``--n`` GoEmotions training texts. On its output, side by side and
alternating for ``--rounds`` rounds, ``TunedThresholds`` around the recommended head is
fitted with the rule of 0.2 (one net, a 10 % hold-out: ``cv=0.1``) and with fold heads
(``cv=3`` and ``cv=5``, ``refit=False``: the ready-made pipelines' rule since 0.3 is 3), and
with 3 fold nets 64 wide (the head's projection and LSTM half the default 128). Printed
per rule: the fit's seconds (the nets and the rule's tuning), and the seconds
``predict_proba`` takes on 16 texts (a server's batch, the stack's output precomputed) and on
the 2,000 first test texts. Run from the repository root, with ``../shared/data/goemotions``
beside it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from machine import describe

from skstack import load_goemotions, quickstart_pipeline

DATA = "../shared/data/goemotions"
# name: (the rule's cv, the width of the head's projection and LSTM)
RULES = {"one net, 10 % hold-out (0.2)": (0.1, 128), "3 fold nets (0.3's default)": (3, 128),
         "3 fold nets, 64 wide": (3, 64), "5 fold nets": (5, 128)}


def seconds(call, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(describe())
    torch.set_num_threads(2)
    train, test = load_goemotions(DATA, "train"), load_goemotions(DATA, "test")
    pipe = quickstart_pipeline().set_params(embed__minilm__cache=None)
    stack, rule = pipe.named_steps["embed"], pipe.named_steps["clf"]
    Z = stack.fit_transform(train.texts[:args.n], train.Y[:args.n])
    Z_test = stack.transform(test.texts[:2000])
    few = Z_test[np.arange(16)]
    print(f"\n{args.n} training texts; seconds, round by round\n")
    print("| rule | fit | predict_proba, 16 texts | predict_proba, 2,000 texts |\n"
          "|---|---|---|---|")
    for r in range(args.rounds):
        for name, (cv, width) in RULES.items():
            fitted = rule.set_params(cv=cv, refit=False, estimator__module__hidden_size=width,
                                     estimator__module__projection_dim=width)
            fit = seconds(lambda f=fitted: f.fit(Z, train.Y[:args.n]))
            small = seconds(lambda f=fitted: f.predict_proba(few), repeat=20)
            large = seconds(lambda f=fitted: f.predict_proba(Z_test))
            print(f"| {name} (round {r + 1}) | {fit:.1f} | {small:.4f} | {large:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
