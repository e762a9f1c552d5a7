"""What e5's second layer costs: the pipeline for a language other than English with the
last layer only (0.2) and with the last and the fourth from the top (0.3) (run by hand).

    python benchmarks/bench_layers.py              # 2,000 kaomoji texts, 2 rounds
    python benchmarks/bench_layers.py --n 1000 --rounds 3

``quickstart_pipeline(language="ja")`` (multilingual-e5-small in word mode + character
n-grams, the meta-learner, three fold heads) is fitted on the first ``--n`` kaomoji-dataset
training texts (``data_sets.py``, the ``[bench]`` extra) with ``layers=-1`` and with
``E5_PARAMS``' two layers, read from one forward pass and concatenated, side by side and
alternating for ``--rounds`` rounds, no cache. Printed per variant: the fit's seconds, and
``predict_proba``'s on 16 texts (a server's batch) and on the first 1,000 test texts. Their
quality is measured by ``bench_datasets.py --multilingual --extra last-layer`` against
``bench_datasets.py --multilingual`` (docs/benchmarks.md, "More to stack from one encoder").
"""

from __future__ import annotations

import argparse

import torch
from bench_fold_heads import seconds
from data_sets import load_kaomoji
from machine import describe

from skstack import quickstart_pipeline

VARIANTS = {"last layer (0.2)": {"layers": -1, "layer_combine": "mean"},
            "last + fourth from the top, one pass (0.3)": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(describe())
    torch.set_num_threads(2)
    texts, Y, _ = load_kaomoji(args.n, 1000)
    few = texts["test"][:16]
    print(f"\n{args.n} training texts; seconds, round by round\n")
    print("| e5 reads | fit | predict_proba, 16 texts | predict_proba, 1,000 texts |\n"
          "|---|---|---|---|")
    for r in range(args.rounds):
        for name, layers in VARIANTS.items():
            pipe = quickstart_pipeline(language="ja").set_params(embed__e5__cache=None)
            pipe.set_params(**{f"embed__e5__{k}": v for k, v in layers.items()})
            fit = seconds(lambda p=pipe: p.fit(texts["train"], Y["train"]))
            small = seconds(lambda p=pipe: p.predict_proba(few), repeat=10)
            large = seconds(lambda p=pipe: p.predict_proba(texts["test"]))
            print(f"| {name} (round {r + 1}) | {fit:.1f} | {small:.3f} | {large:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
