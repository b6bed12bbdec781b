"""Decoder checkpoints, in the one convention of ``core/checkpoint.py``."""

from __future__ import annotations

import torch

from cart_pipeline.core.checkpoint import read_checkpoint, to_checkpoint

from .model import CartDecoder, DecoderConfig

FORMAT = "cart-decoder/1"


def decoder_to_checkpoint(model: CartDecoder, extra: dict | None = None) -> dict:
    """Model + metadata (vocabulary dict, item ids, ...) -> dict safe for weights_only loading."""
    return to_checkpoint(FORMAT, model.cfg.to_dict(), model, extra)


def decoder_from_checkpoint(
    checkpoint: dict, map_location: str | torch.device = "cpu"
) -> tuple[CartDecoder, dict]:
    """Inverse of ``decoder_to_checkpoint``: (model in eval mode, extra)."""
    config, state_dict, extra = read_checkpoint(checkpoint, FORMAT)
    model = CartDecoder(DecoderConfig(**config))
    model.load_state_dict(state_dict)
    return model.to(map_location).eval(), extra


def extend_decoder_checkpoint(
    checkpoint: dict, vocabulary: dict, identifiers, item_ids: list[str]
) -> dict:
    """A trained decoder's checkpoint over a grown index: the vocabulary of
    ``extend_identifiers`` (only the last position's range may grow, at the end) and the
    identifiers (N, L) and item ids of every item, old and new, with no retraining.

    Every existing token keeps its embedding, so old identifiers score as before up to the
    last position's softmax, which now also spreads over the new unique tokens. A new token
    starts as the mean of the trained unique tokens: a neutral prior, which leaves the choice
    among a prefix group's items to what the decoder learned of the group.
    """
    config, state_dict, extra = read_checkpoint(checkpoint, FORMAT)
    old_ranges = [tuple(r) for r in config["position_ranges"]]
    start, sizes = vocabulary["offsets"], vocabulary["position_sizes"]
    ranges = [(int(a), int(a) + int(n)) for a, n in zip(start, sizes, strict=True)]
    if ranges[:-1] != old_ranges[:-1] or ranges[-1][0] != old_ranges[-1][0]:
        raise ValueError(f"position ranges {ranges} do not extend the decoder's {old_ranges}")
    if old_ranges[-1][1] != config["vocab_size"]:
        raise ValueError("the decoder's last position does not end its vocabulary")
    weight = state_dict["tok_emb.weight"]  # (V, d)
    grown = ranges[-1][1] - old_ranges[-1][1]
    unique_rows = weight[old_ranges[-1][0] : old_ranges[-1][1]]  # (U, d)
    weight = torch.cat([weight, unique_rows.mean(0, keepdim=True).expand(grown, -1)])  # (V', d)
    state_dict = {**state_dict, "tok_emb.weight": weight, "head.weight": weight}  # tied
    config = {**config, "vocab_size": len(weight), "position_ranges": [list(r) for r in ranges]}
    identifiers = torch.as_tensor(identifiers, dtype=torch.long)  # (N, L); weights-only safe
    extra = {**extra, "vocabulary": dict(vocabulary), "identifiers": identifiers,
             "item_ids": list(item_ids)}  # fmt: skip
    return {**checkpoint, "config": config, "state_dict": state_dict, "extra": extra}
