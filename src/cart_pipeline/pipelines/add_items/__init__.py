"""add_items: new manifest rows -> a grown search index, no existing identifier changed."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
