"""StackingEmbedder: several text embedders side by side, plus a meta-learner's block.

Like ``FeatureUnion`` it concatenates its members' outputs; like ``StackingClassifier`` it
trains a meta-learner on them and adds its label probabilities, out-of-fold on the training
rows so that the classifier downstream never learns from leaked meta-features. It knows
nothing of encoders: any transformer that maps texts to a 2-D array can be a member.

Members that return :class:`~skstack.sequences.WordSequences` (encoders in word mode) are
aligned word by word; the output is then a ``WordSequences`` whose sentence-level blocks are
the other members and the meta-learner.

Import rule: scikit-learn, ``skstack._config``, ``skstack._validation``, ``skstack.blocks``,
``skstack.persistence`` (the save protocol), ``skstack.sequences`` and ``skstack.targets``
only.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
from scipy import sparse
from scipy.special import expit
from sklearn.base import TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from skstack._config import progress
from skstack._validation import (
    BLOCKS,
    BOOLEAN,
    ESTIMATOR,
    NAMES,
    NONE,
    SEED,
    SPLITTER,
    Check,
    Interval,
    Options,
    check_proba,
    check_texts,
    make_splitter,
    validates_params,
)
from skstack.blocks import META_BLOCK, BlockArray
from skstack.persistence import VersionedState
from skstack.sequences import WordSequences
from skstack.targets import check_target

# The default meta-learner's C is chosen on the training rows: the best C differs 10-30x
# between data sets (benchmarks/bench_meta.py). The grid is walked from META_C_START towards
# a higher out-of-fold macro average precision, which needs no decision rule and picked the
# best or next-best C of the grid on both data sets measured (docs/benchmarks.md).
META_C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
META_C_START = 0.03


def default_meta_learner(random_state: int | None = None, C: float = META_C_START):
    """Standardised features -> one L2-regularised logistic regression per label.

    Linear and per-label: fast on thousands of stacked dimensions, hard to overfit with a
    few thousand rows, and its probabilities are reasonably calibrated, which matters
    because they become input features of the next stage. :class:`StackingEmbedder` with
    ``meta_learner=None`` chooses ``C`` out of fold; pass this function's result to fix it.
    """
    return make_pipeline(
        StandardScaler(),
        OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000,
                                               random_state=random_state)),
    )


def _macro_average_precision(Y: np.ndarray, proba: np.ndarray) -> float:
    """Mean average precision over the labels that have positives and negatives."""
    both = (Y.min(axis=0) == 0) & (Y.max(axis=0) == 1)
    if not both.any():
        return 0.0
    return float(average_precision_score(Y[:, both], proba[:, both], average="macro"))


def tuned_meta_learner(features: np.ndarray, y, Y: np.ndarray, folds: list,
                       random_state: int | None = None) -> tuple[object, np.ndarray, dict]:
    """The default meta-learner with ``C`` chosen on these rows, unfitted; the out-of-fold
    probabilities of that choice on ``folds``; and the score of each ``C`` tried.

    From ``META_C_START``, ``C`` moves along ``META_C_GRID`` while the out-of-fold macro
    average precision (against the label matrix ``Y``) rises: 3-4 cross-validated fits of
    the grid's 8, as the score is unimodal in ``C`` in practice.
    """
    scores, oofs = {}, {}

    def score(i: int) -> float:
        C = META_C_GRID[i]
        if C not in scores:
            model = default_meta_learner(random_state, C=C)
            oofs[C] = _meta_proba(cross_val_predict(model, features, y, cv=folds,
                                                    method="predict_proba"), Y.shape[1])
            scores[C] = _macro_average_precision(Y, oofs[C])
        return scores[C]

    best = META_C_GRID.index(META_C_START)
    for step in (1, -1):
        while 0 <= best + step < len(META_C_GRID) and score(best + step) > score(best):
            best += step
    C = META_C_GRID[best]
    return default_meta_learner(random_state, C=C), oofs[C], scores


def _dense(Z) -> np.ndarray | WordSequences:
    if isinstance(Z, WordSequences):
        return Z
    Z = Z.toarray() if sparse.issparse(Z) else np.asarray(Z)
    if Z.ndim != 2:
        raise ValueError(f"A stack member returned an array of shape {Z.shape}; expected 2-D.")
    return Z.astype(np.float32, copy=False)


def _meta_proba(proba, n_labels: int) -> np.ndarray:
    return check_proba(proba, n_labels, name="meta-learner probabilities").astype(np.float32)


def _logistic_rows(ovr) -> tuple[np.ndarray, np.ndarray] | None:
    """The weights (labels, features) and intercepts of a fitted multi-label
    ``OneVsRestClassifier`` of binary logistic regressions, the default meta-learner's last
    step; ``None`` for any other estimator."""
    if not (isinstance(ovr, OneVsRestClassifier) and hasattr(ovr, "estimators_")
            and ovr.multilabel_ and len(ovr.estimators_) > 1):
        return None
    if not all(type(e) is LogisticRegression and e.coef_.shape[0] == 1
               for e in ovr.estimators_):
        return None  # a label seen with one value only has a constant predictor
    return (np.vstack([e.coef_ for e in ovr.estimators_]).astype(np.float64),
            np.concatenate([e.intercept_ for e in ovr.estimators_]).astype(np.float64))


def _meta_predict_proba(meta, features: np.ndarray) -> np.ndarray:
    """``meta.predict_proba(features)``; for a meta-learner that ends in one logistic
    regression per label (the default), that step as one matrix product.

    scikit-learn predicts one label at a time, checking the input each time: 28 labels cost
    3.0 ms a call of any size, of a one-text call's 19 ms and a 16-text call's 51 ms
    (docs/benchmarks.md, "A call's fixed cost"). The product computes what each regression's
    ``predict_proba`` does, the scores in float64 and summed in the same order for a row
    whatever rows share the call (``np.einsum`` does not hand them to a BLAS, whose float32
    kernels sum by the call's height: scikit-learn's probabilities for a text moved by up to
    3e-7 between a call of 1 and one of 400), then the logistic function.
    """
    steps = meta.steps if isinstance(meta, Pipeline) else [(None, meta)]
    rows = _logistic_rows(steps[-1][1])
    if rows is None:
        return meta.predict_proba(features)
    X = meta[:-1].transform(features) if len(steps) > 1 else features
    weights, intercepts = rows
    if X.shape[1] != weights.shape[1]:
        raise ValueError(f"The meta-learner was fitted on {weights.shape[1]} features; got "
                         f"{X.shape[1]}.")
    return expit(np.einsum("nd,ld->nl", X.astype(np.float64), weights) + intercepts)


def _texts_once(X):
    """Texts checked here, once, for every member (a DataFrame passes as it is, for members
    that read columns)."""
    return X if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2 else check_texts(X)


def _take(X, rows):
    return X.iloc[rows] if hasattr(X, "iloc") else [X[i] for i in rows]


def _in_order(parts: list, rows: np.ndarray):
    """The rows of ``parts`` (fold outputs, one per fold's ``rows``) in the original order."""
    order = np.argsort(rows)
    if isinstance(parts[0], WordSequences):
        return WordSequences.concatenate(parts)[order]
    return np.vstack(parts)[order]


def _lay_out_projections(member) -> None:
    """Store the ``components_`` of the scikit-learn decompositions in ``member`` (a
    ``TruncatedSVD`` after a TF-IDF, say) in Fortran order, in place.
    ``X @ components_.T`` with a sparse ``X`` makes scipy copy a C-ordered
    ``components_.T`` whole on every call: 5.1 ms for 16 texts against the character
    member's 128 x 23,100 components, 0.25 ms laid out so, the same values
    (docs/benchmarks.md, "One thread for torch"). Idempotent; skops and joblib keep the
    order. Only a Pipeline's own steps are looked at: the package's walker
    (``skstack.parts.walk``) reads every part's parameters, which a member unpickled from
    0.2 lacks."""
    for _, est in (member.steps if hasattr(member, "steps") else [(None, member)]):
        components = getattr(est, "components_", None)
        if (type(est).__module__.startswith("sklearn.decomposition")
                and isinstance(components, np.ndarray) and components.ndim == 2
                and not components.flags.f_contiguous):
            est.components_ = np.asfortranarray(components)


def _sentence(Z) -> np.ndarray:
    """What the meta-learner reads of a member: its vectors, or its mean word state."""
    return Z.mean_words() if isinstance(Z, WordSequences) else Z


class StackingEmbedder(VersionedState, TransformerMixin, _BaseComposition):
    """Concatenate member embeddings and a meta-learner's label probabilities.

    Output: a float32 :class:`~skstack.blocks.BlockArray` ``[member 1 | ... | meta]`` whose
    layout (``blocks_``) reaches :class:`~skstack.nets.BiLSTMClassifier` in a ``Pipeline``.
    When members work in word mode (``EncoderEmbedder(word_pooling=...)``), the output is a
    :class:`~skstack.sequences.WordSequences`: their states concatenated word by word
    (``word_blocks_``), with the other members and the meta block as sentence-level blocks
    (``blocks_``). The meta-learner reads a word-level member as its mean word state.

    Parameters
    ----------
    members : list of (str, transformer)
        Transformers mapping texts to 2-D arrays (``EncoderEmbedder``, a TF-IDF + SVD
        pipeline, ...). Their parameters are reachable as ``<name>__<param>``.
    meta_learner : estimator or "drop", default=None
        Multi-label estimator with ``predict_proba``, trained on the concatenated member
        outputs. ``None`` uses :func:`default_meta_learner` with its ``C`` chosen on the
        training rows by out-of-fold macro average precision (:func:`tuned_meta_learner`,
        on the ``cv`` folds); ``"drop"`` adds no meta block.
    cv : int or cross-validation splitter, default=5
        Folds for the out-of-fold meta-features. An int is ``KFold`` (``StratifiedKFold``
        for a 1-D ``y``) shuffled with ``random_state``, or with seed 0 when it is ``None``:
        the same folds on every fit.
    leak_free : bool or int, default=False
        Also compute the training-row outputs of *supervised* members (fine-tuned
        encoders) out of fold: each fold's rows are embedded by a member fitted on the other
        folds. ``True`` uses the ``cv`` folds (``cv`` extra fits of every supervised member);
        an int ``k >= 2`` cross-fits on ``k`` folds of its own: ``leak_free=2`` costs two
        fits on half the rows, about one extra full fit.
    random_state : int, default=None
        Seeds the fold shuffling and the default meta-learner.

    Attributes
    ----------
    members_ : list of (str, fitted transformer)
    meta_learner_ : fitted estimator or None
        With ``meta_learner=None``, the chosen ``C`` is ``meta_learner_[-1].estimator.C``.
    blocks_ : list of (str, int)
        Name and width of each output block (in word mode: each sentence-level block).
    word_blocks_ : list of (str, int)
        Name and width of each word-level member's states (empty in block mode).
    n_labels_ : int or None

    Examples
    --------
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.decomposition import TruncatedSVD
    >>> from sklearn.pipeline import make_pipeline
    >>> texts = ["happy day", "sad news", "happy news", "angry day"] * 5
    >>> Y = [[1, 0], [0, 1], [1, 1], [0, 0]] * 5
    >>> tfidf = make_pipeline(TfidfVectorizer(), TruncatedSVD(3, random_state=0))
    >>> stack = StackingEmbedder([("tfidf", tfidf)], cv=2, random_state=0)
    >>> Z = stack.fit_transform(texts, Y)
    >>> Z.shape, stack.blocks_
    ((20, 5), [('tfidf', 3), ('meta', 2)])
    """

    # what skstack.save keeps of a fitted stack: its layout, and its fitted members and
    # meta-learner as nodes of their own
    _portable_state: ClassVar[tuple[str, ...]] = ("blocks_", "word_blocks_", "n_labels_",
                                                  "label_names_")
    _portable_parts: ClassVar[tuple[str, ...]] = ("members_", "meta_learner_")
    # what a file's fitted state must be (checked when loaded, as fit would have made it)
    _state_constraints: ClassVar[dict[str, list]] = {
        "blocks_": [BLOCKS], "word_blocks_": [BLOCKS], "label_names_": [NAMES],
        "n_labels_": [Interval(numbers.Integral, 1, None), NONE],
    }

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "members": [Check(lambda v: isinstance(v, list) and len(v) > 0,
                          "a non-empty list of (name, transformer) pairs")],
        "meta_learner": [ESTIMATOR, Options(("drop",)),
                         Check(lambda v: v is None, "None (the default meta-learner)")],
        "cv": [Interval(numbers.Integral, 2, None),
               SPLITTER],
        "leak_free": [BOOLEAN, Interval(numbers.Integral, 2, None)],
        "random_state": SEED,
    }

    def __init__(self, members, meta_learner=None, cv=5, leak_free: bool | int = False,
                 random_state: int | None = None):
        self.members = members
        self.meta_learner = meta_learner
        self.cv = cv
        self.leak_free = leak_free
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict:
        return self._get_params("members", deep=deep)

    def set_params(self, **params):
        self._set_params("members", **params)
        return self

    def _check_state(self) -> None:
        """Restored state (``skstack.load``): the layout names the fitted members (and the
        meta-learner), and the labels agree."""
        owner = type(self).__name__
        if not hasattr(self, "blocks_") or not isinstance(getattr(self, "members_", None),
                                                           list):
            raise ValueError(f"{owner} is fitted but lacks its 'blocks_' or 'members_'.")
        fitted = [name for name, _ in self.members_]
        if fitted != [name for name, _ in self.members]:
            raise ValueError(f"the fitted attribute 'members_' of {owner} holds {fitted}, not "
                             f"the members {[name for name, _ in self.members]}.")
        known = {*fitted, META_BLOCK}
        unknown = [name for name, _ in self.blocks_ + list(getattr(self, "word_blocks_", []))
                   if name not in known]
        if unknown:
            raise ValueError(f"the fitted attribute 'blocks_' of {owner} names {unknown[0]!r}, "
                             f"which is no member (members: {fitted}).")
        names, n = getattr(self, "label_names_", None), getattr(self, "n_labels_", None)
        if names is not None and n is not None and len(names) != n:
            raise ValueError(f"the fitted attribute 'label_names_' of {owner} holds "
                             f"{len(names)} names for n_labels_={n} labels.")

    def _check_members(self) -> None:
        for item in self.members:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(f"Each member must be a (name, transformer) pair; got {item!r}.")
            if not hasattr(item[1], "transform"):
                raise TypeError(f"Member {item[0]!r} has no transform method.")
        names = [name for name, _ in self.members]
        if META_BLOCK in names:
            raise ValueError(f"{META_BLOCK!r} names the meta-learner's block; choose another "
                             "member name.")
        self._validate_names(names)

    def _member_output(self, member, X, Y, folds):
        fitted = clone(member)
        Z = _dense(fitted.fit_transform(X, Y))
        _lay_out_projections(fitted)
        supervised = get_tags(fitted).target_tags.required
        if self.leak_free is not False and supervised and Y is not None:
            if self.leak_free is not True:  # an int: cross-fitting folds of its own
                splitter = make_splitter(self.leak_free, random_state=self.random_state)
                folds = list(splitter.split(np.zeros((len(Y), 1)), Y))
            parts = [_dense(clone(member).fit(_take(X, train), Y[train]).transform(_take(X, test)))
                     for train, test in folds]
            Z = _in_order(parts, np.concatenate([test for _, test in folds]))
        return fitted, Z

    def _stacked(self, outputs: list, meta) -> BlockArray | WordSequences:
        """The output: block mode ``[members | meta]``, or word-level members aligned word by
        word with the rest as sentence blocks."""
        names = [name for name, _ in self.members_]
        words = [(n, Z) for n, Z in zip(names, outputs, strict=True)
                 if isinstance(Z, WordSequences)]
        rest = [(n, Z) for n, Z in zip(names, outputs, strict=True)
                if not isinstance(Z, WordSequences)]
        if meta is not None:
            rest.append((META_BLOCK, meta))
        n = len(outputs[0])
        sentence = np.hstack([Z for _, Z in rest]) if rest else np.zeros((n, 0), np.float32)
        blocks = [(name, Z.shape[1]) for name, Z in rest]
        if words:
            return WordSequences.align(words, sentence, blocks)
        return BlockArray(sentence, blocks)

    @validates_params
    def _fit(self, X, y):
        self._check_members()
        X = _texts_once(X)
        n = len(X)
        if n == 0:
            raise ValueError(f"Found 0 texts while a minimum of 1 is required to fit "
                             f"{type(self).__name__}.")
        Y = y_meta = None
        if y is not None:
            target = check_target(y, n)
            Y = target.Y.astype(np.int64)
            # the members get the checked matrix (a fine-tuned encoder does not check it
            # again); a 1-D target's meta-learner learns the classes as given, the members its
            # one-hot (binary: one column) label matrix
            y_meta = np.asarray(Y) if target.kind == "multilabel" else np.asarray(y).reshape(n)
            self.label_names_ = target.names or [str(c) for c in target.classes[-Y.shape[1]:]]
        use_meta = not (isinstance(self.meta_learner, str) and self.meta_learner == "drop")
        if use_meta and Y is None:
            raise ValueError("The meta-learner needs the label matrix y in fit(X, y); pass y or "
                             "set meta_learner='drop'.")
        splitter = make_splitter(self.cv, y_meta, self.random_state)
        folds = list(splitter.split(np.zeros((n, 1)), y_meta))
        self.members_, outputs = [], []
        for name, member in self.members:
            fitted, Z = self._member_output(member, X, Y, folds)
            if Z.shape[0] != n:
                raise ValueError(f"Member {name!r} returned {Z.shape[0]} rows for {n} texts.")
            self.members_.append((name, fitted))
            outputs.append(Z)
        self.meta_learner_, self.n_labels_ = None, None if Y is None else Y.shape[1]
        oof = None
        if use_meta:
            features = np.hstack([_sentence(Z) for Z in outputs])
            # One BLAS thread: after the encoders ran, torch's OpenMP threads still spin, and
            # a multi-threaded BLAS fighting them for the cores made the meta-learner's final
            # fit 3.8 s against 0.2 s on 1,000 texts, 2 cores (benchmarks/bench_head_cost.py;
            # docs/benchmarks.md, "The head's cost"); its solvers gain little from BLAS threads.
            progress(f"stacking: the meta-learner on {features.shape[1]:,} features, out of "
                     f"fold ({len(folds)} folds) and on all {n:,} rows")
            with threadpool_limits(1, user_api="blas"):
                if self.meta_learner is None:
                    meta, oof, scores = tuned_meta_learner(features, y_meta, Y, folds,
                                                           self.random_state)
                    tried = ", ".join(f"{C:g}: {v:.3f}" for C, v in sorted(scores.items()))
                    progress(f"stacking: the meta-learner's C is {meta[-1].estimator.C:g} "
                             f"(out-of-fold macro average precision {tried})")
                else:
                    meta = self.meta_learner
                    oof = _meta_proba(cross_val_predict(clone(meta), features, y_meta,
                                                        cv=folds, method="predict_proba"),
                                      Y.shape[1])
                self.meta_learner_ = clone(meta).fit(features, y_meta)
        stacked = self._stacked(outputs, oof)
        self.blocks_ = stacked.blocks
        self.word_blocks_ = getattr(stacked, "word_blocks", [])
        return stacked

    def fit(self, X, y=None):
        """Fit every member and the meta-learner.

        Parameters
        ----------
        X : sequence of str
        y : array-like of shape (n_samples, n_labels) or (n_samples,)
            0/1 label matrix (needed by the meta-learner and supervised members), or a 1-D
            binary or multiclass target: the meta block is then P(second class) (binary) or
            one probability per class, and supervised members see its one-hot matrix.
        """
        self._fit(X, y)
        return self

    def fit_transform(self, X, y=None, **fit_params) -> BlockArray | WordSequences:
        """Fit, and return the training rows' representation with out-of-fold meta-features
        (and out-of-fold supervised members when ``leak_free``)."""
        return self._fit(X, y)

    def transform(self, X) -> BlockArray | WordSequences:
        """Stack the fitted members' outputs and the meta-learner's probabilities."""
        check_is_fitted(self, "members_")
        X = _texts_once(X)
        for _, member in self.members_:
            _lay_out_projections(member)  # a model fitted by an earlier version too
        outputs = [_dense(member.transform(X)) for _, member in self.members_]
        meta = None
        if self.meta_learner_ is not None:
            features = np.hstack([_sentence(Z) for Z in outputs])
            meta = _meta_proba(_meta_predict_proba(self.meta_learner_, features),
                               self.n_labels_)
        return self._stacked(outputs, meta)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names, prefixed by the member's name (``meta__<label>`` last); in
        word mode the word-level columns come first, as in ``shape[1]``."""
        check_is_fitted(self, "members_")
        names = []
        members = dict(self.members_)
        for name, width in self.word_blocks_ + self.blocks_:
            if name == META_BLOCK:  # named by label below
                continue
            try:
                inner = list(members[name].get_feature_names_out())
            except (AttributeError, ValueError, TypeError):
                inner = [str(i) for i in range(width)]
            names += [f"{name}__{f}" for f in inner]
        if self.meta_learner_ is not None:
            names += [f"{META_BLOCK}__{label}" for label in self.label_names_]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
