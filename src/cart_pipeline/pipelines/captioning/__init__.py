"""Captioning: pseudo-queries for every candidate, never from test queries."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
