"""Models the prediction benchmarks share (``bench_corpus.py``, ``bench_serve.py``)."""

from __future__ import annotations

import pandas as pd

from skstack import load_sample_emotions, quickstart_pipeline


def fitted_quickstart(dtype: str):
    """The quickstart pipeline fitted on the bundled sample, with no cache (every text is
    encoded where it is predicted) and encoders in ``dtype``; and its label names."""
    X, Y, labels = load_sample_emotions("train")
    pipe = quickstart_pipeline(objective="macro_f1").set_params(
        embed__minilm__cache=None, embed__minilm__dtype=dtype)
    return pipe.fit(X, pd.DataFrame(Y, columns=labels)), list(labels)
