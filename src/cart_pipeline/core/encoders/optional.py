"""Stronger encoders for users who have the weights locally: OpenCLIP (image+text), CLAP (audio+text).

Neither library nor any weights are needed by the default pipeline: the libraries are
imported when an encoder is built, and the weights are always read from a local path
(nothing is downloaded). Both follow the media-encoder protocol of ``core.features``
(``load(path)`` + ``embed_items(items)``) and add ``encode_text(texts)``, whose embeddings
live in the same space as the media embeddings (the evaluation's `zero_shot` system searches
with them). ``OpenClipTextEncoder`` is CLIP's text tower as the decoder's query encoder: every
layer's token states, as ``MiniLMTextEncoder`` gives them.

OpenCLIP weights come as a file (``weights_path``: a state dict, ``.bin``/``.pt`` or
``.safetensors``, of a model ``model_name`` open_clip knows, or one described by a
``model_config`` JSON) or as a folder holding ``open_clip_config.json`` and the weights (a
hub snapshot such as laion/CLIP-ViT-B-32-laion2B-s34B-b79K, saved to disk).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cart_pipeline.core.media import load_audio_mono, load_image_rgb


def _require(module: str, install_hint: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except (
        ImportError,
        RuntimeError,
    ) as err:  # RuntimeError: a torchvision built for another torch
        raise ImportError(
            f"this encoder needs the '{module}' package ({type(err).__name__}: {err}): {install_hint}"
        ) from err


def _load_open_clip(
    model_name: str | None, weights_path: str | Path, model_config: str | Path | None, device: str
):
    """(model, preprocess, tokenizer, name) from local files only."""
    open_clip = _require("open_clip", "pip install 'cart_pipeline[clip]' (open-clip-torch)")
    path = Path(weights_path)
    if model_config is not None:  # an architecture open_clip does not ship: register it
        config = Path(model_config)
        if not config.is_file():
            raise FileNotFoundError(f"OpenCLIP model config not found at {config}")
        open_clip.add_model_config(config)
        model_name = model_name or config.stem
    if path.is_dir():  # a hub snapshot on disk: open_clip_config.json + weights
        if not (path / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"no open_clip_config.json in the OpenCLIP folder {path}")
        name, pretrained = f"local-dir:{path}", None
    elif path.is_file():
        if not model_name:
            raise ValueError("an OpenCLIP weights file needs `model_name` (e.g. ViT-B-32)")
        name, pretrained = model_name, str(path)
    else:
        raise FileNotFoundError(f"OpenCLIP weights for {model_name!r} not found at {path}")
    # a file path as `pretrained` loads that checkpoint; nothing is fetched from the hub
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=pretrained, device=device
    )
    label = model_name or path.name
    return model.eval(), preprocess, open_clip.get_tokenizer(name), label


def _pooled(output) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 wraps them in ``pooler_output``."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.inference_mode()
def _clip_text_embeddings(model, tokenizer, texts: list[str], device: str) -> np.ndarray:
    """Texts -> (B, D) unit-norm embeddings in an OpenCLIP model's joint space, float32."""
    feats = model.encode_text(tokenizer(texts).to(device))  # (B, D)
    return F.normalize(feats.float(), dim=-1).cpu().numpy()


class OpenClipEncoder:
    """OpenCLIP model from a local checkpoint: images and texts -> one shared unit-norm space."""

    modality = "image"

    def __init__(
        self,
        weights_path: str | Path,
        model_name: str | None = None,
        model_config: str | Path | None = None,
        device: str = "cpu",
    ):
        self.model, self._preprocess, self.tokenizer, label = _load_open_clip(
            model_name, weights_path, model_config, device
        )
        self.device = device
        self.name = f"open-clip:{label}"
        self.dim = int(self.model.visual.output_dim)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)  # (3, H, W), the checkpoint's own transform

    def load(self, path: str | Path) -> torch.Tensor:
        return self.preprocess(load_image_rgb(path))

    @torch.inference_mode()
    def embed_items(self, items: list[torch.Tensor]) -> np.ndarray:
        feats = self.model.encode_image(torch.stack(items).to(self.device))  # (B, D)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return _clip_text_embeddings(self.model, self.tokenizer, list(texts), self.device)


