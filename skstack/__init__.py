"""skstack: multi-label text classification with stacked transformer embeddings."""

from skstack._loading import clear_loaded_encoders
from skstack._version import __version__
from skstack.blocks import BlockArray
from skstack.cache import clear_memory_cache
from skstack.datasets import load_goemotions, load_sample_emotions, load_semeval2018_ec
from skstack.encoder import EncoderEmbedder
from skstack.losses import HybridLoss
from skstack.metrics import get_scorers, jaccard_accuracy, multilabel_report
from skstack.nets import BiLSTMClassifier, BiLSTMModule
from skstack.pipelines import arabic_emotion_pipeline, make_stacked_pipeline
from skstack.stacking import StackingEmbedder
from skstack.thresholds import decide, tune_thresholds

__all__ = [
    "BiLSTMClassifier",
    "BiLSTMModule",
    "BlockArray",
    "EncoderEmbedder",
    "HybridLoss",
    "StackingEmbedder",
    "__version__",
    "arabic_emotion_pipeline",
    "clear_loaded_encoders",
    "clear_memory_cache",
    "decide",
    "get_scorers",
    "jaccard_accuracy",
    "load_goemotions",
    "load_sample_emotions",
    "load_semeval2018_ec",
    "make_stacked_pipeline",
    "multilabel_report",
    "tune_thresholds",
]
