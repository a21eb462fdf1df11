"""Pick the compute device (CUDA, then Apple MPS, then CPU) and describe it."""

from __future__ import annotations

import contextlib
import os

from veer.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preference: str = "auto"):
    """Return a ``torch.device`` for ``preference`` (auto|cpu|cuda|cuda:N|mps)."""
    import torch

    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
        return torch.device(pref)
    if pref == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("--device mps was asked for but Apple MPS is not available; use --device auto or cpu")
        return torch.device("mps")
    if pref == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {preference!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def describe_device(device) -> str:
    """A short human description, e.g. 'CUDA GPU: NVIDIA H100' or 'CPU (2 threads)'."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def autocast(device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); a no-op elsewhere."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def set_cpu_threads(n: int | None = None) -> int:
    """Use ``n`` CPU threads (default: VEER_THREADS or all cores)."""
    import torch

    if n is None:
        env = os.environ.get("VEER_THREADS")
        n = int(env) if env else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()
