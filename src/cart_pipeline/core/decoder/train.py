"""Training of the CART decoder: CE on identifier tokens + ω · R-Drop consistency.

The text encoder is frozen, so its hidden states are computed once per distinct text and kept
packed (all real tokens of all texts in one float16 tensor + offsets): half the memory of
float32, no padding stored, and a batch is assembled with one gather.

The pieces, in the order :func:`train_decoder` runs them: :func:`make_optimizer` (AdamW with
linear warm-up and cosine decay), :func:`train_epoch` (one pass over the pairs),
:func:`evaluate_recall` (validation by constrained beam search; the best epoch is kept).

Where a step's time goes, and what keeps it small on a CPU (default model, batch 128):
  * batches come from length-sorted pools (``length_bucketed_batches``): random batches of the
    default dataset pad to ~28 tokens for a mean text of ~8;
  * the text memory is built once per distinct text of a batch (``batch_memory``) and once for
    both R-Drop passes, which run as two "beams" over it (the memory has no dropout);
  * the fine branch never projects its S·T memory vectors (see ``model.py``).
What is left is mostly the decoder's own per-position work (B × 2 passes × L positions).

Data parallel (``torch.distributed`` initialised, e.g. by ``torchrun``; see
``pipelines/decoder_training/distributed.py``, which wraps the forward in
``DistributedDataParallel`` through ``wrap``): every replica draws the same global batches and
trains on its strided share of each (:class:`World`); each share's loss is weighted by its
size, so the averaged gradient is that of the whole global batch, as one process would
compute it.
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

from cart_pipeline.core.config import check_settings, setting

from .beam_search import constrained_beam_search, ranks_of
from .model import CartDecoder, TextMemory
from .targets import prefix_soft_targets
from .trie import IdentifierTrie

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation, objective and checkpoint selection (parameters_decoder_training.yml)."""

    epochs: int = setting(15, ge=1)
    batch_size: int = setting(128, ge=1)
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(0.01, ge=0)
    warmup_ratio: float = setting(0.05, ge=0, lt=1)
    grad_clip: float = setting(1.0, ge=0)  # 0 = no clipping
    consistency_weight: float = setting(1.0, ge=0)  # ω; 0 = one pass, no KL ("w/o consistency")
    # The checkpoint kept is the epoch with the best validation ``select_on`` (MRR@10 is smooth
    # where R@1 moves in steps of one query). ``patience``: evaluations without a better one
    # before stopping early; None = train to the end of the schedule.
    select_on: str = setting("mrr10", choices=("r1", "r10", "mrr10"))
    patience: int | None = setting(None, ge=1)
    # no early stop before this epoch: on a small validation set the metric sits at 0 for the
    # first epochs while the decoder is still learning the coarse tokens
    min_epochs: int = setting(6, ge=1)
    val_beam_size: int = setting(10, ge=1)
    # Weight λ of soft identifier targets (``soft_targets`` of train_decoder: a distribution
    # over items per pair, e.g. the dual tower's): the token target at each position is
    # (1-λ)·one-hot + λ·that distribution marginalised over the trie below the target's prefix.
    soft_target_weight: float = setting(0.5, ge=0, le=1)
    # mixed precision for accelerators: "bf16" or "fp16" (with a gradient scaler); None = float32
    autocast: str | None = setting(None, choices=(None, "bf16", "fp16"))
    # Not parameters: set by the caller.
    seed: int = 0
    eval_every: int = 1  # epochs between validation runs
    encode_batch_size: int = 128
    progress: bool = True
    # batches drawn from length-sorted pools of this many batches (less padding); 1 = random
    bucket_pool_batches: int = 16

    def __post_init__(self) -> None:
        check_settings(self, "decoder_training")


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
    soft: torch.Tensor | None = None,
    soft_weight: float = 0.0,
) -> torch.Tensor:
    """Token cross-entropy (B, L, V) vs (B, L) over each position's allowed tokens; with
    ``soft`` (B, L, V) token distributions, the target is (1-w)·one-hot + w·soft."""
    logp = _masked_log_softmax(logits, allowed.expand_as(logits))
    nll = -logp.gather(-1, targets[..., None]).squeeze(-1)  # (B, L)
    if soft is not None and soft_weight > 0:
        nll = (1 - soft_weight) * nll - soft_weight * (soft * logp).sum(-1)
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


def make_optimizer(
    model: nn.Module, config: TrainConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (no weight decay on biases and norms) and its schedule: linear warm-up over
    ``warmup_ratio`` of the steps, then cosine decay to 0."""
    groups: dict[bool, list[nn.Parameter]] = {}  # decayed? -> parameters, in model order
    for p in model.parameters():
        groups.setdefault(p.dim() >= 2, []).append(p)
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(
        [{"params": ps, "weight_decay": config.weight_decay if decay else 0.0}
         for decay, ps in groups.items()],
        lr=config.lr,
        # one kernel per tensor instead of ~10: 65 -> 18 ms a step for the default model on CPU
        fused=device.type in ("cpu", "cuda"),
    )  # fmt: skip
    warmup = max(1, int(config.warmup_ratio * total_steps))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, warmup))


@dataclass
class Pairs:
    """Training pairs as tensors: each pair's text (into ``states``) and item (into
    ``identifiers``), and optionally its soft item targets (candidates (P, K), probs (P, K))."""

    text: torch.Tensor  # (P,) index into states
    items: torch.Tensor  # (P,) index into identifiers
    states: PackedTextStates
    identifiers: torch.Tensor  # (N, L) on the training device
    soft: tuple[torch.Tensor, torch.Tensor] | None = None

    def lengths(self) -> torch.Tensor:
        """(P,) tokens of each pair's text, for length bucketing."""
        return self.states.lengths()[self.text]


