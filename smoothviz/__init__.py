"""SmoothViz: see over-smoothing in Transformers — attention as a graph, layer by layer.

Notebook use::

    import smoothviz
    result = smoothviz.analyze("The quick brown fox …", mitigation="neutreno")
    result.baseline.metric("cosine_mean")
"""
from .analysis import Analysis, AnalysisError, Run, analyze
from .compare import Comparison, RunSpec, SpecError, compare
from .mitigations import NAMES as MITIGATIONS, MitigationError
from .models import ModelError

__all__ = ["analyze", "compare", "RunSpec", "Comparison", "SpecError", "Analysis", "Run", "AnalysisError", "ModelError", "MitigationError", "MITIGATIONS"]
__version__ = "0.1.0"
