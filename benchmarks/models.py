"""Models the prediction benchmarks share (``bench_corpus.py``, ``bench_serve.py``)."""

from __future__ import annotations

import pandas as pd
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from skstack import TunedThresholds, load_sample_emotions, quickstart_pipeline


def fitted_quickstart(dtype: str):
    """The quickstart pipeline fitted on the bundled sample, with no cache (every text is
    encoded where it is predicted) and encoders in ``dtype``; and its label names."""
    X, Y, labels = load_sample_emotions("train")
    pipe = quickstart_pipeline(objective="macro_f1").set_params(
        embed__minilm__cache=None, embed__minilm__dtype=dtype)
    return pipe.fit(X, pd.DataFrame(Y, columns=labels)), list(labels)


def fitted_cheap():
    """A model that costs almost nothing to call (hashed words and one small multi-label
    MLP, a few matrix products), fitted on the bundled sample with the quickstart's rule;
    served, it measures what the server itself costs a request. Its label names too."""
    X, Y, labels = load_sample_emotions("train")
    pipe = Pipeline([("words", HashingVectorizer(n_features=2 ** 12)),
                     ("clf", TunedThresholds(MLPClassifier((16,), solver="lbfgs", max_iter=200,
                                                           random_state=0),
                                             objective="macro_f1", cv=2))])
    return pipe.fit(X, pd.DataFrame(Y, columns=labels)), list(labels)
