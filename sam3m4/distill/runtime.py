"""Where and how the distillation runs: device choice (cuda > mps > cpu), autocast precision, seeds, and the
process group under ``torchrun`` (nccl on CUDA, gloo otherwise).

    rank, world, local = init_distributed(cfg["device"])
    device = select_device(cfg["device"], local); seed_everything(cfg["seed"])
    with autocast(device, amp_dtype(device, cfg["amp"])): out = student(...)
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from sam3m4.errors import ConfigError


# --- device, precision, seeds -----------------------------------------------------------------------------
def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda > mps > cpu; else the named device (``cuda`` uses ``cuda:<local_rank>``)."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda requested but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device: mps requested but not available")
    return torch.device(name)


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """Autocast dtype: ``auto`` -> bf16 on CUDA (fp16 if the GPU lacks bf16), fp32 (None) on MPS and CPU;
    ``bf16`` / ``fp16`` / ``off`` force it."""
    amp = (amp or "auto").lower()
    if amp == "off" or device.type == "cpu" and amp == "auto":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None  # MPS: fp32 is the safe default; amp=fp16 opts in
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16"):
        return torch.float16
    raise ConfigError(f"amp: unknown value '{amp}' (auto, bf16, fp16, off)")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for ``dtype`` on ``device``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- distributed ------------------------------------------------------------------------------------------
def init_distributed(device_name: str = "auto") -> tuple[int, int, int]:
    """Under ``torchrun`` (WORLD_SIZE > 1): init the process group (nccl on CUDA, gloo otherwise).

    Returns (rank, world_size, local_rank); (0, 1, 0) when not distributed.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and (device_name or "auto").lower() in ("auto", "cuda")
        if use_nccl:
            torch.cuda.set_device(local % torch.cuda.device_count())
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return rank, world, local


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def broadcast_object(obj, world_size: int):
    """Rank 0's ``obj`` (any picklable value our own code built) on every rank; identity when not distributed.
    Collective: every rank calls it. Under nccl the pickled bytes travel through the rank's current GPU."""
    if world_size <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, world_size: int) -> list:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` when not distributed). Collective."""
    if world_size <= 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def mean_across_ranks(value: torch.Tensor, world_size: int) -> torch.Tensor:
    """Average a (detached) tensor over ranks; identity when not distributed."""
    if world_size <= 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size
