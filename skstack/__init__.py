"""skstack: multi-label text classification with stacked transformer embeddings.

The public surface is ``__all__``; modules whose names start with ``_`` are internal.
"""

from skstack._config import config_context, get_config, progress_to_stderr, set_config
from skstack._loading import clear_loaded_encoders
from skstack._version import __version__
from skstack.averaging import AveragedClassifier
from skstack.blocks import BlockArray
from skstack.cache import clear_memory_cache
from skstack.cards import model_card
from skstack.corpus import predict_corpus
from skstack.datasets import (
    load_goemotions,
    load_sample_emotions,
    load_semeval2018_ec,
    load_table,
)
from skstack.encoder import EncoderEmbedder
from skstack.explanations import Explanation, explain
from skstack.labels import from_label_lists, label_names, predict_label_lists, to_label_lists
from skstack.losses import HybridLoss, LabelStatistics
from skstack.metrics import MultilabelReport, get_scorers, jaccard_accuracy, multilabel_report
from skstack.nets import BiLSTMClassifier, BiLSTMModule
from skstack.parallel import warm_cache
from skstack.persistence import ModelFileError, load, save
from skstack.pipelines import (
    arabic_emotion_pipeline,
    char_tfidf_member,
    default_minilm,
    default_multilingual,
    language_encoders,
    make_stacked_pipeline,
    quickstart_pipeline,
)
from skstack.report import evaluate_model, html_report
from skstack.rules import DecisionRule, decide, decision_rule
from skstack.sequences import WordSequences, word_spans
from skstack.sharded_cache import ShardedStore
from skstack.stacking import StackingEmbedder
from skstack.thresholds import FixedThresholds, TunedThresholds, tune_thresholds

__all__ = [
    "AveragedClassifier",
    "BiLSTMClassifier",
    "BiLSTMModule",
    "BlockArray",
    "DecisionRule",
    "EncoderEmbedder",
    "Explanation",
    "FixedThresholds",
    "HybridLoss",
    "LabelStatistics",
    "ModelFileError",
    "MultilabelReport",
    "ShardedStore",
    "StackingEmbedder",
    "TunedThresholds",
    "WordSequences",
    "__version__",
    "arabic_emotion_pipeline",
    "char_tfidf_member",
    "clear_loaded_encoders",
    "clear_memory_cache",
    "config_context",
    "decide",
    "decision_rule",
    "default_minilm",
    "default_multilingual",
    "evaluate_model",
    "explain",
    "from_label_lists",
    "get_config",
    "get_scorers",
    "html_report",
    "jaccard_accuracy",
    "label_names",
    "language_encoders",
    "load",
    "load_goemotions",
    "load_sample_emotions",
    "load_semeval2018_ec",
    "load_table",
    "make_stacked_pipeline",
    "model_card",
    "multilabel_report",
    "predict_corpus",
    "predict_label_lists",
    "progress_to_stderr",
    "quickstart_pipeline",
    "save",
    "set_config",
    "to_label_lists",
    "tune_thresholds",
    "warm_cache",
    "word_spans",
]
