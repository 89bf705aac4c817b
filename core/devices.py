"""Which device runs a model: the one place that asks torch what this machine has."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device was asked for that this machine does not have; the message says what to use."""


def device_available(device: str) -> bool:
    """Whether this process can run models on `device` ('cpu', 'cuda', 'mps')."""
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available()
    return device == "cpu"


def pick_device(requested: str = "auto") -> str:
    """cuda, then mps, then cpu, unless the caller asked for one."""
    if requested != "auto":
        return requested
    return next(device for device in ("cuda", "mps", "cpu") if device_available(device))


def require_device(requested: str) -> str:
    """The device to run on; asking for one this machine lacks is an error now, not a crash later."""
    device = pick_device(requested)
    if not device_available(device):
        raise DeviceError(f"--device {device}: no such device is available here. Use --device auto or cpu.")
    return device


def local_device(device: str) -> str:
    """Where this process loads a model for `device` work done elsewhere (a Ray driver without the
    cluster's GPUs): the device itself when present here, else the CPU."""
    return device if device_available(device) else "cpu"


def set_cpu_threads(threads: int) -> None:
    """Intra-op threads of this process's models (a server's VITRINE_TORCH_THREADS, see the README's API section)."""
    torch.set_num_threads(threads)
