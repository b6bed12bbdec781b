"""Stronger encoders for users who have the weights locally: OpenCLIP (image+text), CLAP (audio+text).

Neither library nor any weights are needed by the default pipeline: the libraries are
imported when an encoder is built, and the weights are always read from a local path
(nothing is downloaded). Both follow the media-encoder protocol of ``core.features``
(``load(path)`` + ``embed_items(items)``) and add ``encode_text(texts)``, whose embeddings
live in the same space as the media embeddings.
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
    except ImportError as err:
        raise ImportError(f"this encoder needs the '{module}' package: {install_hint}") from err


def _pooled(output) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 wraps them in ``pooler_output``."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class OpenClipEncoder:
    """OpenCLIP model from a local checkpoint: images and texts -> one shared unit-norm space."""

    modality = "image"

    def __init__(self, model_name: str, weights_path: str | Path, device: str = "cpu"):
        open_clip = _require("open_clip", "pip install 'cart_pipeline[clip]' (open-clip-torch)")
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"OpenCLIP weights for {model_name!r} not found at {path}")
        # a file path as `pretrained` loads that checkpoint; nothing is fetched from the hub
        model, _, self._preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(path), device=device
        )
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.device = device
        self.name = f"open-clip:{model_name}"
        self.dim = int(self.model.visual.output_dim)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)  # (3, H, W), the checkpoint's own transform

    def load(self, path: str | Path) -> torch.Tensor:
        return self.preprocess(load_image_rgb(path))

    @torch.inference_mode()
    def embed_items(self, items: list[torch.Tensor]) -> np.ndarray:
        feats = self.model.encode_image(torch.stack(items).to(self.device))  # (B, D)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))  # (B, D)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()


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
