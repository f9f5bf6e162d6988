"""SmoothViz: see over-smoothing in Transformers — attention as a graph, layer by layer.

Notebook use::

    import smoothviz
    result = smoothviz.analyze("The quick brown fox …", mitigation="neutreno")
    result.baseline.metric("cosine_mean")
    many = smoothviz.corpus(["One sentence.", "Another one."], mitigation="neutreno")
    many.summary()["baseline"]["layers"][-1]["cosine_mean"]["median"]
"""
from .analysis import Analysis, AnalysisError, Run, analyze
from .compare import Comparison, RunSpec, SpecError, compare
from .corpus import CorpusError, CorpusResult, corpus
from .mitigations import NAMES as MITIGATIONS, MitigationError
from .models import ModelError

__all__ = ["analyze", "compare", "RunSpec", "Comparison", "SpecError", "corpus", "CorpusResult", "CorpusError",
           "Analysis", "Run", "AnalysisError", "ModelError", "MitigationError", "MITIGATIONS"]
__version__ = "0.1.0"
