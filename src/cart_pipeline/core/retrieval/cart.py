"""CART inference as one object: text queries in, ranked item ids out.

The evaluation stage, the search CLI and the benchmarks all go through :class:`CartIndex`,
so there is one inference path: frozen text encoder -> decoder memory -> beam search
constrained by the identifier trie -> item ids with their sequence log-probabilities.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from cart_pipeline.core.decoder import (
    CartDecoder,
    IdentifierTrie,
    constrained_beam_search,
    decoder_from_checkpoint,
)
from cart_pipeline.core.decoder.model import TwoBranchFusion


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


@dataclass
class CartIndex:
    decoder: CartDecoder
    trie: IdentifierTrie
    item_ids: np.ndarray  # (N,) item id of each identifier row
    text_encoder: object  # has .encode_layers(texts) -> (B, S, T, H), (B, T)
    metadata: dict = field(default_factory=dict)
    version: str | None = None  # the Kedro save version of the checkpoint, when it came from one

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict, text_encoder, device: str | torch.device = "cpu"
    ) -> CartIndex:
        decoder, extra = decoder_from_checkpoint(checkpoint, map_location=device)
        identifiers = torch.as_tensor(extra["identifiers"], dtype=torch.long)
        item_ids = np.asarray(extra["item_ids"], dtype=object)
        return cls(
            decoder,
            IdentifierTrie.from_tokens(identifiers),
            item_ids,
            text_encoder,
            extra,
            checkpoint.get("saved_version"),
        )

    def int8(self, bf16_fine: bool | None = None) -> CartIndex:
        """The same index with the decoder's linear layers dynamically quantised to int8 (CPU
        only): weights stored as int8, activations quantised per batch. Scores shift slightly,
        so a ranking can differ from the float32 one (benchmarks/efficiency/trained.py measures
        it on the default set).

        The fine branch reads its W_k / W_v directly (folded into the queries), which dynamic
        quantisation cannot cover; ``bf16_fine`` runs those four matmuls in bfloat16 instead
        (default: where the CPU multiplies bfloat16 natively, since elsewhere it is emulated
        and slower than float32)."""
        import warnings

        if self.decoder.tok_emb.weight.device.type != "cpu":
            raise ValueError("int8 dynamic quantisation runs on the CPU only")
        # not the layers whose weights the model reads directly: the fine branch's K/V (folded
        # into the queries) and the output head (tied to the embedding, sliced per position)
        direct = ("fine.kv", "head")
        layers = {
            name
            for name, module in self.decoder.named_modules()
            if isinstance(module, torch.nn.Linear) and not name.endswith(direct)
        }
        with warnings.catch_warnings():  # torch.ao's notice that quantisation moves to torchao
            warnings.simplefilter("ignore")
            decoder = torch.ao.quantization.quantize_dynamic(
                self.decoder,
                layers,
                dtype=torch.qint8,  # inplace=False: a quantised copy
            )
        if native_bf16() if bf16_fine is None else bf16_fine:
            for module in decoder.modules():
                if isinstance(module, TwoBranchFusion):
                    module.fine_dtype = torch.bfloat16
        return dataclasses.replace(self, decoder=decoder)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 100) -> list[tuple]:
        """The queries' text states, batch by batch, as ``search`` reads them: indexes that
        share a text encoder can take one encoding (``search(..., encoded=)``)."""
        return [
            self.text_encoder.encode_layers(list(texts[start : start + batch_size]))
            for start in range(0, len(texts), batch_size)
        ]

    @torch.inference_mode()
    def search(
        self,
        texts: list[str],
        top_k: int = 10,
        beam_size: int | None = None,
        batch_size: int = 100,
        encoded: list[tuple] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(Q, top_k) item indices (-1 = none) and log-probs, best first; plus timings.

        Columns past the corpus size hold -1 / -inf (the beam never exceeds the corpus).

        timings: seconds spent encoding the queries and decoding (beam search) in total.
        ``encoded``: ``encode(texts, batch_size)``'s result, when the caller has it already.
        """
        if top_k < 1 or (beam_size is not None and beam_size < 1):
            raise ValueError(
                f"top_k and beam_size must be >= 1, got top_k={top_k}, beam_size={beam_size}"
            )
        # a beam wider than the corpus only carries dead slots: cap it at the number of identifiers
        beam_size = min(max(beam_size or top_k, top_k), len(self.item_ids))
        found, scores, encode_s, decode_s = [], [], 0.0, 0.0
        for batch, start in enumerate(range(0, len(texts), batch_size)):
            t0 = time.perf_counter()
            layers, mask = (
                encoded[batch] if encoded else self.encode(texts[start : start + batch_size])[0]
            )
            t1 = time.perf_counter()
            items, logp = constrained_beam_search(
                self.decoder, layers, mask, self.trie, beam_size, top_k
            )
            t2 = time.perf_counter()
            encode_s, decode_s = encode_s + t1 - t0, decode_s + t2 - t1
            found.append(items.cpu().numpy())
            scores.append(logp.cpu().numpy())
        if not found:
            return (
                np.zeros((0, top_k), np.int64),
                np.zeros((0, top_k), np.float32),
                {"encode_s": 0.0, "decode_s": 0.0},
            )
        return (
            np.concatenate(found),
            np.concatenate(scores),
            {"encode_s": encode_s, "decode_s": decode_s},
        )
