"""The benchmarks' data sets beyond the bundled sample: GoEmotions and kaomoji-dataset.

GoEmotions (English Reddit comments, 28 labels, CC BY 4.0) lies in ``../shared/data``.
kaomoji-dataset is a second multi-label emotion data set, in another script.

``pip install kaomoji-dataset`` (the ``[bench]`` extra) installs 82,109 kaomoji, Japanese text
emoticons, many with Japanese words beside the face (``ナヌ！！( ゜!゜)y``), 65,399 of them
tagged with emotions from a controlled vocabulary. Licence: CC BY 4.0 (Funovate Technology,
https://github.com/Funovate/fontvibe-kaomoji; the package's NOTICE credits its sources). The
data stay in that package: this module reads them where it is installed.

The tags are synonym groups (``happy, smile, glad, cheerful, joy``), a second group after the
first for one text in twenty (``sleepy, sleep`` after ``happy, ...``). Each group is one label,
named by its first word: 30 labels, one or two per text. The 6 tag lists that spell no run of
groups (a group's first word left out after another group) are dropped.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json

import numpy as np
from bench_quality import load_splits

# The synonym groups of the dataset's emotion vocabulary, each named by its first word.
GROUPS = {
    "happy": ("smile", "glad", "cheerful", "joy"),
    "love": ("heart", "in love", "affection", "romantic"),
    "sad": ("unhappy", "down", "gloomy", "depressed"),
    "angry": ("mad", "rage", "furious", "annoyed"),
    "shy": ("blush", "bashful", "timid"),
    "cute": ("kawaii", "adorable", "sweet", "lovely"),
    "indifferent": ("blank", "deadpan", "whatever", "expressionless"),
    "cool": ("confident", "swag", "badass", "slick"),
    "excited": ("hype", "thrilled", "pumped", "yay"),
    "dissatisfied": ("unimpressed", "meh", "grumpy", "sulk"),
    "rude": ("middle finger", "mocking", "insult", "flipping off"),
    "sleepy": ("sleep", "drowsy", "nap", "zzz"),
    "confused": ("puzzled", "lost", "huh", "what"),
    "embarrassed": ("awkward", "cringe", "ashamed"),
    "tired": ("exhausted", "worn out", "fatigue", "done"),
    "smug": ("smirk", "proud", "gloating", "lenny"),
    "crying": ("cry", "tears", "sob", "weeping"),
    "surprised": ("shocked", "shock", "wow", "startled"),
    "hurt": ("pain", "ouch", "injured", "aching"),
    "scared": ("afraid", "fear", "terrified", "nervous"),
    "doubt": ("suspicious", "skeptical", "hmm", "side eye"),
    "proud": ("triumph", "victory", "accomplished"),
    "drooling": ("drool", "hungry", "want", "craving"),
    "sick": ("ill", "unwell", "nauseous", "under the weather"),
    "thinking": ("think", "pondering", "hmm", "wondering"),
    "panic": ("panicking", "flustered", "frantic", "freaking out"),
    "disappointed": ("let down", "dejected", "bummer", "aww"),
    "lonely": ("alone", "missing you", "solitude"),
    "laugh": ("laughing", "lol", "haha", "giggle"),
    "disgusted": ("gross", "ew", "yuck", "repulsed"),
}


def label_groups(tags: list[str]) -> list[str] | None:
    """The groups a tag list spells, in order (None where it is not a run of groups).

    A group's words follow its first word in order, possibly cut short (``sleepy, sleep``);
    ``proud`` inside ``smug, smirk, proud`` is a synonym, not the ``proud`` group.
    """
    out, i = [], 0
    while i < len(tags):
        head = tags[i]
        if head not in GROUPS:
            return None
        out.append(head)
        i += 1
        for word in GROUPS[head]:
            if i < len(tags) and tags[i] == word:
                i += 1
            else:
                break
    return out


def load_kaomoji(n_train: int, n_test: int, seed: int = 0
                 ) -> tuple[dict[str, list[str]], dict[str, np.ndarray], list[str]]:
    """Train and test texts and label matrices drawn from one shuffle of the tagged kaomoji,
    and the label names (the groups with at least 20 texts among those drawn)."""
    path = importlib.resources.files("kaomoji_dataset") / "data" / "kaomoji.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [(r["text"], label_groups(r["emotion"])) for r in map(json.loads, fh)
                if r["emotion"]]
    rows = [(text, groups) for text, groups in rows if groups and text.strip()]
    order = np.random.default_rng(seed).permutation(len(rows))[: n_train + n_test]
    drawn = [rows[i] for i in order]
    counts = {g: sum(g in groups for _, groups in drawn) for g in GROUPS}
    labels = [g for g in GROUPS if counts[g] >= 20]
    Y = np.array([[g in groups for g in labels] for _, groups in drawn], dtype=np.int64)
    keep = Y.any(axis=1)  # texts whose only labels were too rare to keep
    texts = [text for (text, _), k in zip(drawn, keep, strict=True) if k]
    Y = Y[keep]
    cut = round(len(texts) * n_train / (n_train + n_test))
    return ({"train": texts[:cut], "test": texts[cut:]},
            {"train": Y[:cut], "test": Y[cut:]}, labels)


def first_of_shuffle(n_rows: int, n: int) -> np.ndarray:
    """The first ``n`` of ``n_rows`` rows in one fixed shuffle (seed 0), in row order: the
    training subsets of bench_defaults.py and bench_datasets.py, the same rows for one n."""
    return np.sort(np.random.default_rng(0).permutation(n_rows)[:n])


def load(name: str, n_train: int, n_test: int, with_dev: bool = False
         ) -> tuple[dict[str, list[str]], dict[str, np.ndarray], list[str]]:
    """``"goemotions"``: the first ``n_train`` rows of a fixed shuffle of its train split
    (followed by the whole dev split when ``with_dev``: 5,426 more training rows, the test
    split untouched) and the first ``n_test`` of its test split; ``"kaomoji"``:
    :func:`load_kaomoji`, which has no dev split."""
    if name == "kaomoji":
        if with_dev:
            raise ValueError("kaomoji-dataset has no dev split; with_dev is GoEmotions' only")
        return load_kaomoji(n_train, n_test)
    texts, Y, labels = load_splits(quick=False)
    rows = first_of_shuffle(len(texts["train"]), n_train)
    train, Y_train = [texts["train"][i] for i in rows], Y["train"][rows]
    if with_dev:
        train, Y_train = train + texts["dev"], np.vstack([Y_train, Y["dev"]])
    return ({"train": train, "test": texts["test"][:n_test]},
            {"train": Y_train, "test": Y["test"][:n_test]}, labels)
