"""The analysis options a user picks, defined once: the CLI's choices and the sidebar's widgets
are built from these tables, and the library validates against them.

Each maps a choice (the short word that goes into a URL or onto the command line) to its label.
"""

from __future__ import annotations

SYMMETRIZE = {"sym": "(A + Aᵀ)/2", "ata": "AᵀA"}  # docs/SCIENCE.md §1; default first
PROJECTIONS = {"none": "none", "pca": "PCA", "umap": "UMAP"}  # docs/SCIENCE.md §5
DEVICES = {"auto": "auto (CUDA, then MPS, then CPU)", "cpu": "CPU", "cuda": "CUDA", "mps": "Apple MPS"}


def check(name: str, value: str, table: dict) -> str:
    """``value`` if it is one of ``table``'s choices; else ValueError listing them."""
    if value not in table:
        raise ValueError(f"{name} must be one of {', '.join(table)}, got '{value}'")
    return value
