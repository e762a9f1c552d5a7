"""What fine-tuning costs the quickstart's fit and what it buys: frozen, every weight
fine-tuned, only the top layers fine-tuned (issue 35, items 1-2; run by hand).

    python benchmarks/bench_finetune_cost.py                        # MiniLM, GoEmotions
    python benchmarks/bench_finetune_cost.py --data kaomoji --model e5 --top 2 4
    python benchmarks/bench_finetune_cost.py --label-aware --only frozen "top 2"  # issue 31

``quickstart_pipeline`` (the encoder in word mode + character n-grams, the meta-learner, three
fold heads, the macro-F1 rule) on the first ``--n`` training texts of a fixed shuffle
(``data_sets.load``), no cache, fitted side by side for each seed: frozen; fine-tuned
``--epochs`` epochs on every weight (what ``finetune_epochs`` did until now); fine-tuned only
on the top ``--top`` layers (``finetune_layers``); with ``--label-aware``, each fine-tuned
variant label-aware too (``finetune_head="labels"``: the label names before each text, each
label scored from its name's token, the pairwise correlation term); with ``--leak-free``, each
with the stack's ``leak_free=True`` (the training rows' vectors from encoders fine-tuned on the
other folds). ``--only`` keeps the
variants whose names contain one of its words. The seed seeds the fine-tuning, the folds
and the heads. Printed per fit: seconds and the fit's multiple of the frozen fit of the same
seed, test macro-F1 and Jaccard (both of the macro-F1 rule's predictions), and the machine's
1-minute load before the fit; then mean and SD over the seeds.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch
from bench_quality import scores, summarise
from data_sets import load
from machine import describe

from skstack import default_minilm, quickstart_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="goemotions", choices=("goemotions", "kaomoji"))
    parser.add_argument("--model", default="minilm", choices=("minilm", "e5"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--top", type=int, nargs="*", default=[2],
                        help="fine-tune only this many top layers (one variant each)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--label-aware", action="store_true",
                        help="also each top-layers variant with finetune_head='labels'")
    parser.add_argument("--leak-free", action="store_true",
                        help="also each fine-tuned variant with the stack's leak_free=True")
    parser.add_argument("--only", nargs="*", default=None,
                        help="only the variants whose names contain one of these")
    args = parser.parse_args()
    print(describe())
    torch.set_num_threads(2)
    texts, Y, labels = load(args.data, args.n, args.n_test)
    variants = {"frozen": {"finetune_epochs": 0}}
    # the pipelines' own setting since 0.3 is the top third: every weight is asked
    for name, layers in [("every weight", None), *((f"top {k} layers", k) for k in args.top)]:
        variants[f"{args.epochs} epochs, {name}"] = {"finetune_epochs": args.epochs,
                                                     "finetune_layers": layers}
        if args.label_aware:
            variants[f"{args.epochs} epochs, {name}, label-aware"] = {
                "finetune_epochs": args.epochs, "finetune_layers": layers,
                "finetune_head": "labels"}
        if args.leak_free:
            variants[f"{args.epochs} epochs, {name}, leak-free"] = {
                "finetune_epochs": args.epochs, "finetune_layers": layers, "leak_free": True}
    if args.only:
        variants = {name: params for name, params in variants.items()
                    if any(word in name for word in args.only)}
    print(f"\n{args.data}: {len(texts['train'])} training texts, {len(texts['test'])} test "
          f"texts, {args.model}\n")
    print("| variant, seed | fit s | × frozen | macro-F1 | Jaccard | load before |\n"
          "|---|---|---|---|---|---|")
    runs = {name: [] for name in variants}
    for seed in args.seeds:
        frozen_seconds = None
        for name, params in variants.items():
            if args.model == "e5":
                # any language but English gives e5 (two layers, its prefix)
                pipe, encoder = quickstart_pipeline(language="ja", random_state=seed), "e5"
            else:
                pipe = quickstart_pipeline(default_minilm(), random_state=seed)
                encoder = "minilm"
            params = dict(params)
            pipe.set_params(embed__leak_free=params.pop("leak_free", False),
                            **{f"embed__{encoder}__{k}": v
                               for k, v in {"cache": None, **params}.items()})
            load_before = os.getloadavg()[0]  # others' jobs (and the end of our previous fit)
            start = time.perf_counter()
            # named columns: a label-aware fine-tuning reads the label names
            pipe.fit(texts["train"], pd.DataFrame(Y["train"], columns=labels))
            seconds = time.perf_counter() - start
            frozen_seconds = frozen_seconds or seconds
            result = scores(Y["test"], pipe.predict(texts["test"]), labels)
            runs[name].append({"seconds": seconds, "ratio": seconds / frozen_seconds,
                               "macro_f1": result["macro_f1"], "jaccard": result["jaccard"]})
            print(f"| {name}, seed {seed} | {seconds:.0f} | {seconds / frozen_seconds:.1f} | "
                  f"{result['macro_f1']:.3f} | {result['jaccard']:.3f} | {load_before:.1f} |",
                  flush=True)
    print("\n| variant | fit s | × frozen | macro-F1 | Jaccard |\n|---|---|---|---|---|")
    for name, results in runs.items():
        s = summarise(results)
        print(f"| {name} | {s['seconds'][0]:.0f} | {s['ratio'][0]:.1f} | "
              f"{s['macro_f1'][0]:.3f} ± {s['macro_f1'][1]:.3f} | "
              f"{s['jaccard'][0]:.3f} ± {s['jaccard'][1]:.3f} |")


if __name__ == "__main__":
    main()
