"""theorylab: measure what deep-learning theory predicts, and check it against the prediction."""
from theorylab.provenance import __version__
from theorylab.results import Result, result_class

__all__ = ["__version__", "Result", "result_class"]
