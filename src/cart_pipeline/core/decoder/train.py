"""Training of the CART decoder: CE on identifier tokens + ω · R-Drop consistency.

The text encoder is frozen, so its hidden states are computed once per distinct text and kept
packed (all real tokens of all texts in one float16 tensor + offsets): half the memory of
float32, no padding stored, and a batch is assembled with one gather. Fine-tuned top layers
(``DecoderConfig.tune_text_layers``) belong to the decoder and are recomputed every step from
these frozen states, so the cache stays valid; they train at ``lr × text_lr_scale``.

Where a step's time goes, and what keeps it small on a CPU (default model, batch 128):
  * batches come from length-sorted pools (``length_bucketed_batches``): random batches of the
    default dataset pad to ~28 tokens for a mean text of ~8;
  * the text memory is built once per distinct text of a batch (``batch_memory``) and once for
    both R-Drop passes, which run as two "beams" over it (the memory has no dropout);
  * the fine branch never projects its S·T memory vectors (see ``model.py``).
What is left is mostly the decoder's own per-position work (B × 2 passes × L positions).

Data parallel (``torch.distributed`` initialised, e.g. by ``torchrun``; see
``pipelines/decoder_training/distributed.py``): every replica draws the same global batches
and trains on its strided share of each (:class:`World`), wrapped in
``DistributedDataParallel``; each share's loss is weighted by its size, so the averaged
gradient is that of the whole global batch, as one process would compute it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .beam_search import constrained_beam_search, ranks_of, trie_allowed
from .model import CartDecoder, TextMemory
from .targets import prefix_soft_targets
from .trie import IdentifierTrie

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    consistency_weight: float = 1.0  # ω; 0 = single forward pass, no KL ("w/o consistency")
    label_smoothing: float = 0.0
    # The checkpoint kept is the epoch with the best validation ``select_on`` (r1, r10 or
    # mrr10; MRR@10 is smooth where R@1 moves in steps of one query). ``patience``: evaluations
    # without a better one before stopping early; None = train to the end of the schedule.
    select_on: str = "mrr10"
    patience: int | None = None
    # no early stop before this epoch: on a small validation set the metric sits at 0 for the
    # first epochs while the decoder is still learning the coarse tokens
    min_epochs: int = 5
    # Weight λ of soft identifier targets (``soft_targets`` of train_decoder: a distribution
    # over items per pair, e.g. the dual tower's): the token target at each position is
    # (1-λ)·one-hot + λ·that distribution marginalised over the trie below the target's prefix.
    soft_target_weight: float = 0.0
    seed: int = 0
    eval_every: int = 1  # epochs between validation runs
    val_beam_size: int = 10
    encode_batch_size: int = 128
    progress: bool = True
    # learning rate of fine-tuned text-encoder layers (if any) relative to ``lr``: pretrained
    # weights want smaller steps than the decoder trained from scratch
    text_lr_scale: float = 0.1
    # batches drawn from length-sorted pools of this many batches (less padding); 1 = random
    bucket_pool_batches: int = 16
    # mixed precision for accelerators: "bf16" or "fp16" (with a gradient scaler); None = float32
    autocast: str | None = None
    # Validate, select and keep an exponential moving average of the weights (updated after
    # every step) instead of the raw weights; its half-life in epochs, None = off. Averaging
    # damps the step-to-step noise of the trajectory, which the selected epoch inherits.
    ema_half_life: float | None = None


class PackedTextStates:
    """Frozen text-encoder states of many texts: (n_tokens, S, H) float16 + per-text offsets."""

    def __init__(
        self, texts: Sequence[str], text_encoder, batch_size: int = 128, progress: bool = False
    ):
        from tqdm.auto import tqdm

        texts = list(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths, less padding
        chunks: list[torch.Tensor | None] = [None] * len(texts)
        for start in tqdm(
            range(0, len(texts), batch_size), desc="encode texts", disable=not progress
        ):
            idx = order[start : start + batch_size]
            layers, mask = text_encoder.encode_layers(
                [texts[i] for i in idx]
            )  # (b, S, T, H), (b, T)
            for row, i in enumerate(idx):
                chunks[i] = (
                    layers[row][:, mask[row]].transpose(0, 1).to(torch.float16).cpu()
                )  # (T_i, S, H)
        lengths = torch.tensor([c.shape[0] for c in chunks], dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])  # (n+1,)
        self.packed = torch.cat(chunks) if chunks else torch.zeros(0)  # (n_tokens, S, H)

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def lengths(self) -> torch.Tensor:
        """(n,) number of tokens of each text."""
        return self.offsets[1:] - self.offsets[:-1]

    def nbytes(self) -> int:
        return self.packed.numel() * self.packed.element_size()

    def batch(
        self, idx: torch.Tensor, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text indices (B,) -> (layers (B, S, T, H) float32, mask (B, T) bool), T = longest."""
        start, length = self.offsets[idx], self.offsets[idx + 1] - self.offsets[idx]
        T = int(length.max())
        pos = torch.arange(T)
        mask = pos[None] < length[:, None]  # (B, T)
        gather = torch.where(mask, start[:, None] + pos[None], 0)  # padding reads token 0, masked
        layers = (
            self.packed[gather].float().masked_fill(~mask[..., None, None], 0.0)
        )  # (B, T, S, H)
        return layers.transpose(1, 2).to(device), mask.to(device)


