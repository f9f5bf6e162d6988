"""SmoothViz: see over-smoothing in Transformers — attention as a graph, layer by layer.

Notebook use::

    import smoothviz
    result = smoothviz.analyze("The quick brown fox …", mitigation="neutreno")
    result.baseline.metric("cosine_mean")
    many = smoothviz.corpus(["One sentence.", "Another one."], mitigation="neutreno")
    many.summary()["baseline"]["layers"][-1]["cosine_mean"]["median"]
"""

from smoothviz.corpora.run import CorpusError, CorpusResult, corpus
from smoothviz.mitigations import NAMES as MITIGATIONS
from smoothviz.mitigations import MitigationError
from smoothviz.model.models import ModelError
from smoothviz.pipeline.analysis import Analysis, AnalysisError, Run, analyze
from smoothviz.pipeline.compare import Comparison, RunSpec, SpecError, compare

__all__ = [
    "analyze",
    "compare",
    "RunSpec",
    "Comparison",
    "SpecError",
    "corpus",
    "CorpusResult",
    "CorpusError",
    "Analysis",
    "Run",
    "AnalysisError",
    "ModelError",
    "MitigationError",
    "MITIGATIONS",
]
__version__ = "0.1.0"
