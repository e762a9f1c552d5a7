"""Which head should the ready-made pipelines use? Candidates as a user gets them (run by hand).

    python benchmarks/bench_defaults.py                              # 3k, 10k, 43k texts
    python benchmarks/bench_defaults.py --sizes 3000 --only "0.1"    # some sizes and heads
    python benchmarks/bench_defaults.py --sizes 3000 10000 --cache /tmp/empty   # cold
    python benchmarks/bench_defaults.py --sizes 10000 --finetune-epochs 2 --only "0.1" "residual"
    python benchmarks/bench_defaults.py --sizes 10000 --dtype bfloat16 --only "word mode, res"
    python benchmarks/bench_defaults.py --sizes 3000 --finetune-epochs 2 --leak-free 2 \
        --only "word mode, residual + BCE"

GoEmotions. For each training size (the first N rows of a fixed shuffle of train), stacks are
fitted as ``make_stacked_pipeline`` fits them (MiniLM and sre-embedding-model frozen, character
TF-IDF + SVD, the out-of-fold meta-learner; ``cv=3``; block mode, and word mode with
``word_pooling="mean"``). On each stack, for seeds 0, 1, 2, a head is trained inside
``TunedThresholds`` with the pipelines' rule (``RECOMMENDED_RULE_PARAMS``: a 10 % hold-out of
the training rows, shrinkage 10, at least one label per text): nothing but training rows
reaches the net, its early stopping or its rule, and there is no dev set. The test split
(5,427 texts) is used for the scores only. The rule is tuned on the same hold-out once per
objective: macro-F1 ("F1 rule") and Jaccard ("Jaccard rule"). The meta-learner alone is
scored with the same rule tuned on its out-of-fold probabilities of all training rows; with
frozen members it is a logistic regression on the same encoders' frozen vectors.
``--dtype`` sets the encoders' precision (default ``auto``, as in the pipelines: bfloat16 on
this machine; the tables recorded before that default say ``--dtype float32``);
``--backend onnx --quantization int8`` encodes with int8 ONNX Runtime.
``--finetune-epochs N`` fine-tunes MiniLM on each training subset (bf16 autocast, max_length
64, batch 32), once per mode (``--leak-free K``: cross-fitted on K folds for the meta-learner's
training rows). Writes runs/bench_defaults[-ftN][-DTYPE][-BACKEND][-int8][-lfK][-cold].json
and prints a Markdown table per size.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from bench_head import ROOT, RULES, table
from bench_quality import CACHE, SEEDS, encoders, load_splits, mpnet, scores
from data_sets import first_of_shuffle
from machine import describe
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold, ShuffleSplit
from sklearn.pipeline import make_pipeline

from skstack import (
    BiLSTMClassifier,
    EncoderEmbedder,
    StackingEmbedder,
    TunedThresholds,
    char_tfidf_member,
    decide,
    tune_thresholds,
)
from skstack.pipelines import (
    E5_PARAMS,
    RECOMMENDED_CLASSIFIER_PARAMS,
    RECOMMENDED_RULE_PARAMS,
    default_multilingual,
)
from skstack.thresholds import score_predictions

# 0.1's defaults (block mode); the candidate is what the pipelines now recommend
OLD = {"max_epochs": 20, "batch_size": 128, "criterion__corr_weight": 0.1,
       "criterion__contrastive_weight": 0.1}
EARLY = {k: RECOMMENDED_CLASSIFIER_PARAMS[k]
         for k in ("max_epochs", "batch_size", "train_split", "patience")}
NEW_HEAD = {k: v for k, v in RECOMMENDED_CLASSIFIER_PARAMS.items() if k not in EARLY}
# name: (word mode?, net parameters)
HEADS = {
    "0.1 head (block mode, hybrid loss, 20 epochs)": (False, OLD),
    "block mode, residual + BCE + pairwise, early stopping": (False, {**EARLY, **NEW_HEAD}),
    "word mode, residual + BCE + pairwise, early stopping": (True, {**EARLY, **NEW_HEAD}),
    "word mode, residual + plain BCE, early stopping": (
        True, {**EARLY, **NEW_HEAD, "criterion__corr_weight": 0.0}),
    "word mode, 0.1 loss and no residual, early stopping": (
        True, {**EARLY, **{k: v for k, v in OLD.items() if k.startswith("criterion")}}),
}


# the layers the first encoder reads under each of make_stack's layer extras
LAYER_EXTRAS = {"layer-4": ([-1, -4], "concat"), "layer-8": ([-1, -4, -8], "concat"),
                "last-layer": (-1, "mean")}


def make_stack(words: bool, finetune_epochs: int = 0, dtype: str = "auto",
               cache: str = str(CACHE), leak_free: int = 0, backend: str = "torch",
               quantization: str | None = None, multilingual: bool = False,
               extra: tuple[str, ...] = ()) -> StackingEmbedder:
    """MiniLM and sre (or, ``multilingual``, multilingual-e5-small alone, as the pipelines
    read it: ``E5_PARAMS``) and characters; ``extra`` (issue 31, item 3): ``"words"`` (a member
    of word 1-2-gram TF-IDF + SVD), ``"layer-4"`` (the first encoder also gives its fourth
    layer from the top, from the same forward pass: e5's default since 0.3), ``"layer-8"``
    (its last, fourth and eighth layers from the top),
    ``"last-layer"`` (the first encoder gives only its last layer: e5 until 0.3), ``"with-e5"``
    (multilingual-e5-small as ``E5_PARAMS`` reads it, beside MiniLM and sre), ``"mpnet"``
    (all-mpnet-base-v2 in place of MiniLM and sre; beside e5 when ``multilingual``)."""
    common = {"max_length": 128, "batch_size": 64, "cache": cache, "device": "cpu",
              "word_pooling": "mean" if words else None, "dtype": dtype, "backend": backend,
              "quantization": quantization, **(E5_PARAMS if multilingual else {})}
    # as in bench_head.py: MiniLM fine-tuned under bf16 autocast, max_length 64, batch 32
    tuned = {"finetune_epochs": finetune_epochs, "finetune_mixed_precision": True,
             "max_length": 64, "finetune_batch_size": 32, "random_state": 0}
    paths = {"e5": default_multilingual()} if multilingual else encoders()
    if "mpnet" in extra:
        paths = {**(paths if multilingual else {}), "mpnet": mpnet()}
    members = [(name, EncoderEmbedder(path, **{**common, **(tuned if finetune_epochs and
                                                              name == "minilm" else {})}))
               for name, path in paths.items()]
    if "mpnet" in extra:  # mpnet reads its texts as sentence-transformers made it: no prefix
        members[-1][1].set_params(prefix="", layers=-1, layer_combine="mean")
    if "with-e5" in extra and not multilingual:
        members.append(("e5", EncoderEmbedder(default_multilingual(), **{**common,
                                                                         **E5_PARAMS})))
    for name, (layers, combine) in LAYER_EXTRAS.items():
        if name in extra:
            members[0][1].set_params(layers=layers, layer_combine=combine)
    members.append(("chars", char_tfidf_member(128)))
    if "words" in extra:
        members.append(("words", make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                            max_features=100_000),
            TruncatedSVD(128, random_state=0))))
    return StackingEmbedder(members, cv=3, leak_free=leak_free or False, random_state=0)


def head_scores(params: dict, seed: int, S_train, Y_train, S_test, Y_test, labels) -> dict:
    """Test scores of one head under both rules, each tuned on the same 10 % hold-out (the
    pipelines' rule until 0.3; :func:`fold_head_scores` scores today's)."""
    rule = {**RECOMMENDED_RULE_PARAMS, "cv": 0.1, "random_state": seed}
    net = BiLSTMClassifier(random_state=seed, **params)
    f1 = TunedThresholds(net, objective="macro_f1", **rule).fit(S_train, Y_train)
    # the rows TunedThresholds held out (same splitter, same seed)
    _, held = next(ShuffleSplit(1, test_size=rule["cv"], random_state=seed).split(Y_train))
    jac = TunedThresholds(f1.estimator_, objective="jaccard", shrinkage=rule["shrinkage"],
                          min_labels=1, cv="prefit").fit(S_train[held], Y_train[held])
    return {"macro_f1": scores(Y_test, f1.predict(S_test), labels),
            "jaccard": scores(Y_test, jac.predict(S_test), labels),
            "best_epoch": f1.estimator_.best_epoch_}  # 0: the net kept the meta-learner


BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def fold_head_scores(params: dict, seed: int, folds: int, S_train, Y_train, S_test, Y_test,
                     labels) -> dict:
    """Test scores of ``folds`` heads averaged (``TunedThresholds(cv=folds, refit=False)``),
    each rule tuned on the out-of-fold probabilities of every training row; under
    ``"blend"``, the same heads blended with the meta-learner, ``w * head + (1 - w) * meta``,
    ``w`` chosen per rule on those out-of-fold rows."""
    rule = {**RECOMMENDED_RULE_PARAMS, "cv": folds, "random_state": seed}
    net = BiLSTMClassifier(random_state=seed, **params)
    f1 = TunedThresholds(net, objective="macro_f1", **rule).fit(S_train, Y_train)
    # the same folds' held-out probabilities, from the kept fold models
    splits = KFold(folds, shuffle=True, random_state=seed).split(np.zeros((len(Y_train), 1)))
    oof = np.zeros(Y_train.shape)
    for (_, model), (_, held) in zip(f1.estimator_.estimators_, splits, strict=True):
        oof[held] = model.predict_proba(S_train[held])
    P_test = f1.predict_proba(S_test)
    L = Y_train.shape[1]
    meta_train, meta_test = (getattr(S, "sentence", S)[:, -L:] for S in (S_train, S_test))
    shrink = rule["shrinkage"]
    jac = tune_thresholds(Y_train, oof, objective="jaccard", min_labels=1, shrinkage=shrink)
    out = {"macro_f1": scores(Y_test, f1.predict(S_test), labels),
           "jaccard": scores(Y_test, decide(P_test, jac, min_labels=1), labels),
           "best_epoch": [m.best_epoch_ for _, m in f1.estimator_.estimators_], "blend": {}}
    for objective in RULES:
        tried = {}
        for w in BLEND_WEIGHTS:
            P = w * oof + (1 - w) * meta_train
            t = tune_thresholds(Y_train, P, objective=objective, min_labels=1, shrinkage=shrink)
            tried[w] = (float(score_predictions(Y_train, decide(P, t, min_labels=1),
                                                objective)), t)
        w = max(tried, key=lambda k: tried[k][0])
        pred = decide(w * P_test + (1 - w) * meta_test, tried[w][1], min_labels=1)
        out["blend"][objective] = scores(Y_test, pred, labels)
        out["blend"][f"{objective} weight"] = w
    return out


def meta_scores(S_train, Y_train, S_test, Y_test, labels) -> dict:
    """The meta-learner alone under each rule, tuned on its out-of-fold training rows."""
    L = Y_train.shape[1]
    meta = [getattr(S, "sentence", S)[:, -L:] for S in (S_train, S_test)]
    out = {}
    for name in RULES:
        t = tune_thresholds(Y_train, meta[0], objective=name,
                            shrinkage=RECOMMENDED_RULE_PARAMS["shrinkage"], min_labels=1)
        out[name] = scores(Y_test, decide(meta[1], t, min_labels=1), labels)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[3000, 10000, 43410])
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="fine-tune MiniLM for this many epochs (bf16 autocast)")
    parser.add_argument("--dtype", default="auto",
                        choices=("float32", "bfloat16", "float16", "auto"),
                        help="the encoders' precision (auto: what the pipelines use)")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx", "openvino"))
    parser.add_argument("--quantization", default=None, choices=("int8",))
    parser.add_argument("--leak-free", type=int, default=0, metavar="K",
                        help="cross-fit fine-tuned members on K folds (0: in-sample)")
    parser.add_argument("--cache", default=str(CACHE),
                        help="embedding cache folder (an empty one for a cold run)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the heads whose names contain one of these")
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    torch.set_num_threads(2)
    texts, Y, labels = load_splits(quick=False)
    suffix = f"-ft{args.finetune_epochs}" if args.finetune_epochs else ""
    suffix += f"-{args.dtype}" if args.dtype != "float32" else ""
    suffix += f"-{args.backend}" if args.backend != "torch" else ""
    suffix += f"-{args.quantization}" if args.quantization else ""
    suffix += f"-lf{args.leak_free}" if args.leak_free else ""
    suffix += "-cold" if args.cache != str(CACHE) else ""
    out_path = ROOT / "runs" / f"bench_defaults{suffix}.json"
    log = json.loads(out_path.read_text()) if out_path.exists() else {}
    heads = {n: h for n, h in HEADS.items()
             if args.only is None or any(part in n for part in args.only)}
    for size in args.sizes:
        rows = first_of_shuffle(len(texts["train"]), size)
        X_train, Y_train = [texts["train"][i] for i in rows], Y["train"][rows]
        entry = log.setdefault(str(size), {"configs": {}, "stack_seconds": {}})
        for words in sorted({w for w, _ in heads.values()}):
            mode = "word" if words else "block"
            start = time.perf_counter()
            stack = make_stack(words, args.finetune_epochs, args.dtype, args.cache,
                               args.leak_free, args.backend, args.quantization)
            S_train = stack.fit_transform(X_train, Y_train)  # out-of-fold meta block
            S_test = stack.transform(texts["test"])
            entry["stack_seconds"][mode] = time.perf_counter() - start
            name = f"meta-learner alone ({mode} mode)"
            entry["configs"][name] = {
                "runs": [meta_scores(S_train, Y_train, S_test, Y["test"], labels)],
                "seconds": 0.0}
            for name, (head_words, params) in heads.items():
                if head_words != words:
                    continue
                start, runs = time.perf_counter(), []
                for seed in SEEDS:
                    runs.append(head_scores(params, seed, S_train, Y_train, S_test, Y["test"],
                                            labels))
                entry["configs"][name] = {"runs": runs, "params": params,
                                          "seconds": (time.perf_counter() - start) / len(SEEDS)}
                print(size, name, {r: round(float(np.mean([run[r][r] for run in runs])), 4)
                                   for r in RULES}, flush=True)
                out_path.write_text(json.dumps(log, indent=1))
        print(f"\n{size} training texts (stack: {entry['stack_seconds']})\n{table(entry)}\n",
              flush=True)


if __name__ == "__main__":
    main()
