"""Tiny randomly initialised CLIP, CLAP and BLIP models saved in exactly the layouts a user's
real weights come in — built here by the libraries' own classes, so nothing is downloaded.

What they prove is plumbing (the files load, the shapes flow, every system is built and
evaluated), never quality: their weights are random.

    models/clip-vit-b-32/        open_clip_config.json + open_clip_model.safetensors (a hub snapshot)
    models/clip-tiny.bin         a bare state dict (+ clip-tiny.json, its architecture)
    models/clap-htsat-unfused/   transformers' save_pretrained: model, feature extractor, tokenizer
    models/blip-captioning/      transformers' save_pretrained: model and processor
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# A ViT and a text transformer of two layers each; open_clip's own BPE vocabulary (bundled).
CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_clip(models: Path) -> dict[str, Path]:
    """A random tiny CLIP as a hub snapshot folder and as a bare state dict + its config."""
    import open_clip
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf

    config = models / "clip-tiny.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("clip-tiny")  # random init, nothing fetched
    state = model.state_dict()
    torch.save(state, models / "clip-tiny.bin")
    snapshot = models / "clip-vit-b-32"
    snapshot.mkdir(exist_ok=True)
    save_config_for_hf(model, snapshot / "open_clip_config.json", model_config=CLIP_CONFIG)
    safetensors.torch.save_file(state, snapshot / "open_clip_model.safetensors")
    return {"snapshot": snapshot, "weights": models / "clip-tiny.bin", "config": config}


def tiny_clap(models: Path) -> Path:
    """A random tiny CLAP with its feature extractor and a byte-level RoBERTa tokenizer (the
    real CLAP's kind of tokenizer, built from its 256 byte symbols: no vocabulary download)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizer,
    )

    folder = models / "clap-htsat-unfused"
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(ByteLevel.alphabet()) + ["<mask>"])}
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[], model_max_length=512)
    text = dict(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=514, type_vocab_size=1,
                projection_dim=8)  # fmt: skip
    audio = dict(
        hidden_size=16,
        patch_embeds_hidden_size=8,
        depths=[1, 1],
        num_attention_heads=[1, 2],
        window_size=8,
        spec_size=256,
        num_mel_bins=64,
        projection_dim=8,
    )  # the real mel geometry: 48 kHz, 64 mels, a 10 s window
    torch.manual_seed(0)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).save_pretrained(
        folder
    )
    extractor = ClapFeatureExtractor(truncation="rand_trunc")  # an unfused model's
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def tiny_blip(models: Path) -> Path:
    """A random tiny BLIP captioner with the tokenizer BLIP uses: BERT's uncased WordPiece (the
    MiniLM package ships it) plus BLIP's [DEC] and [ENC] tokens; saved with its processor."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    from cart_pipeline.core.encoders.text import _bundled_minilm_path

    folder = models / "blip-captioning"
    tokenizer = BertTokenizer.from_pretrained(str(_bundled_minilm_path()), local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    tokenizer.model_max_length = 512
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, image_size=384, patch_size=16)  # fmt: skip
    text = dict(vocab_size=len(tokenizer), hidden_size=16, encoder_hidden_size=16,
                intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text))
    model.save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder
