"""Rebuild the bundled GoEmotions sample in skstack/data/ (run once by a maintainer).

python tools/make_sample.py ../shared/data/goemotions

Picks 3,000 train and 1,000 test rows such that every label occurs at least 15 (train) and
5 (test) times: rows of the rarest labels first, then a random fill. Seeded, so reproducible.
"""

import shutil
import sys
from pathlib import Path

import numpy as np

from skstack.datasets import load_goemotions

OUT = Path(__file__).resolve().parents[1] / "skstack" / "data"


def pick(Y: np.ndarray, n: int, per_label: int, rng: np.random.Generator) -> np.ndarray:
    chosen: set[int] = set()
    for label in np.argsort(Y.sum(axis=0)):  # rarest label first
        have = sum(Y[i, label] for i in chosen)
        pool = [i for i in rng.permutation(np.flatnonzero(Y[:, label])) if i not in chosen]
        chosen.update(pool[: max(0, per_label - have)])
    rest = [i for i in rng.permutation(len(Y)) if i not in chosen]
    chosen.update(rest[: n - len(chosen)])
    return np.sort(np.fromiter(chosen, dtype=int))


def main(folder: str) -> None:
    rng = np.random.default_rng(2018)
    src = Path(folder)
    for split, n, per_label in (("train", 3000, 15), ("test", 1000, 5)):
        _, Y, _ = load_goemotions(src, split)
        rows = pick(Y, n, per_label, rng)
        lines = (src / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (OUT / f"goemotions_sample_{split}.tsv").write_text(
            "".join(lines[i] for i in rows), encoding="utf-8")
    shutil.copyfile(src / "labels.txt", OUT / "goemotions_labels.txt")


if __name__ == "__main__":
    main(sys.argv[1])
