"""skstack: multi-label text classification with stacked transformer embeddings.

The public surface is ``__all__``; modules whose names start with ``_`` are internal.
"""

from skstack._loading import clear_loaded_encoders
from skstack._version import __version__
from skstack.blocks import BlockArray
from skstack.cache import clear_memory_cache
from skstack.datasets import load_goemotions, load_sample_emotions, load_semeval2018_ec
from skstack.encoder import EncoderEmbedder
from skstack.losses import HybridLoss, LabelStatistics
from skstack.metrics import MultilabelReport, get_scorers, jaccard_accuracy, multilabel_report
from skstack.nets import BiLSTMClassifier, BiLSTMModule
from skstack.persistence import ModelFileError, load, save
from skstack.pipelines import arabic_emotion_pipeline, char_tfidf_member, make_stacked_pipeline
from skstack.sequences import WordSequences, word_spans
from skstack.stacking import StackingEmbedder
from skstack.thresholds import TunedThresholds, decide, tune_thresholds

__all__ = [
    "BiLSTMClassifier",
    "BiLSTMModule",
    "BlockArray",
    "EncoderEmbedder",
    "HybridLoss",
    "LabelStatistics",
    "ModelFileError",
    "MultilabelReport",
    "StackingEmbedder",
    "TunedThresholds",
    "WordSequences",
    "__version__",
    "arabic_emotion_pipeline",
    "char_tfidf_member",
    "clear_loaded_encoders",
    "clear_memory_cache",
    "decide",
    "get_scorers",
    "jaccard_accuracy",
    "load",
    "load_goemotions",
    "load_sample_emotions",
    "load_semeval2018_ec",
    "make_stacked_pipeline",
    "multilabel_report",
    "save",
    "tune_thresholds",
    "word_spans",
]