class OpenClipTextEncoder:
    """CLIP's text tower as the query encoder the decoder reads: every layer's token states
    (the embedding output, then each transformer block's), and the tower's own unit-norm text
    embedding as the sentence vector the dual tower and the pair lookup compare. CLIP's text
    attention is causal, so cutting a batch to its longest text changes no state."""

    modality = "text"

    def __init__(
        self,
        weights_path: str | Path,
        model_name: str | None = None,
        model_config: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 128,
        max_length: int | None = None,
    ):
        """``max_length``: tokens a text may have before it counts as cut (`over_length`); at
        most the model's context (77 for CLIP), where its tokenizer cuts every text."""
        self.model, _, self.tokenizer, label = _load_open_clip(
            model_name, weights_path, model_config, device
        )
        if not hasattr(self.model, "token_embedding"):
            raise ValueError(
                f"{label}: only CLIP models with open_clip's own text transformer expose its "
                "layers here (not those built on a Hugging Face text model)"
            )
        self.device, self.batch_size = device, batch_size
        self.name = f"open-clip-text:{label}"
        self.dim = int(self.model.text_projection.shape[-1])  # the joint space
        self.layer_dim = int(self.model.token_embedding.embedding_dim)  # the tower's width
        self.n_layers = len(self.model.transformer.resblocks) + 1  # + the embedding output
        self.context_length = int(self.model.context_length)
        self.max_length = min(max_length or self.context_length, self.context_length)
        self.eot = int(getattr(self.tokenizer, "eot_token_id", 0))

    def over_length(self, texts: list[str]) -> np.ndarray:
        """(N,) bool: texts of more than ``max_length`` tokens (start and end included)."""
        encode = self.tokenizer.encode
        return np.array([len(encode(t)) + 2 > self.max_length for t in texts], dtype=bool)

    @torch.inference_mode()
    def encode_layers(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> all layers' states (B, S, T, W) float32 and the mask (B, T): start token
        to end token, inclusive (token id 0 is a real token in CLIP's vocabulary)."""
        ids = self.tokenizer(list(texts)).to(self.device)  # (B, context)
        end = (ids == self.eot).int().argmax(-1)  # (B,) position of each end token
        T = int(end.max()) + 1
        mask = torch.arange(T, device=ids.device)[None] <= end[:, None]  # (B, T)
        model, ids = self.model, ids[:, :T]
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(ids).to(cast) + model.positional_embedding[:T].to(cast)
        attn = model.attn_mask[:T, :T] if model.attn_mask is not None else None
        _, blocks = model.transformer.forward_intermediates(x, attn_mask=attn)
        return torch.stack([x, *blocks], dim=1).float(), mask  # (B, S, T, W), (B, T)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Texts -> (N, dim) unit-norm CLIP text embeddings, float32."""
        texts = list(texts)
        chunks = [
            _clip_text_embeddings(
                self.model, self.tokenizer, texts[i : i + self.batch_size], self.device
            )
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)


class ClapEncoder:
    """transformers CLAP from a local directory (model + feature extractor + tokenizer)."""

    modality = "audio"

    def __init__(self, model_path: str | Path, device: str = "cpu", max_text_length: int = 64):
        transformers = _require("transformers", "pip install transformers")
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no CLAP model at {path} (config.json missing)")
        local = {"local_files_only": True}
        self.model = transformers.ClapModel.from_pretrained(str(path), **local).eval().to(device)
        self.feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(
            str(path), **local
        )
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), **local)
        self.device = device
        self.max_text_length = max_text_length
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        # clips are cut to the extractor's window here, so its random crop / random
        # fusion chunks never trigger and the same file always gives the same embedding
        self.max_samples = int(self.feature_extractor.nb_max_samples)
        self.name = f"clap:{path.name}"
        self.dim = int(self.model.config.projection_dim)

    def load(self, path: str | Path) -> np.ndarray:
        return load_audio_mono(path, self.sample_rate)[: self.max_samples]  # (n,) float32

    @torch.inference_mode()
    def embed_items(self, items: list[np.ndarray]) -> np.ndarray:
        inputs = self.feature_extractor(
            [np.asarray(x, dtype=np.float32) for x in items],
            sampling_rate=self.sample_rate,
            return_tensors="pt",
        ).to(self.device)
        feats = _pooled(self.model.get_audio_features(**inputs))  # (B, D)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        ).to(self.device)
        feats = _pooled(
            self.model.get_text_features(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            )
        )  # (B, D)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()
