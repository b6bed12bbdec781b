"""CART identifier decoder: a compact causal transformer reading all text-encoder layers.

Each decoder layer is three pre-LN residual blocks (shapes: B queries, T text tokens, S text
layers, H text width, d = d_model, L identifier length, V vocabulary size):

    x = x + SelfAttn(LN(x))                  causal over [BOS, t1 .. t_{L-1}]
    x = x + Fusion(LN(x), text memory)       two-branch fusion (or plain cross-attn, ablation)
    x = x + FFN(LN(x))

Two-branch fusion (paper, "fusion" row of docs/architecture.md):
    coarse: Z = W·concat(E_1..E_S) + b            (B, T, S·H) -> (B, T, d)
            c = CrossAttn_c(Y, Z);  c = c · σ(W_g c)   (sigmoid self-gate)
    fine:   f = Σ_s softmax(α)_s · CrossAttn_f(Y, P_s E_s)   P_s: H -> d, one per text layer
    out = c + f

The text memory depends only on the query, so ``encode_memory`` computes it once and decoding
re-uses it for any number of beams: beams of one query are folded into the cross-attention
*query* axis (cross-attention has no causal mask), so memory of shape (B, ..., T) serves
(B, beams·positions) queries without ever being copied. Training uses the same folding for the
two R-Drop passes (2 "beams" of the same target), so the memory is built once for both.

Cost (why the fine branch is computed the way it is): the fine branch attends over S·T keys
(7 text layers × T tokens), ~10x more keys than the decoder has query positions in training
(L = 5, ×2 for R-Drop). Projecting every memory vector to K/V in every decoder layer was half
or more of a training step's FLOPs, so the fine branch never projects the memory:
q·(W_k e) = (W_kᵀ q)·e and Σ a·(W_v e) = W_v (Σ a·e), per head, the same function (see
``fine_attention``) with W_k, W_v applied to the few queries instead of the many keys. Only
P_s E_s is computed (once per forward for all layers: P_s is on the input side), and only for
real tokens, never for padding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from cart_pipeline.core.config import ConfigError, check_settings, setting

PAD_TOKEN, BOS_TOKEN = 0, 1


@dataclass
class DecoderConfig:
    vocab_size: int
    position_ranges: list[tuple[int, int]]  # token range [start, end) allowed at each position
    id_length: int = 0  # L; 0 = len(position_ranges)
    text_dim: int = 384  # H
    text_layers: int = 7  # S (embedding output + 6 transformer layers for MiniLM-L6)
    n_layers: int = setting(4, ge=1)
    d_model: int = setting(256, ge=1)
    n_heads: int = setting(4, ge=1)
    dropout: float = setting(0.1, ge=0, lt=1)
    fusion: bool = setting(True)  # false = plain cross-attention over the last text layer
    # Variable-length identifiers padded to L (e.g. hierarchical K-Means) need the pad token to
    # be emittable at every position after the first; None = strictly the position ranges.
    pad_token: int | None = None
    bos_token: int = BOS_TOKEN

    def __post_init__(self) -> None:
        check_settings(self, "decoder_training")
        self.position_ranges = [(int(a), int(b)) for a, b in self.position_ranges]
        self.id_length = self.id_length or len(self.position_ranges)
        if self.id_length != len(self.position_ranges):
            raise ValueError(f"id_length {self.id_length} != {len(self.position_ranges)} ranges")
        if any(not 0 <= a < b <= self.vocab_size for a, b in self.position_ranges):
            raise ValueError(
                f"position ranges {self.position_ranges} outside vocab {self.vocab_size}"
            )
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"decoder_training.d_model ({self.d_model}) must be divisible by "
                f"decoder_training.n_heads ({self.n_heads})"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["position_ranges"] = [list(r) for r in self.position_ranges]
        return d


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(..., N, d) -> (..., nh, N, hd)"""
    return x.unflatten(-1, (n_heads, -1)).transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(..., nh, N, hd) -> (..., N, d)"""
    return x.transpose(-3, -2).flatten(-2)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention with an optional KV cache (one new token per call)."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.resid_drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        # x: (N, Lq, d); cache: K/V of earlier positions, each (N, nh, Lp, hd)
        q, k, v = (_split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:
            if x.shape[1] != 1:
                raise ValueError("the KV-cache path decodes one position at a time")
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(  # a single new query may see all cached keys
            q,
            k,
            v,
            is_causal=cache is None and x.shape[1] > 1,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.resid_drop(self.proj(_merge_heads(y))), (k, v)


class CrossAttention(nn.Module):
    """Multi-head attention from decoder states to a text memory already projected to d.

    Split into ``memory_kv`` (once per query) and ``heads`` (every decoding step) so the K/V
    projections of the memory are never recomputed while decoding.
    """

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # memory (B, *, T, d) -> K, V each (B, *, nh, T, hd)
        k, v = self.kv(memory).chunk(2, dim=-1)
        return _split_heads(k, self.n_heads), _split_heads(v, self.n_heads)

    def heads(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        # x (B, Q, d); k, v (B, nh, T, hd); key_mask (B, 1, 1, T) -> (B, nh, Q, hd) pre-projection
        return F.scaled_dot_product_attention(
            _split_heads(self.q(x), self.n_heads),
            k,
            v,
            attn_mask=key_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )


class TwoBranchFusion(nn.Module):
    """Coarse (gated attention over the fused-layer memory Z) + fine (α-weighted per-layer)."""

    def __init__(self, d: int, n_heads: int, text_layers: int, dropout: float):
        super().__init__()
        self.coarse = CrossAttention(d, n_heads, dropout)
        self.gate = nn.Linear(d, d)
        # One cross-attention (W_q, W_k, W_v, W_o) shared by all S text layers: the per-layer
        # projections P_s already map each E_s into a common d-space, sharing keeps the parameter
        # count independent of S, and it lets the S attentions run as one (see fine_attention).
        # α decides how much each text layer contributes.
        self.fine = CrossAttention(d, n_heads, dropout)
        self.alpha = nn.Parameter(torch.zeros(text_layers))
        self.resid_drop = nn.Dropout(dropout)
        # Inference only: run the fine branch's four matmuls in this dtype (CartIndex.int8 sets
        # bfloat16 where the CPU has it natively); None = the weights' dtype. Not a parameter.
        self.fine_dtype: torch.dtype | None = None

    def memory(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        # z (B, T, d) -> this layer's coarse K/V, each (B, nh, T, hd); the fine branch reads the
        # shared e directly (fine_attention), so it has no per-layer memory
        kc, vc = self.coarse.memory_kv(z)
        return {"kc": kc, "vc": vc}

    def fine_attention(
        self, x: torch.Tensor, e: torch.Tensor, key_mask: torch.Tensor
    ) -> torch.Tensor:
        """Σ_s w_s·Attn(q, W_k e_s, W_v e_s) as ONE attention over the T·S memory vectors.

        x (B, Q, d) decoder states; e (B, T, S, d) the P_s-projected text layers; key_mask
        (B, T) -> (B, Q, d) concatenated heads, before the output projection W_o.

        * S attentions as one: W_q is shared, so q is the same for every s; a softmax taken per
          text layer (over its T tokens) and scaled by w_s, then one matmul with all values,
          is the weighted sum of the S attentions.
        * Memory never projected (W_k, W_v moved to the query side, per head h):
          q_h·(W_k,h e + b_k,h) = (W_k,hᵀ q_h)·e + q_h·b_k,h, and the last term is the same for
          every key of a query, so the softmax removes it;
          Σ a·(W_v,h e + b_v,h) = W_v,h (Σ a·e) + (Σ a)·b_v,h  (Σ a = 1 unless dropout hit it).
          Multiply-adds per query and layer: 2·Q·d² + 2·nh·Q·S·T·d instead of 2·S·T·d² + 2·Q·S·T·d
          with K/V of every memory vector: 3x fewer in training (Q = 5 positions × 2 R-Drop
          passes, S·T = 7·8), 5x for a 40-token text; about even in beam search (Q ≈ 41).
        """
        B, Q, d = x.shape
        T, S = e.shape[1], e.shape[2]
        nh = self.fine.n_heads
        hd = d // nh
        # inference in fine_dtype: the four matmuls in it, the softmax and the output in x's
        low = None if self.training else self.fine_dtype
        down = (lambda t: t) if low is None else (lambda t: t.to(low))
        up = (lambda t: t) if low is None else (lambda t: t.to(x.dtype))
        w_k, w_v = down(self.fine.kv.weight).view(2, nh, hd, d)  # rows of W_k / W_v by head
        b_v = self.fine.kv.bias.view(2, nh, hd)[1]
        q = down(self.fine.q(x).view(B, Q, nh, hd))
        q = torch.einsum("bqnk,nkd->bnqd", q, w_k * hd**-0.5)  # W_kᵀ q, scaled: (B, nh, Q, d)
        mem = down(e.reshape(B, T * S, d))  # a no-op when encode_memory stored it so
        # Scores key-major, (B, T·S, nh·Q): both matmuls then give e a contiguous gradient
        # (summed over 2 uses × n_layers; a transposed one made those sums ~5x slower).
        att = up(mem @ q.reshape(B, nh * Q, d).transpose(1, 2))
        att = att.view(B, T, S, nh * Q).masked_fill(~key_mask[:, :, None, None], float("-inf"))
        att = torch.softmax(att, dim=1) * torch.softmax(self.alpha, 0)[:, None]  # per s, × w_s
        att = F.dropout(att.view(B, T * S, nh * Q), self.fine.dropout, self.training)
        ctx = (down(att.transpose(1, 2)) @ mem).view(B, nh, Q, d)  # Σ_s w_s Σ_t a·e_{t,s}
        y = up(torch.einsum("bnqd,nkd->bqnk", ctx, w_v))  # W_v per head: (B, Q, nh, hd)
        if self.training and self.fine.dropout > 0:
            y = y + att.sum(1).view(B, nh, Q).transpose(1, 2)[..., None] * b_v
        else:
            y = y + b_v
        return y.reshape(B, Q, d)

    def forward(
        self, x: torch.Tensor, mem: dict[str, torch.Tensor], key_mask: torch.Tensor
    ) -> torch.Tensor:
        # x (B, Q, d); mem: this layer's coarse K/V + the shared fine memory "e" (B, T, S, d);
        # key_mask (B, T) bool, True = real token
        m = key_mask[:, None, None, :]  # (B, 1, 1, T) -> broadcast over heads and queries
        c = self.coarse.proj(_merge_heads(self.coarse.heads(x, mem["kc"], mem["vc"], m)))
        c = c * torch.sigmoid(self.gate(c))  # sigmoid self-gate
        f = self.fine.proj(self.fine_attention(x, mem["e"], key_mask))
        return self.resid_drop(c + f)


class PlainCrossAttention(nn.Module):
    """Ablation "w/o fusion": ordinary cross-attention over the last text layer only."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn = CrossAttention(d, n_heads, dropout)
        self.resid_drop = nn.Dropout(dropout)

    def memory(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        k, v = self.attn.memory_kv(z)  # z = projected E_S (B, T, d)
        return {"k": k, "v": v}

    def forward(
        self, x: torch.Tensor, mem: dict[str, torch.Tensor], key_mask: torch.Tensor
    ) -> torch.Tensor:
        h = self.attn.heads(x, mem["k"], mem["v"], key_mask[:, None, None, :])
        return self.resid_drop(self.attn.proj(_merge_heads(h)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        d = cfg.d_model
        self.ln_self, self.ln_cross, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = SelfAttention(d, cfg.n_heads, cfg.dropout)
        self.cross = (
            TwoBranchFusion(d, cfg.n_heads, cfg.text_layers, cfg.dropout)
            if cfg.fusion
            else PlainCrossAttention(d, cfg.n_heads, cfg.dropout)
        )
        self.ffn = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(cfg.dropout)
        )

    def forward(self, x: torch.Tensor, mem: dict, key_mask: torch.Tensor, cache=None):
        # x (B, nb, Lq, d): nb beams (in training 1, or the 2 R-Drop passes) of Lq positions per query
        B, nb, Lq, d = x.shape
        y, new_cache = self.self_attn(self.ln_self(x).view(B * nb, Lq, d), cache)
        x = x + y.view(B, nb, Lq, d)
        # Beams × positions fold into one cross-attention query axis sharing the query's K/V.
        x = x + self.cross(self.ln_cross(x).view(B, nb * Lq, d), mem, key_mask).view(B, nb, Lq, d)
        return x + self.ffn(self.ln_ffn(x)), new_cache


@dataclass
class TextMemory:
    """Query-side state for decoding: computed once per query, shared by all beams."""

    key_mask: torch.Tensor  # (B, T) bool
    layers: list[dict[str, torch.Tensor]] = field(default_factory=list)  # per decoder layer K/V
    shared: dict[str, torch.Tensor] = field(default_factory=dict)  # read by every layer ("e")

    def layer(self, i: int) -> dict[str, torch.Tensor]:
        """Everything decoder layer i reads."""
        return {**self.shared, **self.layers[i]}

    def select(self, idx: torch.Tensor) -> TextMemory:
        """Memory of a subset of queries (e.g. a chunk), by index on the batch axis."""
        return TextMemory(
            self.key_mask[idx],
            [{k: v[idx] for k, v in m.items()} for m in self.layers],
            {k: v[idx] for k, v in self.shared.items()},
        )


class CartDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        d, S, H = cfg.d_model, cfg.text_layers, cfg.text_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.pos_emb = nn.Embedding(cfg.id_length + 1, d)  # positions of [BOS, t1 .. tL]
        if cfg.fusion:
            self.coarse_in = nn.Linear(S * H, d)  # Z = W·concat(E_1..E_S) + b
            # P_s: H -> d for every text layer, stored as one (S, H, d) weight for one einsum
            self.fine_in_w = nn.Parameter(torch.randn(S, H, d) / math.sqrt(H))
            self.fine_in_b = nn.Parameter(torch.zeros(S, d))
        else:
            self.last_in = nn.Linear(H, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying, as in nanoGPT
        allowed = self._position_mask(cfg)  # (L, V)
        self.register_buffer("allowed", allowed, persistent=False)
        cols = [row.nonzero().squeeze(1) for row in allowed]
        self._windows = [(int(c[0]), int(c[-1]) + 1) for c in cols]
        self.apply(self._init_weights)

    @staticmethod
    def _position_mask(cfg: DecoderConfig) -> torch.Tensor:
        allowed = torch.zeros(cfg.id_length, cfg.vocab_size, dtype=torch.bool)
        for i, (a, b) in enumerate(cfg.position_ranges):
            allowed[i, a:b] = True
        if cfg.pad_token is not None:
            allowed[1:, cfg.pad_token] = True
        return allowed

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def window(self, pos: int) -> tuple[int, int]:
        """Smallest vocabulary slice [lo, hi) holding every token allowed at ``pos``."""
        return self._windows[pos]

    # -- text side -----------------------------------------------------------------------------
    def encode_memory(self, text_layers: torch.Tensor, text_mask: torch.Tensor) -> TextMemory:
        # text_layers (B, S, T, H), text_mask (B, T) True = real token
        text_mask = text_mask.bool()
        B, S, T, H = text_layers.shape
        d = self.cfg.d_model
        # Only real tokens are projected (batches pad to the longest text, often 3-4x the
        # typical one); padded positions stay 0 and are masked out of every attention.
        dtype = self.tok_emb.weight.dtype
        if self.cfg.fusion:
            real = text_layers.transpose(1, 2)[text_mask].to(dtype)  # (N, S, H)
            z_real = self.coarse_in(real.reshape(-1, S * H))  # Z = W·concat(E_1..E_S) + b
            e_real = torch.baddbmm(  # P_s E_s + b_s for every s: (S, N, H) @ (S, H, d)
                self.fine_in_b[:, None], real.transpose(0, 1), self.fine_in_w
            )
            e = e_real.new_zeros(B, T, S, d)
            e[text_mask] = e_real.transpose(0, 1)  # (B, T, S, d)
            fine_dtype = (
                None
                if self.training
                else next((layer.cross.fine_dtype for layer in self.layers), None)
            )
            shared = {"e": e if fine_dtype is None else e.to(fine_dtype)}  # cast once per query
        else:
            real = text_layers[:, -1][text_mask].to(dtype)  # E_S only: (N, H)
            z_real, shared = self.last_in(real), {}
        z = z_real.new_zeros(B, T, d)  # the projections' dtype (bf16/fp16 under autocast)
        z[text_mask] = z_real  # (B, T, d)
        return TextMemory(text_mask, [layer.cross.memory(z) for layer in self.layers], shared)

    # -- identifier side -----------------------------------------------------------------------
    def decode(
        self, tokens: torch.Tensor, mem: TextMemory, start: int = 0, cache: list | None = None
    ):
        """tokens (B, nb, Lq) at positions start.. -> final hidden states (B, nb, Lq, d), new cache."""
        B, nb, Lq = tokens.shape
        pos = torch.arange(start, start + Lq, device=tokens.device)
        x = self.drop(self.tok_emb(tokens) + self.pos_emb(pos))  # (B, nb, Lq, d)
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, c = layer(x, mem.layer(i), mem.key_mask, None if cache is None else cache[i])
            new_cache.append(c)
        return self.ln_f(x), new_cache

    def logits(
        self, h: torch.Tensor, start: int = 0, window: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Hidden (..., Lq, d) at positions start.. -> position-masked logits (..., Lq, V or window)."""
        lo, hi = window or (0, self.cfg.vocab_size)
        logits = F.linear(h, self.head.weight[lo:hi])  # only the needed rows of the head
        allowed = self.allowed[start : start + h.shape[-2], lo:hi]  # (Lq, W)
        return logits.masked_fill(~allowed, float("-inf"))

    def forward(
        self, text_layers: torch.Tensor, text_mask: torch.Tensor, target_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing: (B, S, T, H), (B, T), targets (B, L) -> logits (B, L, V)."""
        mem = self.encode_memory(text_layers, text_mask)
        return self.logits_for(mem, target_tokens[:, None])[:, 0]

    def logits_for(self, mem: TextMemory, target_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of nb identifiers per query: targets (B, nb, L) -> (B, nb, L, V)."""
        bos = torch.full_like(target_tokens[..., :1], self.cfg.bos_token)
        inputs = torch.cat([bos, target_tokens[..., :-1]], dim=-1)  # [BOS, t1 .. t_{L-1}]
        h, _ = self.decode(inputs, mem)
        return self.logits(h)
