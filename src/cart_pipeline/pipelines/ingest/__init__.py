"""Ingest: manifest + media files -> candidates, human queries, rejected rows."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
