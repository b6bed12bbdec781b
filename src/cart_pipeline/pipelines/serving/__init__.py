"""Publish each evaluated index: the search index `cart-search` reads and the registered model."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
