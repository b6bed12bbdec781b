"""Data-parallel decoder training: the node launches `torchrun`, the replicas train with DDP.

``decoder_training.distributed.nproc: N`` (N > 1) makes ``train_cart_decoder`` hand its job to
:func:`train_data_parallel`, which writes it to a folder and runs ::

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m cart_pipeline.pipelines.decoder_training.distributed JOB_FOLDER

Each process (:func:`main`) joins the process group (gloo on CPU, NCCL on CUDA, one GPU per
process), rebuilds the decoder from the job's initial weights and calls the same
``train_decoder`` with its forward wrapped in ``DistributedDataParallel``; it shards every
global batch across the replicas (core/decoder/train.py).
Rank 0 writes the best weights and the history; before that every replica compares its final
weights with rank 0's, and the launcher refuses a result whose replicas diverged. The same seed
and world size give the same checkpoint; against one process with the same global batch the
weights differ only by float summation order (and, with dropout, by which replica draws which
row's dropout mask): ``tests/core/test_decoder_distributed.py`` measures it.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from cart_pipeline.core.decoder import (
    CartDecoder,
    TrainConfig,
    decoder_from_checkpoint,
    decoder_to_checkpoint,
    train_decoder,
)

logger = logging.getLogger(__name__)


def train_data_parallel(
    nproc: int,
    model: CartDecoder,
    train_texts: list[str],
    train_items,
    identifiers: torch.Tensor,
    text_encoder_spec: dict,
    config: TrainConfig,
    val_texts: list[str] | None = None,
    val_items=None,
    soft_targets: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """``train_decoder`` in ``nproc`` torchrun processes: (best state_dict, history); ``model``
    is left holding the best weights, as ``train_decoder`` leaves it."""
    device = model.tok_emb.weight.device
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise ValueError(
            f"decoder_training.distributed.nproc is {nproc} but only "
            f"{torch.cuda.device_count()} CUDA devices are visible"
        )
    job = {
        "train_texts": list(train_texts),
        "train_items": torch.as_tensor(train_items, dtype=torch.long),
        "identifiers": torch.as_tensor(identifiers, dtype=torch.long),
        "text_encoder": dict(text_encoder_spec),
        "train_config": asdict(config),
        "val_texts": None if val_texts is None else list(val_texts),
        "val_items": None if val_items is None else torch.as_tensor(val_items, dtype=torch.long),
        "soft_targets": None
        if soft_targets is None
        else [torch.as_tensor(t) for t in soft_targets],
        "device": device.type,
    }
    with tempfile.TemporaryDirectory(prefix="cart-ddp-") as folder:
        torch.save(decoder_to_checkpoint(model.cpu(), extra=job), Path(folder) / "job.pt")
        model.to(device)
        # torchrun would set one thread per process (and warn); share this process's instead
        threads = max(1, torch.get_num_threads() // nproc)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += [f"--nproc_per_node={nproc}", "-m", __name__, folder]
        logger.info(
            "decoder: data-parallel training in %d processes (%s)", nproc, " ".join(command)
        )
        done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if done.returncode != 0:
            raise RuntimeError(
                f"data-parallel decoder training failed (torchrun exit {done.returncode}); "
                "its processes' errors are above"
            )
        result = torch.load(Path(folder) / "result.pt", weights_only=True)
    if result["replica_max_abs_diff"] != 0.0:
        raise RuntimeError(
            "data-parallel replicas ended with different weights "
            f"(max |difference| {result['replica_max_abs_diff']:.3g}); not saving either"
        )
    model.load_state_dict(result["state_dict"])
    return result["state_dict"], result["history"]


def main(folder: str) -> None:
    """One replica, as started by torchrun (RANK, LOCAL_RANK, WORLD_SIZE in the environment)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from cart_pipeline.pipelines.encoders import load_encoder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    checkpoint = torch.load(Path(folder) / "job.pt", weights_only=True)
    device_type = checkpoint["extra"]["device"]
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_type)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        model, job = decoder_from_checkpoint(checkpoint, map_location=device)
        config = TrainConfig(**job["train_config"])

        def data_parallel(forward: torch.nn.Module) -> torch.nn.Module:
            # no buffer sync per forward: the only buffers are the constant position masks
            return DistributedDataParallel(
                forward,
                device_ids=[device] if device.type == "cuda" else None,
                forward_sync_buffers=False,
            )

        best, history = train_decoder(
            model.train(),
            job["train_texts"],
            job["train_items"],
            job["identifiers"],
            load_encoder(job["text_encoder"], device),
            config,
            val_texts=job["val_texts"],
            val_items=job["val_items"],
            soft_targets=job["soft_targets"],
            wrap=data_parallel,
        )
        # every replica must hold rank 0's weights: compare, then take the largest difference
        diff = torch.zeros((), dtype=torch.float64, device=device)
        for value in best.values():
            reference = value.detach().clone()
            dist.broadcast(reference, src=0)
            if value.is_floating_point():
                diff = torch.maximum(diff, (reference - value).abs().max().double())
            elif not torch.equal(reference, value):
                diff = torch.full_like(diff, float("inf"))
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        if dist.get_rank() == 0:
            state = {k: v.cpu() for k, v in best.items()}
            result = {"state_dict": state, "history": history, "replica_max_abs_diff": float(diff)}
            torch.save(result, Path(folder) / "result.pt")
        dist.barrier()  # no collective is in flight when the group goes
    finally:
        # DDP's reducer sits in reference cycles; collected only at interpreter exit it would
        # keep the gloo group alive into finalisation, where a C++ thread taking the GIL aborts
        # the process ("terminate called without an active exception", seen once in CI)
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    # skip interpreter finalisation for the same reason: the result is on disk, nothing is left
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
