"""A compact residual-quantised VAE (RQ-VAE) for CART's fine tokens.

In CART the input is the K-Means residual ``x - centroid[k]`` of each candidate (docs/architecture.md); the
RQ-VAE turns it into M codes v1..vM, one per codebook. Layout follows lucidrains'
vector-quantize-pytorch, one module per idea:

    RQVAE:  x (B, D) -standardise-> MLP encoder -> z (B, d) -> ResidualQuantizer -> q (B, d)
            -> MLP decoder -> x_hat (B, D)
    ResidualQuantizer: r_0 = z;  c_l = argmin_k ||r_l - e_l[k]||;  r_{l+1} = r_l - e_l[c_l]
    EMACodebook: one level's K code vectors, updated by exponential moving averages.

Design choices (why):
- EMA codebooks (VQ-VAE-2, SoundStream) rather than a codebook loss: no learning rate to tune
  for the codes, and a code moves exactly to the mean of what it was assigned, which is stable
  with small batches. The encoder still gets the commitment loss beta·||r_l - sg(e_l[c_l])||^2
  per level, and the decoder's gradient reaches the encoder through one straight-through
  estimator on the summed quantisation (not one per level, which would scale it by M).
- Codebooks start from k-means of the first batch's residuals, level by level, so no code
  starts out in empty space.
- Dead codes: each code keeps an EMA of its share of assignments. A code whose share falls below
  ``dead_code_threshold / K`` (a fraction of the uniform share) is re-seeded with a random
  residual of the current batch and given a full uniform share back, which is a grace period
  of about ln(1/threshold) / (1 - ema_decay) steps before it can be declared dead again.
  Shares (not counts) make the rule independent of the batch size.
- Inputs are centred and divided by one global RMS (buffers saved with the model): residuals
  of unit vectors are small, and this puts the reconstruction loss on a scale of ~1 without
  re-weighting dimensions the way a per-dimension z-score would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cart_pipeline.core.checkpoint import read_checkpoint, to_checkpoint
from cart_pipeline.core.config import check_settings, setting
from cart_pipeline.core.quantize.kmeans import fit_kmeans
from cart_pipeline.core.seeding import seed_everything

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cart-rqvae/1"


@dataclass(frozen=True)
class RQVAEConfig:
    codebook_size: int  # K codes per level (the stage resolves `auto` from the corpus size)
    input_dim: int | None = None  # None: taken from the data by train_rqvae
    latent_dim: int = setting(64, ge=1)
    hidden_dims: tuple[int, ...] = setting((256, 128))
    n_levels: int = setting(3, ge=1)  # M codebooks = M fine tokens
    beta: float = setting(0.25, ge=0)  # commitment weight
    ema_decay: float = setting(0.99, gt=0, lt=1)
    epochs: int = setting(100, ge=1)
    batch_size: int = setting(64, ge=1)
    lr: float = setting(1e-3, gt=0)
    # dead when EMA share < threshold / K; 0 disables restarts
    dead_code_threshold: float = setting(0.25, ge=0)
    # Train on a seeded sample of at most this many rows (None = all); every row is still
    # encoded. Bounds training time and memory on corpora of millions of items.
    train_max_items: int | None = setting(None, ge=1)
    kmeans_init: bool = True
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        check_settings(self, "rqvae_quantization")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)  # plain types only: weights_only checkpoints
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RQVAEConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def usage_and_perplexity(codes: np.ndarray | torch.Tensor, size: int) -> tuple[float, float]:
    """Share of the K codes used at least once, and exp(entropy) of the code histogram."""
    return _usage_perplexity(np.bincount(np.asarray(codes, dtype=np.int64).ravel(), minlength=size))


def _usage_perplexity(counts: np.ndarray) -> tuple[float, float]:
    p = counts[counts > 0] / max(counts.sum(), 1)
    return float((counts > 0).mean()), float(np.exp(-(p * np.log(p)).sum()))


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class EMACodebook(nn.Module):
    """One quantisation level: K vectors of dimension d, moved by EMA, with dead-code restarts."""

    def __init__(self, size: int, dim: int, decay: float, dead_threshold: float, eps: float = 1e-5):
        super().__init__()
        self.size, self.decay, self.dead_threshold, self.eps = size, decay, dead_threshold, eps
        self.register_buffer("embed", torch.randn(size, dim) * 0.01)  # (K, d) the codes
        self.register_buffer("embed_sum", self.embed / size)  # (K, d) EMA of per-batch mean-sums
        self.register_buffer("usage", torch.full((size,), 1.0 / size))  # (K,) EMA of shares
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, r: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B,) index of the closest code (squared L2; ties -> lowest index)."""
        dist = r.pow(2).sum(1, keepdim=True) - 2 * r @ self.embed.T + self.embed.pow(2).sum(1)
        return dist.argmin(1)

    @torch.no_grad()
    def init_kmeans(self, r: torch.Tensor, seed: int) -> None:
        """Codes := k-means centroids of the residuals r (B, d); usage := their cluster shares."""
        x = r.detach().cpu().numpy()
        if len(x) >= self.size:
            km = fit_kmeans(
                x, self.size, seed=seed, method="full", n_init=1, normalize=False, verbose=False
            )
            self.embed.copy_(torch.from_numpy(km.centroids))
        else:  # fewer points than codes: start from samples; the unused ones restart later
            self.embed.copy_(r[np.random.default_rng(seed).integers(0, len(x), self.size)])
        share = torch.bincount(self.nearest(r), minlength=self.size).float() / len(r)
        self.usage.copy_(share)
        self.embed_sum.copy_(self.embed * share[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def ema_update(self, r: torch.Tensor, codes: torch.Tensor) -> int:
        """Move codes toward the mean of their assigned residuals; restart dead ones.

        r (B, d) residuals entering this level, codes (B,). Returns the number of restarts.
        """
        onehot = F.one_hot(codes, self.size).to(r.dtype)  # (B, K)
        self.usage.lerp_(onehot.mean(0), 1 - self.decay)  # (K,) EMA of share of the batch
        self.embed_sum.lerp_(onehot.T @ r / len(r), 1 - self.decay)  # (K, d)
        # Laplace smoothing keeps e = sum / share finite for codes that got (almost) nothing.
        smoothed = (self.usage + self.eps) / (1 + self.size * self.eps)
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        if self.dead_threshold <= 0:
            return 0
        dead = self.usage < self.dead_threshold / self.size  # (K,) bool
        n_dead = int(dead.sum())
        if n_dead:
            fresh = r[torch.randint(len(r), (n_dead,), device=r.device)]  # (n_dead, d)
            self.embed[dead] = fresh
            self.usage[dead] = 1.0 / self.size  # grace period: a full uniform share
            self.embed_sum[dead] = fresh / self.size
        return n_dead


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (B, d) straight-through: value of sum of codes, gradient of z
    codes: torch.Tensor  # (B, M) int64
    commit_loss: torch.Tensor  # () sum over levels of ||r_l - sg(e_l[c_l])||^2 (mean over elems)
    restarts: list[int] = field(default_factory=list)  # dead codes re-seeded per level


class ResidualQuantizer(nn.Module):
    """M EMA codebooks; level l quantises what levels < l left over."""

    def __init__(self, n_levels: int, size: int, dim: int, decay: float, dead_threshold: float):
        super().__init__()
        self.levels = nn.ModuleList(
            EMACodebook(size, dim, decay, dead_threshold) for _ in range(n_levels)
        )

    @property
    def initialized(self) -> bool:
        return all(bool(level.initialized) for level in self.levels)

    @torch.no_grad()
    def init_codebooks(self, z: torch.Tensor, seed: int) -> None:
        """k-means init of every level, each on the residuals the levels before it leave."""
        residual = z.detach()  # (B, d)
        for i, level in enumerate(self.levels):
            level.init_kmeans(residual, seed + i)
            residual = residual - level.embed[level.nearest(residual)]

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, M) codes; no state changes."""
        residual, codes = z, []
        for level in self.levels:
            c = level.nearest(residual)  # (B,)
            residual = residual - level.embed[c]
            codes.append(c)
        return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """(B, M) codes -> (B, d) sum of the first n_levels (default all) levels' vectors."""
        levels = list(self.levels)[: n_levels or len(self.levels)]
        return sum(level.embed[codes[:, i]] for i, level in enumerate(levels))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:  # z (B, d)
        if self.training and not self.initialized:  # lazily: k-means on the first batch
            self.init_codebooks(z, seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        residual, quantized = z, torch.zeros_like(z)
        codes, restarts, commit = [], [], z.new_zeros(())
        for level in self.levels:
            c = level.nearest(residual.detach())  # (B,)
            q = level.embed[c]  # (B, d) a copy: the EMA update below cannot alter it
            commit = commit + F.mse_loss(residual, q)  # grad reaches z through residual only
            if self.training:
                restarts.append(level.ema_update(residual.detach(), c))
            residual = residual - q  # q is a buffer (no grad): r_{l+1} has d/dz = I
            quantized = quantized + q
            codes.append(c)
        quantized = z + (quantized - z).detach()  # one straight-through estimator
        return QuantizerOutput(quantized, torch.stack(codes, 1), commit, restarts)


@dataclass
class RQVAEOutput:
    recon: torch.Tensor  # (B, D) in standardised units
    codes: torch.Tensor  # (B, M)
    recon_loss: torch.Tensor  # ()
    commit_loss: torch.Tensor  # ()
    loss: torch.Tensor  # () recon + beta * commit
    restarts: list[int]


class RQVAE(nn.Module):
    """MLP encoder -> residual quantiser -> MLP decoder, reconstructing the input."""

    def __init__(self, config: RQVAEConfig):
        super().__init__()
        if not config.input_dim:
            raise ValueError("RQVAEConfig.input_dim must be set to build a model")
        self.config = config
        c = config
        self.encoder = mlp([c.input_dim, *c.hidden_dims, c.latent_dim])
        self.quantizer = ResidualQuantizer(
            c.n_levels, c.codebook_size, c.latent_dim, c.ema_decay, c.dead_code_threshold
        )
        self.decoder = mlp([c.latent_dim, *reversed(c.hidden_dims), c.input_dim])
        self.register_buffer("input_mean", torch.zeros(c.input_dim))  # (D,)
        self.register_buffer("input_scale", torch.ones(()))  # () global RMS after centring

    @torch.no_grad()
    def set_input_stats(self, x: torch.Tensor) -> None:
        mean = x.mean(0)
        self.input_mean.copy_(mean)
        self.input_scale.copy_((x - mean).pow(2).mean().sqrt().clamp_min(1e-8))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_scale

    def forward(self, x: torch.Tensor) -> RQVAEOutput:  # x (B, D) raw
        xs = self.standardise(x)
        qo = self.quantizer(self.encoder(xs))
        recon = self.decoder(qo.quantized)  # (B, D)
        recon_loss = F.mse_loss(recon, xs)
        loss = recon_loss + self.config.beta * qo.commit_loss
        return RQVAEOutput(recon, qo.codes, recon_loss, qo.commit_loss, loss, qo.restarts)

    def _batches(self, x: np.ndarray, batch_size: int):
        for s in range(0, len(x), batch_size):
            yield torch.from_numpy(np.ascontiguousarray(x[s : s + batch_size], dtype=np.float32))

    @torch.inference_mode()
    def encode_codes(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """(N, D) -> (N, M) int64 codes."""
        codes = [
            self.quantizer.encode(self.encoder(self.standardise(b)))
            for b in self._batches(x, batch_size)
        ]
        return torch.cat(codes).numpy() if codes else np.zeros((0, self.config.n_levels), np.int64)

    @torch.inference_mode()
    def reconstruct(
        self, x: np.ndarray, n_levels: int | None = None, batch_size: int = 8192
    ) -> np.ndarray:
        """(N, D) -> (N, D) decoder output from the first n_levels codes, in input units."""
        out = []
        for b in self._batches(x, batch_size):
            codes = self.quantizer.encode(self.encoder(self.standardise(b)))
            xs_hat = self.decoder(self.quantizer.decode(codes, n_levels))
            out.append(xs_hat * self.input_scale + self.input_mean)
        return torch.cat(out).numpy()


def train_rqvae(
    x: np.ndarray,
    config: RQVAEConfig,
    on_epoch: Callable[[int, dict], None] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[RQVAE, list[dict]]:
    """Train an RQ-VAE on x (N, D) on ``device``; returns the model (eval mode, on the CPU,
    where encoding and checkpoints happen) and one metrics dict per epoch.

    History keys: epoch, loss, recon_loss, commit_loss, and per level l = 1..M: usage_l{l}
    (share of the K codes used in the epoch), perplexity_l{l}, restarts_l{l}.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    if config.input_dim is None:
        config = replace(config, input_dim=dim)
    if config.input_dim != dim:
        raise ValueError(f"config.input_dim={config.input_dim} but data has {dim} columns")
    seed_everything(config.seed)
    model = RQVAE(config).to(device)
    xt = torch.from_numpy(x).to(device)  # (N, D): a no-op on the CPU
    model.set_input_stats(xt)
    gen = torch.Generator().manual_seed(config.seed)  # data order: independent of other RNG use
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    bs = min(config.batch_size, n)
    n_batches = max(n // bs, 1)  # drop the ragged tail: a tiny batch makes a noisy EMA step
    k, m = config.codebook_size, config.n_levels

    model.train()
    if config.kmeans_init:
        # The "first batch", enlarged to >= 16 points per code so k-means has something to fit.
        first = torch.randperm(n, generator=gen)[: min(n, max(bs, 16 * k))].to(device)
        with torch.no_grad():
            model.quantizer.init_codebooks(model.encoder(model.standardise(xt[first])), config.seed)
    else:  # mark as initialised: keep the random codes
        for level in model.quantizer.levels:
            level.initialized.fill_(True)

    history: list[dict] = []
    log_every = max(1, config.epochs // 10)
    for epoch in range(1, config.epochs + 1):
        perm = torch.randperm(n, generator=gen).to(device)  # drawn on the CPU: same order anywhere
        sums = np.zeros(3)
        counts = np.zeros((m, k), dtype=np.int64)
        restarts = np.zeros(m, dtype=np.int64)
        for b in range(n_batches):
            out = model(xt[perm[b * bs : (b + 1) * bs]])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sums += [out.loss.item(), out.recon_loss.item(), out.commit_loss.item()]
            for level in range(m):
                counts[level] += np.bincount(out.codes[:, level].cpu().numpy(), minlength=k)
            restarts += out.restarts
        loss, recon_loss, commit_loss = (sums / n_batches).tolist()
        row = {"epoch": epoch, "loss": loss, "recon_loss": recon_loss, "commit_loss": commit_loss}
        for level in range(m):
            usage, ppl = _usage_perplexity(counts[level])
            row[f"usage_l{level + 1}"], row[f"perplexity_l{level + 1}"] = usage, ppl
            row[f"restarts_l{level + 1}"] = int(restarts[level])
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
        if epoch % log_every == 0 or epoch == config.epochs:
            logger.info(
                "rq-vae epoch %d/%d loss %.4f recon %.4f commit %.4f usage %s",
                epoch,
                config.epochs,
                row["loss"],
                row["recon_loss"],
                row["commit_loss"],
                [round(row[f"usage_l{i + 1}"], 2) for i in range(m)],
            )
    return model.cpu().eval(), history


def rqvae_diagnostics(model: RQVAE, x: np.ndarray) -> dict:
    """Flat scalar metrics on x (N, D): how much of x the codes explain, and how codes are used.

    recon_mse vs zero_mse (predicting all zeros, i.e. "the centroid alone" for CART residuals);
    explained_variance = 1 - recon_mse / var(x), also with only the first l levels
    (explained_variance_at_l{l}) to show what each level adds.
    """
    x = np.asarray(x, dtype=np.float32)
    codes = model.encode_codes(x)  # (N, M)
    var = float(((x - x.mean(0)) ** 2).mean())
    out: dict = {"n_items": len(x), "zero_mse": float((x**2).mean()), "variance": var}
    for level in range(1, model.config.n_levels + 1):
        mse = float(((x - model.reconstruct(x, n_levels=level)) ** 2).mean())
        out[f"explained_variance_at_l{level}"] = 1 - mse / var
    out["recon_mse"] = mse
    out["explained_variance"] = 1 - mse / var
    for level in range(codes.shape[1]):
        usage, ppl = usage_and_perplexity(codes[:, level], model.config.codebook_size)
        out[f"usage_l{level + 1}"], out[f"perplexity_l{level + 1}"] = usage, ppl
    out["distinct_code_tuples"] = int(len(np.unique(codes, axis=0)))
    return out


def rqvae_to_checkpoint(model: RQVAE) -> dict:
    return to_checkpoint(CHECKPOINT_FORMAT, model.config.to_dict(), model)


def rqvae_from_checkpoint(checkpoint: dict) -> RQVAE:
    config, state_dict, _ = read_checkpoint(checkpoint, CHECKPOINT_FORMAT)
    model = RQVAE(RQVAEConfig.from_dict(config))
    model.load_state_dict(state_dict)
    return model.eval()
