"""skstack: multi-label text classification with stacked transformer embeddings."""

from skstack._version import __version__
from skstack.blocks import BlockArray
from skstack.encoder import EncoderEmbedder
from skstack.losses import HybridLoss
from skstack.metrics import get_scorers, jaccard_accuracy, multilabel_report
from skstack.nets import BiLSTMClassifier, BiLSTMModule
from skstack.thresholds import decide, tune_thresholds

__all__ = [
    "BiLSTMClassifier",
    "BiLSTMModule",
    "BlockArray",
    "EncoderEmbedder",
    "HybridLoss",
    "__version__",
    "decide",
    "get_scorers",
    "jaccard_accuracy",
    "multilabel_report",
    "tune_thresholds",
]
