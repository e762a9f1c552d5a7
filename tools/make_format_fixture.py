"""Write tests/data/format-0.2: fitted pipelines (block and word mode) saved by the 0.2 writer,
as .skstack and joblib files, with their texts and probabilities. The tests load them with
the current code, so a change to either format that old files cannot follow fails there.

Run from the repository root with the version whose files are to be kept:
``python tools/make_format_fixture.py``.
"""

import json
import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np
from sklearn.pipeline import Pipeline

sys.path.insert(0, "tests")
from conftest import FIXTURE_TEXTS, _build_tiny_bert
from skstack import (
    BiLSTMClassifier,
    EncoderEmbedder,
    StackingEmbedder,
    TunedThresholds,
    char_tfidf_member,
    save,
)

OUT = Path("tests/data/format-0.2")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    bert = _build_tiny_bert(Path(tempfile.mkdtemp()), FIXTURE_TEXTS)
    texts = [f"{FIXTURE_TEXTS[i % len(FIXTURE_TEXTS)]} {i}" for i in range(40)]
    rng = np.random.default_rng(0)
    Y = (rng.random((40, 3)) < 0.35).astype(int)
    Y[Y.sum(axis=1) == 0, 0] = 1
    for mode, word_pooling in (("blocks", None), ("words", "first")):
        encoder = EncoderEmbedder(bert, word_pooling=word_pooling, cache=None, device="cpu")
        stack = StackingEmbedder([("bert", encoder), ("chars", char_tfidf_member(4))], cv=2,
                                 random_state=0)
        net = BiLSTMClassifier(max_epochs=2, batch_size=16, random_state=0,
                               module__residual="auto", module__projection_dim=8,
                               module__hidden_size=4)
        rule = TunedThresholds(net, objective="jaccard", min_labels=1, cv=0.25, refit=False,
                               random_state=0)
        pipe = Pipeline([("embed", stack), ("clf", rule)]).fit(texts, Y)
        save(pipe, OUT / f"{mode}.skstack", card=False)
        joblib.dump(pipe, OUT / f"{mode}.joblib")
        np.save(OUT / f"{mode}_proba.npy", pipe.predict_proba(texts))
    (OUT / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
