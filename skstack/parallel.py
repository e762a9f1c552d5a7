"""Searches on several processes or machines: encode every text once, then fan out.

A grid search's candidates and folds all encode the same texts with the same frozen
encoders. Run in parallel (``GridSearchCV(n_jobs=-1)`` under joblib's ``"dask"`` backend,
or its default process pool), each worker would encode them again. :func:`warm_cache`
encodes them here, once, into the cache the estimator's encoders name; every worker that
names the same folder then reads vectors instead of computing them. The scheduling is
joblib's and Dask's; nothing here schedules.

Import rule: scikit-learn, ``skstack._validation``, ``skstack.cache``, ``skstack.encoder``
and ``skstack.parts``.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator, clone

from skstack._validation import check_texts
from skstack.cache import MEMORY, Lookup, open_stores, shared_by_processes
from skstack.encoder import EncoderEmbedder
from skstack.parts import walk


def frozen_encoders(estimator: BaseEstimator) -> list[EncoderEmbedder]:
    """The encoders inside ``estimator`` (a pipeline, a search, a stack, or one encoder)
    whose vectors do not depend on the rows they are fitted on: those not fine-tuned."""
    return [part for part in walk(estimator)
            if isinstance(part, EncoderEmbedder) and part.finetune_epochs == 0]


def warm_cache(estimator: BaseEstimator, X, *, require_folder: bool = True) -> int:
    """Encode ``X`` with every frozen encoder of ``estimator`` into its cache, once.

    Call it before a parallel search: the workers' clones find every text's vectors in the
    cache folder and encode nothing. Fine-tuned encoders are left out (their vectors
    depend on each fold's rows; their fine-tuned weights are kept in the cache folder too,
    see ``EncoderEmbedder(random_state=...)``).

    Parameters
    ----------
    estimator : estimator
        A pipeline, a ``GridSearchCV``, a ``StackingEmbedder`` or an ``EncoderEmbedder``.
    X : sequence of str
        Every text the search will see (all of its folds).
    require_folder : bool, default=True
        Refuse encoders whose ``cache`` is not a folder or a URL: other processes cannot
        read this process's memory, so warming it would not help them.

    Returns
    -------
    n_encoded : int
        Texts written to the shared cache now, summed over encoders (texts it already held
        are not counted; a text this process held only in memory is written too).

    Examples
    --------
    >>> from dask.distributed import Client                             # doctest: +SKIP
    >>> from joblib import parallel_backend                             # doctest: +SKIP
    >>> pipe = make_stacked_pipeline(encoders, cache="/shared/cache")   # doctest: +SKIP
    >>> warm_cache(pipe, X)                                             # doctest: +SKIP
    >>> with Client(cluster), parallel_backend("dask"):                 # doctest: +SKIP
    ...     GridSearchCV(pipe, grid, n_jobs=-1).fit(X, Y)
    """
    encoders = frozen_encoders(estimator)
    if require_folder:
        shared = [e for e in encoders if not shared_by_processes(e.cache)]
        if shared:
            raise ValueError(
                f"warm_cache: encoder {shared[0].model!r} has cache={shared[0].cache!r}, which "
                "other processes cannot read; give it cache='<folder>' (a folder every worker "
                "reaches) or an fsspec URL ('s3://bucket/cache'), or pass "
                "require_folder=False to warm this process only.")
    texts = check_texts(X)
    n_encoded, done = 0, set()
    for encoder in encoders:
        fitted = clone(encoder).fit(X)
        if fitted.fingerprint_ in done:
            continue
        done.add(fitted.fingerprint_)
        stores = open_stores(fitted.cache)
        # what the shared stores lack; a text this process holds in memory must reach them
        # too, as the very arrays this process uses (recomputing could differ in the last bits)
        lacking = Lookup(texts, fitted.fingerprint_, [s for s in stores if s is not MEMORY])
        anywhere = Lookup(lacking.missing, fitted.fingerprint_, stores)
        arrays, _ = fitted._embed_on_devices(anywhere.missing)
        lacking.complete(anywhere.complete(arrays))
        n_encoded += len(lacking.missing)
    return n_encoded