def train_epoch(
    forward: nn.Module,
    model: CartDecoder,
    pairs: Pairs,
    batches: list[torch.Tensor],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    world: World = World(),
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over ``batches`` (global batches of pair indices): CE on the identifier tokens
    (with soft targets mixed in) + ω · the R-Drop KL of two dropout passes. ``forward`` is
    ``TeacherForcing(model, ...)``, or that wrapped for data parallelism. -> mean loss, ce, kl
    over the epoch's pairs (all replicas')."""
    device = model.tok_emb.weight.device
    omega, V = config.consistency_weight, model.cfg.vocab_size
    amp_dtype = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.autocast]
    sums = torch.zeros(4, dtype=torch.float64)  # loss, ce, kl, pairs
    model.train()
    for global_batch in batches:
        rows, weight = world.shard(global_batch)
        items = pairs.items[rows].to(device)
        targets = pairs.identifiers[items]  # (b, L)
        soft = None
        if pairs.soft is not None and config.soft_target_weight > 0:
            candidates, probs = pairs.soft
            soft = prefix_soft_targets(pairs.identifiers, items, candidates[rows], probs[rows], V)
        ce_args = (targets, model.allowed, soft, config.soft_target_weight)
        # The text memory has no dropout: built once for both R-Drop passes, which run as
        # 2 "beams" of the same target, each with its own dropout.
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if omega > 0:
                la, lb = forward(pairs.text[rows], targets, 2).float().unbind(1)
                ce = 0.5 * (identifier_ce(la, *ce_args) + identifier_ce(lb, *ce_args))
                kl = consistency_loss(la, lb, model.allowed)
            else:
                logits = forward(pairs.text[rows], targets, 1)[:, 0].float()
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
        b = len(rows) if weight else 0
        sums += torch.tensor(
            [*(float(v.detach()) * b for v in (loss, ce, kl)), b], dtype=torch.float64
        )
    loss, ce, kl, n = world.sum_(sums).tolist()
    return {"loss": loss / n, "ce": ce / n, "kl": kl / n}


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
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Train on (text, item index) pairs whose targets are ``identifiers[item]`` (N, L).

    Keeps the epoch with the best validation ``config.select_on`` (constrained beam search
    through ``trie``, built from the identifiers when not given), optionally stopping early,
    and returns (best state_dict, per-epoch history); the model is left holding the best
    weights. Without validation data the last epoch's weights are returned.
    ``soft_targets``: (candidates (P, K) item indices, -1 = none; probs (P, K)) per pair, mixed
    into the targets with weight ``config.soft_target_weight`` (see ``prefix_soft_targets``).
    ``wrap``: applied to the training forward, e.g. ``DistributedDataParallel`` under an
    initialised process group (the replicas then shard every global batch; module docstring).
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
    states = PackedTextStates(distinct, text_encoder, config.encode_batch_size, config.progress)
    pair_text = torch.tensor([text_index[t] for t in train_texts], dtype=torch.long)
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
        trie = trie or IdentifierTrie.from_tokens(identifiers)
    if soft_targets is not None:
        soft_targets = tuple(torch.as_tensor(t) for t in soft_targets)
        if len(soft_targets[0]) != len(items):
            raise ValueError(
                f"soft targets for {len(soft_targets[0])} pairs, {len(items)} pairs given"
            )
    pairs = Pairs(pair_text, items, states, identifiers.to(device), soft_targets)

    steps_per_epoch = math.ceil(len(items) / config.batch_size)
    opt, sched = make_optimizer(model, config, steps_per_epoch * config.epochs)
    scaler = torch.amp.GradScaler(device.type) if config.autocast == "fp16" else None
    forward = TeacherForcing(model, states, device)
    forward = wrap(forward) if wrap is not None else forward

    history: list[dict] = []
    best, best_state, stale = -1.0, None, 0
    bar = tqdm(
        range(1, config.epochs + 1),
        desc="train decoder",
        unit="epoch",
        disable=not config.progress or world.rank > 0,
    )
    for epoch in bar:
        started = time.perf_counter()
        batches = length_bucketed_batches(
            pairs.lengths(), config.batch_size, gen, config.bucket_pool_batches
        )
        means = train_epoch(forward, model, pairs, batches, opt, sched, config, world, scaler)
        metrics = {"epoch": epoch, **means, "lr": sched.get_last_lr()[0]}
        if do_val and (epoch % config.eval_every == 0 or epoch == config.epochs):
            rec = evaluate_recall(
                model, val_states, val_items_t, trie, config.val_beam_size, world=world
            )
            metrics.update({f"val_{k}": v for k, v in rec.items()})
            if rec[config.select_on] > best:  # ties keep the earlier epoch
                best, best_state, stale = (
                    rec[config.select_on],
                    copy.deepcopy(model.state_dict()),
                    0,
                )
                metrics["selected"] = 1.0
            else:
                stale += 1
        metrics["seconds"] = time.perf_counter() - started
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
                epoch, config.select_on, best, stale,
            )  # fmt: skip
            break

    if best_state is None:
        best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return best_state, history
