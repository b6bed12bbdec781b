"""Feature extraction: candidates and queries -> L2-normalised embeddings, per modality."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
