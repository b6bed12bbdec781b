"""dual_tower stage: the dense baseline, trained on CART's own pairs; also the teacher of the
decoder's soft targets (`decoder_training.soft_targets`)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
