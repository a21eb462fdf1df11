"""Pick the compute device (CUDA, then Apple MPS, then CPU) and describe it."""

from __future__ import annotations

import contextlib
import os

from veer.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


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
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def describe_compute(preference: str = "auto", precision: str = "auto", backend: str = "auto") -> str:
    """The device a segmentation would run on, its arithmetic and, where it is not PyTorch,
    the engine, e.g. 'CPU (2 threads), bf16, OpenVINO 2026.4.1'."""
    from veer.openvino_engine import resolve_backend, version

    device = pick_device(preference)
    text = f"{describe_device(device)}, {resolve_precision(device, precision)}"
    if resolve_backend(device, backend, []) == "openvino":
        text += f", OpenVINO {version()}"
    return text


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX-512 BF16), where
    bf16 convolutions run faster than fp32 instead of being emulated."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails means "no"
            pass
    return False


def _cuda_half() -> str:
    """The half precision a CUDA GPU runs fastest: bf16 where it has it, else fp16."""
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def resolve_precision(device, precision: str | None = "auto") -> str:
    """The arithmetic a run on ``device`` uses: "fp32", "bf16" or "fp16".

    ``auto`` (or the ``VEER_PRECISION`` environment variable): on CUDA bf16
    where the GPU supports it, else fp16; on a CPU with native bf16 (AMX or
    AVX-512 BF16) bf16, else fp32; fp32 on Apple MPS. An explicit choice the
    device cannot honour is a ConfigError.
    """
    import torch

    device = torch.device(device)
    pref = (precision or "auto").lower()
    if pref == "auto":
        pref = os.environ.get("VEER_PRECISION", "auto").lower() or "auto"
    if pref not in PRECISION_CHOICES:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    if pref == "auto":
        if device.type == "cuda":
            return _cuda_half()
        if device.type == "cpu" and cpu_has_bf16():
            return "bf16"
        return "fp32"
    if pref == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    if pref == "bf16" and device.type == "mps":
        raise ConfigError("--precision bf16 is not supported on Apple MPS; use fp32")
    return pref


def autocast(device, precision: str | None = None):
    """The autocast context for ``device``.

    ``precision=None`` (training): mixed precision on CUDA (bf16 where
    supported, else fp16), full fp32 elsewhere. Otherwise a value from
    :func:`resolve_precision`: "fp32" is a no-op, "bf16"/"fp16" autocast on
    the device (bf16 on the CPU).
    """
    import torch

    device = torch.device(device)
    if precision is None:
        precision = _cuda_half() if device.type == "cuda" else "fp32"
    if precision == "fp32" or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


# glibc's malloc serves blocks above its mmap threshold with fresh mmap()s and
# unmaps them on free, so every large tensor pays its page faults again; and
# its dynamic threshold stops rising at 32 MiB, below a batch of full-res
# feature maps. Measured on a loaded 2-core VM: a 4-tile batch of the joint
# model in 1.36-1.56 s with the defaults, 1.07 s with these settings.
MALLOC_MMAP_THRESHOLD = 32 * 2**20   # the largest glibc accepts on 64-bit
MALLOC_TRIM_THRESHOLD = 1 * 2**30    # keep up to this much freed heap mapped
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (malloc.h)
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep the CPU's working memory mapped between tiles (glibc only).

    Raises glibc's mmap threshold to its maximum and its trim threshold to
    1 GiB with ``mallopt``, so the buffers of one batch are reused by the
    next instead of being unmapped and faulted in again. Process-wide and
    idempotent; the memory kept is what the process already peaked at. Does
    nothing (returns False) off glibc, or when ``VEER_MALLOC=default``.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("VEER_MALLOC", "").lower() == "default":
        return False
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))
    _allocator_tuned = ok
    return ok


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` has changed this process's malloc settings."""
    return bool(_allocator_tuned)


def set_cpu_threads(n: int | None = None) -> int:
    """Use ``n`` CPU threads (default: VEER_THREADS or all cores)."""
    import torch

    if n is None:
        env = os.environ.get("VEER_THREADS")
        n = int(env) if env else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()
