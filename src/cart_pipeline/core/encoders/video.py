"""Video encoder: the image encoder on uniformly sampled frames, mean-pooled.

The simplest strong baseline for clip-level retrieval features (as in CLIP4Clip's
"mean pooling" variant): the video lives in the image encoder's feature space, so the same
captioner head (ImageNet logits, averaged over frames) works for videos too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cart_pipeline.core.media import sample_video_frames


class FrameMeanVideoEncoder:
    """Video file -> n_frames frames -> image embeddings (unit norm) -> mean -> L2 normalise."""

    modality = "video"

    def __init__(self, image_encoder, n_frames: int = 8):
        if n_frames < 1:
            raise ValueError("n_frames must be >= 1")
        self.image_encoder = image_encoder
        self.n_frames = n_frames
        self.name = f"frame-mean-{image_encoder.name}"
        self.dim = int(image_encoder.dim)

    def load(self, path: str | Path) -> torch.Tensor:
        """Decode one video -> (n_frames, 3, H, W) preprocessed frames (raises MediaDecodeError)."""
        frames = sample_video_frames(path, self.n_frames)
        return torch.stack([self.image_encoder.preprocess(f) for f in frames])

    def embed_items_with_logits(self, items: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """List of (n_frames, 3, H, W) -> features (B, D) unit norm, frame-mean logits (B, C)."""
        b = len(items)
        feats, logits = self.image_encoder.embed_batch(torch.cat(items))  # (B*n, D), (B*n, C)
        feats = torch.from_numpy(feats).view(b, self.n_frames, -1).mean(dim=1)  # (B, D)
        logits = logits.reshape(b, self.n_frames, -1).mean(axis=1)  # (B, C)
        return F.normalize(feats, dim=-1).numpy(), logits.astype(np.float32)

    def embed_items(self, items: list[torch.Tensor]) -> np.ndarray:
        return self.embed_items_with_logits(items)[0]