def length_bucketed_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, pool_batches: int = 16
) -> list[torch.Tensor]:
    """One epoch of batches (indices into ``lengths``) with little padding, still random.

    A batch pads to its longest text, and most texts are 5-10 tokens while a few are 40+, so
    random batches are mostly padding. As in fairseq/torchtext bucketing: shuffle, cut into
    pools of ``pool_batches`` batches, sort each pool by length (ties in shuffled order), cut
    it into batches and shuffle the batch order. Every pair is seen once per epoch, batch
    composition and order change every epoch, and the same generator state gives the same
    epoch. pool_batches <= 1 = plain random batches.
    """
    perm = torch.randperm(len(lengths), generator=generator)
    if pool_batches <= 1:
        return list(perm.split(batch_size))
    batches = []
    for pool in perm.split(batch_size * pool_batches):
        pool = pool[torch.sort(lengths[pool], stable=True).indices]  # stable: ties stay shuffled
        batches.extend(pool.split(batch_size))
    order = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in order]


def batch_memory(
    model: CartDecoder,
    states: PackedTextStates,
    text_idx: torch.Tensor,
    device: torch.device | str = "cpu",
) -> TextMemory:
    """``model.encode_memory`` of texts ``text_idx`` (b,), each distinct text encoded once.

    Pseudo-queries repeat across items and length bucketing puts equal texts in the same
    batch (~25% repeats on the default dataset); the rows of a repeated text share its memory.
    """
    texts, row = torch.unique(text_idx, return_inverse=True)  # sorted
    if len(texts) == len(text_idx):
        return model.encode_memory(*states.batch(text_idx, device))
    return model.encode_memory(*states.batch(texts, device)).select(row.to(device))


@dataclass(frozen=True)
class World:
    """This process's place among data-parallel replicas (rank 0 of 1 without a process group)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def shard(self, rows: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This replica's rows of a global batch and the weight of its mean loss, so that the
        replicas' averaged gradient is the global batch's. A replica left without rows (a last
        batch smaller than the world) takes part in the all-reduce with one row at weight 0."""
        if self.size == 1:
            return rows, 1.0
        local = rows[self.rank :: self.size]  # strided: length-sorted batches stay balanced
        if len(local) == 0:
            return rows[:1], 0.0
        return local, len(local) * self.size / len(rows)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over the replicas (a no-op alone)."""
        if self.size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor


class TeacherForcing(nn.Module):
    """One training forward as a module call, which ``DistributedDataParallel`` can wrap: the
    memory of each distinct text of the batch once, then teacher-forced logits of ``passes``
    copies of each target (R-Drop's two dropout passes): (b,), (b, L) -> (b, passes, L, V)."""

    def __init__(self, model: CartDecoder, states: PackedTextStates, device: torch.device):
        super().__init__()
        self.model, self.states, self.device = model, states, device

    def forward(self, text_idx: torch.Tensor, targets: torch.Tensor, passes: int) -> torch.Tensor:
        mem = batch_memory(self.model, self.states, text_idx, self.device)
        return self.model.logits_for(mem, targets[:, None].expand(-1, passes, -1))


def _masked_log_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """log-softmax over the allowed entries only, the others set to 0 so products with p are safe."""
    return torch.where(
        allowed, F.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1), 0.0
    )


