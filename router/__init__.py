"""Cost-aware LLM routing: a single-head cross-attention router over a DuckDB store.

The library never imports Prefect; flows in ``flows/`` are thin wrappers over it.
"""

__version__ = "0.1.0"