def consistency_loss(
    logits_a: torch.Tensor, logits_b: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """R-Drop term ½(KL(p_a‖p_b) + KL(p_b‖p_a)), summed over the vocabulary, mean over positions.

    logits (B, L, V) from two dropout passes; ``mask`` (broadcastable to (B, L, V), e.g. the
    decoder's (L, V) position mask) marks each position's allowed tokens. The KL is taken only
    inside it, where both distributions are finite; outside it both are exactly 0.
    """
    mask = mask.expand_as(logits_a)
    la, lb = _masked_log_softmax(logits_a, mask), _masked_log_softmax(logits_b, mask)
    pa, pb = la.exp() * mask, lb.exp() * mask
    kl = 0.5 * ((pa * (la - lb)) + (pb * (lb - la))).sum(-1)  # (B, L)
    return kl.mean()


def identifier_ce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    allowed: torch.Tensor,
    smoothing: float = 0.0,
    soft: torch.Tensor | None = None,
    soft_weight: float = 0.0,
) -> torch.Tensor:
    """Token cross-entropy (B, L, V) vs (B, L); label smoothing spread over the allowed tokens
    only; with ``soft`` (B, L, V) token distributions, the target is (1-w)·one-hot + w·soft."""
    logp = _masked_log_softmax(logits, allowed.expand_as(logits))
    nll = -logp.gather(-1, targets[..., None]).squeeze(-1)  # (B, L)
    if soft is not None and soft_weight > 0:
        nll = (1 - soft_weight) * nll - soft_weight * (soft * logp).sum(-1)
    if smoothing > 0:
        n_allowed = allowed.sum(-1).clamp(min=1)  # (L,) or (B, L)
        nll = (1 - smoothing) * nll - smoothing * logp.sum(-1) / n_allowed
    return nll.mean()


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:  # linear warm-up, then cosine decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


@torch.inference_mode()
def evaluate_recall(
    model: CartDecoder,
    states: PackedTextStates,
    items: torch.Tensor,
    trie: IdentifierTrie,
    beam_size: int = 10,
    batch_size: int = 128,
    ks: tuple[int, ...] = (1, 10),
    world: World = World(),
) -> dict[str, float]:
    """R@k and MRR@10 of constrained beam search; ``items`` (n,) the relevant item per text.
    Data parallel, each replica ranks every ``world.size``-th batch and all get every rank."""
    device = model.tok_emb.weight.device
    ranks = torch.zeros(len(states), dtype=torch.long)
    by_length = torch.argsort(states.lengths(), stable=True)  # batches of similar lengths
    depth = max(*ks, 10)
    for idx in by_length.split(batch_size)[world.rank :: world.size]:
        layers, mask = states.batch(idx, device)
        found, _ = constrained_beam_search(model, layers, mask, trie, max(beam_size, depth), depth)
        ranks[idx] = ranks_of(found.cpu(), items[idx])
    world.sum_(ranks)  # each text was ranked by exactly one replica
    metrics = {f"r{k}": float((ranks <= k).double().mean()) for k in ks}
    metrics["mrr10"] = float(torch.where(ranks <= 10, 1.0 / ranks.double(), 0.0).mean())
    return metrics


def train_decoder(
    model: CartDecoder,
    train_texts: Sequence[str],
    train_items: Sequence[int] | torch.Tensor,
    identifiers: torch.Tensor,
    text_encoder,
    config: TrainConfig,
    val_texts: Sequence[str] | None = None,
    val_items: Sequence[int] | torch.Tensor | None = None,
    trie: IdentifierTrie | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    soft_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Train on (text, item index) pairs whose targets are ``identifiers[item]`` (N, L).

    Keeps the epoch with the best validation ``config.select_on`` (constrained beam search
    through ``trie``, built from the identifiers when not given), optionally stopping early,
    and returns (best state_dict, per-epoch history); the model is left holding the best
    weights. Without validation data the last epoch's weights are returned.
    ``soft_targets``: (candidates (P, K) item indices, -1 = none; probs (P, K)) per pair, mixed
    into the targets with weight ``config.soft_target_weight`` (see ``prefix_soft_targets``).
    Under an initialised process group it trains data parallel (module docstring).
    """
    from tqdm.auto import tqdm

    world = World.current()
    torch.manual_seed(config.seed + world.rank)  # each replica its own dropout masks
    gen = torch.Generator().manual_seed(config.seed)  # the same global batches on every replica
    device = model.tok_emb.weight.device
    identifiers = torch.as_tensor(identifiers, dtype=torch.long)
    items = torch.as_tensor(train_items, dtype=torch.long)
    if items.numel() != len(train_texts) or items.numel() == 0:
        raise ValueError("train_texts and train_items must be non-empty and of equal length")

    # Cache the frozen encoder once per *distinct* text (pseudo-queries repeat across items).
    distinct = list(dict.fromkeys(train_texts))
    text_index = {t: i for i, t in enumerate(distinct)}
    pair_text = torch.tensor([text_index[t] for t in train_texts], dtype=torch.long)
    states = PackedTextStates(distinct, text_encoder, config.encode_batch_size, config.progress)
    pair_lengths = states.lengths()[pair_text]  # tokens per pair's text, for length bucketing
    log.info(
        "cached %d distinct texts (%d pairs): %.1f MB float16",
        len(states),
        len(items),
        states.nbytes() / 2**20,
    )

    do_val = val_texts is not None and val_items is not None and len(val_texts) > 0
    if do_val:
        val_states = PackedTextStates(list(val_texts), text_encoder, config.encode_batch_size)
        val_items_t = torch.as_tensor(val_items, dtype=torch.long)
    if do_val or model.cfg.trie_softmax:
        trie = trie or IdentifierTrie.from_tokens(identifiers)
    if config.select_on not in ("r1", "r10", "mrr10"):
        raise ValueError(f"select_on must be r1, r10 or mrr10, got {config.select_on!r}")
    use_soft = soft_targets is not None and config.soft_target_weight > 0
    if use_soft:
        soft_items, soft_probs = (torch.as_tensor(t) for t in soft_targets)
        if len(soft_items) != len(items):
            raise ValueError(f"soft targets for {len(soft_items)} pairs, {len(items)} pairs given")

    # (decay?, fine-tuned text layer?) -> parameters; biases and norms are not decayed
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        groups.setdefault((p.dim() >= 2, name.startswith("text_top.")), []).append(p)
    opt = torch.optim.AdamW(
        [
            {
                "params": params,
                "weight_decay": config.weight_decay if decay else 0.0,
                "lr": config.lr * (config.text_lr_scale if text else 1.0),
            }
            for (decay, text), params in groups.items()
        ],
        lr=config.lr,
        # one kernel per tensor instead of ~10: 65 -> 18 ms a step for the default model on CPU
        fused=device.type in ("cpu", "cuda"),
    )
    steps_per_epoch = math.ceil(len(items) / config.batch_size)
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(total, max(1, int(config.warmup_ratio * total)))
    )
    targets_all = identifiers.to(device)
    omega = config.consistency_weight
    V = model.cfg.vocab_size
    if model.cfg.trie_softmax:  # per item: valid tokens at each position given its prefix
        item_allowed = trie_allowed(trie.to(device), targets_all, V)  # (N, L, V)
    amp = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if config.autocast not in amp:
        raise ValueError(f"autocast must be bf16, fp16 or null, got {config.autocast!r}")
    amp_dtype = amp[config.autocast]
    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
    forward = TeacherForcing(model, states, device)
    # the weights validated and kept: the model itself, or its moving average
    kept = model
    if config.ema_half_life is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        decay = 0.5 ** (1.0 / (config.ema_half_life * steps_per_epoch))
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        kept = ema.module
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # no buffer sync per forward: the only buffers are the constant position/trie masks
        forward = DistributedDataParallel(
            forward,
            device_ids=[device] if device.type == "cuda" else None,
            forward_sync_buffers=False,
        )

    history: list[dict] = []
    best, best_state, stale = -1.0, None, 0
    bar = tqdm(
        range(1, config.epochs + 1),
        desc="train decoder",
        unit="epoch",
        disable=not config.progress or world.rank > 0,
    )
    for epoch in bar:
        model.train()
        t0, sums = time.perf_counter(), torch.zeros(4, dtype=torch.float64)  # loss, ce, kl, n
        for global_pairs in length_bucketed_batches(
            pair_lengths, config.batch_size, gen, config.bucket_pool_batches
        ):
            pairs, weight = world.shard(global_pairs)
            pair_items = items[pairs].to(device)
            targets = targets_all[pair_items]  # (b, L)
            # CE smoothing and the KL live inside the allowed tokens: the position ranges (L, V),
            # or with trie_softmax the valid continuations of each target's prefix (b, L, V)
            allowed = item_allowed[pair_items] if model.cfg.trie_softmax else model.allowed
            soft = (
                prefix_soft_targets(
                    targets_all, pair_items, soft_items[pairs], soft_probs[pairs], V
                )
                if use_soft
                else None
            )
            ce_args = (targets, allowed, config.label_smoothing, soft, config.soft_target_weight)
            # The text memory has no dropout: built once for both R-Drop passes, which run as
            # 2 "beams" of the same target, each with its own dropout.
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                if omega > 0:
                    la, lb = forward(pair_text[pairs], targets, 2).float().unbind(1)
                    ce = 0.5 * (identifier_ce(la, *ce_args) + identifier_ce(lb, *ce_args))
                    kl = consistency_loss(la, lb, allowed)
                else:
                    logits = forward(pair_text[pairs], targets, 1)[:, 0].float()
                    ce = identifier_ce(logits, *ce_args)
                    kl = torch.zeros((), device=device)
                loss = ce + omega * kl
            opt.zero_grad(set_to_none=True)
            scaled = loss * weight if weight != 1.0 else loss  # DDP averages the replicas
            (scaler.scale(scaled) if scaler else scaled).backward()
            if scaler:
                scaler.unscale_(opt)  # clip the true gradients
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            if kept is not model:
                ema.update_parameters(model)
            b = len(pairs) if weight else 0
            step = [float(v.detach()) * b for v in (loss, ce, kl)]
            sums += torch.tensor([*step, b], dtype=torch.float64)
        loss, ce, kl, n_seen = world.sum_(sums).tolist()  # means over the whole epoch's pairs
        metrics = {
            "epoch": epoch,
            **{"loss": loss / n_seen, "ce": ce / n_seen, "kl": kl / n_seen},
            "lr": sched.get_last_lr()[0],
        }

        if do_val and (epoch % config.eval_every == 0 or epoch == config.epochs):
            rec = evaluate_recall(
                kept, val_states, val_items_t, trie, config.val_beam_size, world=world
            )
            metrics.update({f"val_{k}": v for k, v in rec.items()})
            if rec[config.select_on] > best:  # ties keep the earlier epoch
                best, best_state, stale = (
                    rec[config.select_on],
                    copy.deepcopy(kept.state_dict()),
                    0,
                )
                metrics["selected"] = 1.0
            else:
                stale += 1
        metrics["seconds"] = time.perf_counter() - t0
        history.append(metrics)
        bar.set_postfix(
            {k: round(v, 4) for k, v in metrics.items() if k in ("loss", "kl", "val_mrr10")}
        )
        if world.rank == 0:
            log.info(
                "epoch %d %s", epoch, {k: round(v, 4) for k, v in metrics.items() if k != "epoch"}
            )
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        patience = config.patience
        if do_val and patience is not None and stale >= patience and epoch >= config.min_epochs:
            log.info(
                "early stop at epoch %d: val %s %.4f not improved for %d evals",
                epoch,
                config.select_on,
                best,
                stale,
            )
            break

    if best_state is None:
        best_state = copy.deepcopy(kept.state_dict())
    model.load_state_dict(best_state)
    return best_state, history
