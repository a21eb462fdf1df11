"""The segmenter: whole scanned logs of any size, fast, in bounded memory.

A 200-dpi log is about 1664 x 17864 px (30 Mpx). :class:`Segmenter` loads a
pipeline's weights once (the joint 3-class model, or the three binary models
whose masks are stitched by :func:`veer.stitch.stitch`) and runs any image:

Tiles
    The image is covered by a grid of equal, overlapping tiles. Per axis the
    tile is at most ``tile`` px; the number of tiles is the fewest that cover
    the axis with at least ``overlap * tile`` px of overlap, and the tile is
    then shrunk to the smallest multiple of the model's stride that still
    gives that overlap (so a 1664 px wide log takes four 464->480 px columns,
    not four 512 px ones: less wasted compute). An axis shorter than a tile
    is one tile of exactly its length (the model pads internally).

Blending
    Each tile's class probabilities are weighted by a Gaussian map
    (sigma = tile / 8 per axis, peak 1, as nnU-Net and MONAI do), summed,
    and divided by the summed weights. Tile borders, where the network sees
    least context, count least; there are no seams. Joint: softmax of the
    logits; separate: the three independent sigmoid probabilities.

Mirror view
    By default (``flip=True``) every tile is also run mirrored left to right
    in the same batch, and the two views' probabilities are averaged (the
    mirror is mapped back first). The models were trained with that flip as
    an augmentation and a mirrored log keeps each curve's class (the line
    style does not change), so the second view is a second opinion: it
    costs twice the network work and gave the joint model +0.005 / +0.011
    F1 (curve1 / curve2) on the 30 evaluation logs of the README's results.
    ``flip=False`` (``--no-flip``) runs one view. ``views=4`` (``--views 4``)
    adds the tile upside down and upside down mirrored: a log read from the
    bottom keeps its line styles too, although training never turned one
    over. On the 30 evaluation logs that gave the joint model +0.003 / +0.005
    F1 (0.9047 / 0.8533 against 0.9017 / 0.8484 with two views) for twice
    the network work, so two views stay the default.

Scales
    ``scales`` (``--scales 1,1.3``) also runs every tile enlarged (bicubic)
    by each scale other than 1, through the same views, and brings those
    probabilities back to the tile's own grid (bilinear, anti-aliased)
    before averaging them in with equal weight. The shipped networks are
    narrow at full resolution, and a stroke one or two pixels wide is easier
    for them drawn a little larger: on the 30 evaluation logs, scales 1 and
    1.3 gave the joint model curve1 / curve2 F1 0.915 / 0.871 against
    0.911 / 0.864 with the tile as it is, and tolerant curve2 F1 0.954
    against 0.951 (earlier weights: 0.913 / 0.867 against 0.909 / 0.860).
    Chosen on 12 other logs (seeds 21,000,000-21,000,011):
    1 + 1.2, 1 + 1.3 and 1 + 1.4 were within 0.0015 F1 of each other, 1.4
    alone worse than 1, 0.85 worse still. A scale s costs s squared of a
    pass, so 1 + 1.3 is 2.7 times the network work; the default stays 1,
    which keeps the 30-Mpx log inside its time target.
    ``scale_views`` (``--scale-views 1``) runs the enlarged tile in fewer
    views than the tile as it is: with 2 views at 1 and one at 1.3 the
    pass count per tile is 2 + 1.69 = 3.69 instead of 5.38, and on the 30
    evaluation logs the joint model kept most of the scale's gain (mean F1
    of the three classes 0.9293 against 0.9298 with both views at 1.3 and
    0.9261 with the tile as it is); 1.2 or 1.4 in one view gave 0.9287 and
    0.9293. The scales' probabilities are averaged with equal weight
    whatever their views.

Bands
    Tiles run in row-major order in batches. Rows are finished (normalised,
    labelled, stitched) as soon as no later tile reaches them, ``band_rows``
    rows at a time, from a small rolling accumulator. Nothing is ever held
    for the whole image except the uint8 label map (and, on request, the
    probabilities: float32 by default, float16 or uint8 to save memory).
    The result does not depend on ``band_rows``: each pixel sums the same
    tiles in the same order.

Backend
    On the CPU the networks run through OpenVINO by default
    (:mod:`veer.openvino_engine`; ``backend="auto"``, ``--backend``,
    ``VEER_BACKEND``): each tile and its mirror are single-image requests on
    two inference streams, compiled once per tile shape. On the project's
    2-core Zen 4 machine that took the 30-Mpx log from 16.6 s to 9.3 s end to
    end (bf16), 2.6x the naive way's speed on the same tiles where PyTorch
    reached 1.3x. Without OpenVINO, on CUDA or MPS, and for networks that are
    not VeerNets, PyTorch runs them as below (``backend="torch"``).

Speed (PyTorch)
    ``torch.inference_mode``, channels-last tensors, batched tiles, and
    mixed precision (``precision="auto"``, :func:`veer.device.resolve_precision`):
    bf16 or fp16 on CUDA, bf16 on CPUs that compute it natively (AMX or
    AVX-512 BF16; labels agree with fp32 on 99.99 % of pixels of the bundled
    samples), fp32 elsewhere. On CPU with bf16 each batch of 4 tiles is
    split between ``workers`` threads (default 2) with one intra-op thread
    each on a 2-core machine: measured 1.1-1.6x faster than one 2-thread
    caller on a shared CPU (see :func:`_worker_pool`). In fp32 the batches
    are of 2 tiles, one per worker (``CPU_FP32_BATCH``), faster there. On the CPU glibc's malloc is told
    to keep freed memory mapped (:func:`veer.device.tune_cpu_allocator`):
    otherwise every large activation is mapped afresh and page-faulted in,
    and the 30-Mpx log took 30.2 s instead of 25.2 s (same run of the
    bench, AVX2 EPYC, fp32, 768 px tiles one per pass). The device is picked automatically (CUDA, then
    Apple MPS, then CPU) or forced.

Threads
    :meth:`Segmenter.segment` is safe to call from many threads at once and
    gives the same result as a single caller. A process-wide gate bounds how
    many run at the same time (``VEER_MAX_CONCURRENT``; default 1 on CPU,
    where concurrent runs only split the same cores, 2 when a CUDA GPU is
    present); the others wait, and ``on_queued`` / :func:`queue_status` let
    the dashboard tell a user they are queued. A ``threading.Event`` passed
    as ``cancel`` stops a run (also while it is queued) with
    :class:`Cancelled`.

The CLI verb ``segment`` lives here as well (see :func:`add_arguments`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from veer.errors import ConfigError, ImageReadError, VeerError, one_line

MODES = ("joint", "separate")
# largest tile side: on the 30 evaluation logs the joint model scored curve1 / curve2 F1
# 0.9015 / 0.8484 with 512 px tiles, 0.9009 / 0.8477 with 384 and 0.9001 / 0.8448 with 768,
# tiles that also took 10 % longer on the 30-Mpx log (the bottleneck attention costs more per pixel in a larger tile)
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 0.125
DEFAULT_BAND_ROWS = 1024
DEFAULT_BATCH = {"cpu": 4, "cuda": 16, "mps": 4}
# Without native bf16 a CPU runs fp32, and there small batches win: on a 2-core AVX2
# EPYC, 378 ms per 768 px tile with batches of 4 over the two workers, 280 with 2 (one
# tile per worker), 261 with one tile on a 2-thread team. One tile per pass is slower
# when the caller is not the main thread (every dashboard session): 1.70 s against
# 1.17 s with batches of 2 for the bundled colour sample, so 2 it is.
CPU_FP32_BATCH = 2
PROBS_DTYPES = ("float32", "float16", "uint8")
VIEW_CHOICES = (1, 2, 4)   # as it is; and mirrored; and both upside down too
VIEW_FLIPS = ((), (3,), (2,), (2, 3))   # the axes each view flips: none, width, height, both
# Scales each tile also runs at (enlarged, then the probabilities brought back): see "Scales"
# in the module's docstring. (1.0,) runs the tile as it is only.
DEFAULT_SCALES = (1.0,)
SCALE_RANGE = (0.5, 2.0)
DEFAULT_CPU_WORKERS = 2  # threads that each run part of a batch through the network on CPU
# A curve1 pixel whose curve2 probability reaches this is traced for both curves (``shared``):
# the models' commonest confusion is a dash of curve2 labelled as the solid curve1 where the two
# run close. On the 30 evaluation logs, tracing those pixels for curve2 too puts more of its rows
# within 3 px (see the README's digitiser section).
SHARED_AT = 0.1

ProgressFn = Callable[[int, int], None]


class Cancelled(VeerError):
    """A segmentation was cancelled through its ``cancel`` event."""


# --------------------------------------------------------------------------- results


@dataclass
class SegmentResult:
    """What :meth:`Segmenter.segment` returns.

    ``probs`` (only with ``return_probs``) is (3, H, W): softmax probabilities
    for the joint pipeline, the three independent sigmoid probabilities for
    the separate one; float32 unless another dtype was asked for (uint8 holds
    round(p * 255)). ``conflict`` is the stitching conflict map of the
    separate pipeline (0 agreed, 1 claimed by two or more masks, 2 by none).
    ``shared`` (bool (H, W)) marks the curve1 pixels whose curve2
    probability reaches :data:`SHARED_AT`; the digitiser traces them for
    both curves (``veer.digitize.trace_curves(shared=...)``).
    """

    labels: np.ndarray
    probs: np.ndarray | None
    conflict: np.ndarray | None
    mode: str
    device: str
    seconds: float
    tiles: int
    shared: np.ndarray | None = None


# --------------------------------------------------------------------------- tiling


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go. Every tile is ``tile_h`` x ``tile_w``."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def n_tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def origins(self) -> list[tuple[int, int]]:
        """Top-left corners in row-major order (the processing order)."""
        return [(y, x) for y in self.ys for x in self.xs]

    @property
    def compute_factor(self) -> float:
        """Pixels the network evaluates per image pixel (1.0 = no overlap)."""
        return self.n_tiles * self.tile_h * self.tile_w / float(self.height * self.width)


def _axis_plan(length: int, tile: int, overlap: float, align: int) -> tuple[int, list[int]]:
    """(tile size, start positions) covering ``length`` px; see the module docstring."""
    if length <= tile:
        return length, [0]
    min_overlap = int(math.ceil(overlap * tile))
    n = int(math.ceil((length - min_overlap) / (tile - min_overlap)))
    size = int(math.ceil((length + (n - 1) * min_overlap) / n))
    size = min(tile, int(math.ceil(size / align) * align), length)
    starts = np.rint(np.linspace(0, length - size, n)).astype(int)
    return size, [int(s) for s in starts]


def plan_tiles(height: int, width: int, tile: int | tuple[int, int] = DEFAULT_TILE,
               overlap: float = DEFAULT_OVERLAP, align: int = 16) -> TilePlan:
    """The tile grid for an image of ``height`` x ``width`` px.

    ``tile`` is the largest tile (one int, or (height, width)); ``overlap`` the
    least overlap between neighbours as a fraction of ``tile``; ``align`` the
    multiple tile sides are rounded up to (the network's stride).
    """
    th, tw = (tile, tile) if isinstance(tile, (int, np.integer)) else tile
    size_h, ys = _axis_plan(int(height), int(th), overlap, max(1, int(align)))
    size_w, xs = _axis_plan(int(width), int(tw), overlap, max(1, int(align)))
    return TilePlan(int(height), int(width), size_h, size_w, tuple(ys), tuple(xs))


def gaussian_weights(tile_h: int, tile_w: int, sigma_scale: float = 1 / 8) -> np.ndarray:
    """float32 (tile_h, tile_w) Gaussian importance map, peak 1 at the centre.

    sigma = tile * ``sigma_scale`` per axis. The smallest weights (corners,
    about 1e-7) stay positive so every pixel has a defined average.
    """
    def axis(n: int) -> np.ndarray:
        sigma = max(n * sigma_scale, 1e-6)
        c = (n - 1) / 2.0
        return np.exp(-0.5 * ((np.arange(n) - c) / sigma) ** 2)

    w = np.outer(axis(tile_h), axis(tile_w))
    w /= w.max()
    return np.maximum(w, 1e-12).astype(np.float32)


# --------------------------------------------------------------------------- concurrency gate


def _default_max_concurrent() -> int:
    env = os.environ.get("VEER_MAX_CONCURRENT")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"VEER_MAX_CONCURRENT={env!r} is not a whole number") from None
    try:
        import torch

        return 2 if torch.cuda.is_available() else 1
    except Exception:  # noqa: BLE001 - no torch: the caller fails later with a clear error
        return 1


class _Gate:
    """Bounds how many segmentations run at once in this process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.limit: int | None = None  # resolved lazily (reads the environment)
        self.running = 0
        self.waiting = 0

    def _limit(self) -> int:
        if self.limit is None:
            self.limit = _default_max_concurrent()
        return self.limit

    def set_limit(self, n: int) -> None:
        with self._cond:
            self.limit = max(1, int(n))
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self, cancel: threading.Event | None,
             on_queued: Callable[[int], None] | None) -> Iterator[None]:
        position = 0
        with self._cond:
            if self.running >= self._limit():
                self.waiting += 1
                position = self.waiting
        if position:
            try:
                if on_queued is not None:
                    on_queued(position)
                with self._cond:
                    while self.running >= self._limit():
                        if cancel is not None and cancel.is_set():
                            raise Cancelled("segmentation cancelled while queued")
                        self._cond.wait(timeout=0.05)
                    self.running += 1
            finally:
                with self._cond:
                    self.waiting -= 1
        else:
            with self._cond:  # a slot could have gone in between: wait briefly if so
                while self.running >= self._limit():
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("segmentation cancelled while queued")
                    self._cond.wait(timeout=0.05)
                self.running += 1
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._cond.notify_all()


_GATE = _Gate()


def queue_status() -> dict[str, int]:
    """{"running", "queued", "limit"}: segmentations running and waiting in this process."""
    with _GATE._cond:
        return {"running": _GATE.running, "queued": _GATE.waiting, "limit": _GATE._limit()}


def set_max_concurrent(n: int) -> None:
    """Change how many segmentations may run at once (default: VEER_MAX_CONCURRENT)."""
    _GATE.set_limit(n)


_POOLS: dict[int, Any] = {}
_POOLS_LOCK = threading.Lock()


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker_pool(n: int):
    """A process-wide pool of ``n`` threads that run batch chunks through the network.

    Each worker uses ``cores // n`` intra-op threads (1 on a 2-core machine).
    On a CPU shared with other work this is much faster than one caller with
    a 2-thread OpenMP team, whose every parallel region waits for the slowest
    thread. Note that ``torch.set_num_threads`` in the workers also sets
    torch's default for threads created later in the process.
    """
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // n)
    with _POOLS_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            pool = _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="veer-infer",
                                                  initializer=_init_worker, initargs=(threads,))
        return pool


# --------------------------------------------------------------------------- the segmenter


def views_for(flip: bool = True, views: int | None = None) -> int:
    """Network passes per tile: ``views`` when given (1, 2 or 4), else 2 (1 when ``flip`` is False)."""
    views = (2 if flip else 1) if views is None else int(views)
    if views not in VIEW_CHOICES:
        raise ConfigError(f"views must be one of {', '.join(map(str, VIEW_CHOICES))}, got {views}")
    return views


def scales_for(scales: Any = None) -> tuple[float, ...]:
    """The scales a tile runs at, as a sorted tuple: ``None`` gives :data:`DEFAULT_SCALES`.

    Accepts a sequence of numbers or a comma-separated string ("1,1.3").
    Each must lie in :data:`SCALE_RANGE`; repeats are dropped.
    """
    if scales is None:
        return DEFAULT_SCALES
    if isinstance(scales, str):
        parts = [p.strip() for p in scales.split(",") if p.strip()]
    elif isinstance(scales, (int, float)):
        parts = [scales]
    else:
        parts = list(scales)
    try:
        values = sorted({round(float(p), 4) for p in parts})
    except (TypeError, ValueError):
        raise ConfigError(f"scales must be numbers such as 1,1.3, got {scales!r}") from None
    lo, hi = SCALE_RANGE
    if not values or any(not (lo <= v <= hi) for v in values):
        raise ConfigError(f"each scale must lie in [{lo}, {hi}], got {scales!r}")
    return tuple(values)


def scale_views_for(scale_views: int | None, views: int, scales: Sequence[float]) -> int:
    """Network passes per tile at every scale other than 1: ``scale_views`` when given (1, 2 or 4),
    else ``views`` (the same views at every scale). ``views`` too where ``scales`` holds no scale
    other than 1, for then there is nothing for ``scale_views`` to change."""
    if scale_views is None:
        return int(views)
    scale_views = views_for(True, scale_views)
    return scale_views if multi_scale(scales) else int(views)


def multi_scale(scales: Sequence[float] | None) -> bool:
    """Whether ``scales`` (a tuple, or a report's list; None: the default) run any tile at a
    scale other than 1."""
    return tuple(float(v) for v in (scales or DEFAULT_SCALES)) != DEFAULT_SCALES


def scales_text(scales: Sequence[float], views: int | None = None, scale_views: int | None = None) -> str:
    """Scales as the reports write them: "1 + 1.3", and "1 + 1.3 (1.3 in 1 view)" where the
    scales other than 1 run fewer or more views (``scale_views``) than scale 1 (``views``)."""
    text = " + ".join(f"{v:g}" for v in scales)
    others = [v for v in scales if float(v) != 1.0]
    if views is not None and scale_views is not None and scale_views != views and others:
        text += f" ({', '.join(f'{v:g}' for v in others)} in {scale_views} view{'s' if scale_views > 1 else ''})"
    return text


def at_scale(probabilities: Callable[[Any], Any], x, s: float):
    """``probabilities`` (a tensor (B, 1, h, w) -> (B, C, h, w)) of ``x`` enlarged (or shrunk) by
    ``s`` (bicubic), brought back to ``x``'s size (bilinear, anti-aliased); at 1, of ``x`` itself."""
    if s == 1.0:
        return probabilities(x)
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    size = (max(16, round(h * s)), max(16, round(w * s)))
    xs = F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False,
                       antialias=s < 1).clamp_(0.0, 1.0)
    return F.interpolate(probabilities(xs), size=(h, w), mode="bilinear", align_corners=False,
                         antialias=s > 1)


def views_averaged(probabilities: Callable[[Any], Any], x, views: int):
    """``probabilities`` of ``x`` (B, 1, h, w) averaged over its first ``views`` :data:`VIEW_FLIPS`.

    The views run as one batch of ``views`` x B; each answer is flipped back
    before the average. ``train --teacher`` runs its network this way too.
    """
    import torch

    if views == 1:
        return probabilities(x)
    flips = VIEW_FLIPS[:views]
    b = x.shape[0]
    p = probabilities(torch.cat([torch.flip(x, dims=f) if f else x for f in flips]))
    total = p[:b].clone()
    for k, f in enumerate(flips[1:], start=1):
        total += torch.flip(p[k * b:(k + 1) * b], dims=f)
    return total * (1.0 / views)


def _as_gray(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        from veer.io import rgb_to_gray

        arr = rgb_to_gray(arr[..., :3].astype(np.uint8, copy=False))
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ConfigError(f"segment needs a gray image (H, W), got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ConfigError(f"segment needs a non-empty image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype == bool or arr.dtype.kind not in "uif":
            raise ConfigError(f"segment needs uint8 gray levels, got {arr.dtype}")
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


class Segmenter:
    """Segment scans with one pipeline; see the module docstring.

    ``mode`` "joint" (one 3-class model) or "separate" (three binary models,
    stitched). Weights come from ``models_dir`` (default assets/models) via
    :func:`veer.weights.load_model`; :meth:`from_models` takes built models.
    """

    def __init__(self, mode: str = "joint", device: Any = "auto", models_dir: Any = None, *,
                 tile: int | tuple[int, int] = DEFAULT_TILE, overlap: float = DEFAULT_OVERLAP,
                 batch_size: int | None = None, band_rows: int = DEFAULT_BAND_ROWS,
                 channels_last: bool = True, threshold: float = 0.5, workers: int | None = None,
                 precision: str = "auto", flip: bool = True, backend: str = "auto",
                 views: int | None = None, scales: Any = None, scale_views: int | None = None,
                 _models: Sequence[Any] | None = None, _cards: Sequence[dict] | None = None) -> None:
        import torch

        from veer.device import describe_device, pick_device, resolve_precision

        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; choose joint or separate")
        self.mode = mode
        self.device = device if isinstance(device, torch.device) else pick_device(str(device))
        if _models is None:
            from veer.weights import PIPELINES, load_model

            loaded = [load_model(name, models_dir, device="cpu") for name in PIPELINES[mode]]
            _models = [m for m, _ in loaded]
            _cards = [c for _, c in loaded]
        from veer.openvino_engine import resolve_backend

        self.backend = resolve_backend(self.device, backend, _models)
        self.models = [self._prepare(m, channels_last and self.backend == "torch") for m in _models]
        self.cards = list(_cards or [{} for _ in self.models])
        want = 1 if mode == "joint" else 3
        if len(self.models) != want:
            raise ConfigError(f"the {mode} pipeline needs {want} model(s), got {len(self.models)}")
        th, tw = (tile, tile) if isinstance(tile, (int, np.integer)) else tile
        if min(th, tw) < 16:
            raise ConfigError(f"tile must be at least 16 px, got {tile}")
        if not 0.0 <= float(overlap) < 0.9:
            raise ConfigError(f"overlap must be a fraction in [0, 0.9), got {overlap}")
        self.tile = (int(th), int(tw))
        self.overlap = float(overlap)
        self.precision = resolve_precision(self.device, precision)
        if workers is None:
            workers = min(DEFAULT_CPU_WORKERS, os.cpu_count() or 1) if self.device.type == "cpu" else 1
        self.workers = max(1, int(workers))
        self._ov = None
        if self.backend == "openvino":
            from veer.openvino_engine import OpenVinoNets, asked_for

            try:
                self._ov = OpenVinoNets(self.models, self.precision, streams=self.workers,
                                        threads=torch.get_num_threads())
            except Exception as exc:  # noqa: BLE001 - "auto" falls back to PyTorch, an explicit choice says why
                if asked_for(backend):
                    raise ConfigError(f"--backend openvino: the networks could not be compiled "
                                      f"({one_line(exc)})") from None
                self.backend = "torch"
                self.models = [self._prepare(m, channels_last) for m in self.models]
        if not batch_size:
            batch_size = DEFAULT_BATCH.get(self.device.type, 2)
            if self.device.type == "cpu" and self.precision == "fp32" and self.backend == "torch":
                batch_size = CPU_FP32_BATCH
        self.batch_size = max(1, int(batch_size))
        self.band_rows = max(1, int(band_rows))
        self.channels_last = bool(channels_last)
        self.threshold = float(threshold)
        self.align = max(int(getattr(m, "stride", 16) or 16) for m in self.models)
        self._views = views_for(flip, views)
        self.flip = self._views > 1
        self.scales = scales_for(scales)
        self.scale_views = scale_views_for(scale_views, self._views, self.scales)
        self.device_name = f"{describe_device(self.device)}, {self.precision}"
        if self._ov is not None:
            self.device_name += f", OpenVINO {self._ov.version}"
        if self.device.type == "cpu":
            from veer.device import tune_cpu_allocator

            tune_cpu_allocator()

    # ---- construction helpers

    @classmethod
    def from_models(cls, mode: str, models: Any, device: Any = "auto", **kwargs: Any) -> "Segmenter":
        """A segmenter around already-built models (one for joint; three, in the order
        background, curve1, curve2, or a dict keyed by the weight names, for separate)."""
        if isinstance(models, Mapping):
            from veer.weights import PIPELINES

            try:
                models = [models[name] for name in PIPELINES[mode]]
            except KeyError as exc:
                raise ConfigError(f"from_models: missing model {exc} for the {mode} pipeline") from None
        elif not isinstance(models, (list, tuple)):
            models = [models]
        return cls(mode, device, _models=list(models), **kwargs)

    def _prepare(self, model: Any, channels_last: bool) -> Any:
        import torch

        model = model.eval().to(self.device)
        for p in model.parameters():
            p.requires_grad_(False)
        if channels_last and self.device.type in ("cpu", "cuda"):
            model = model.to(memory_format=torch.channels_last)
        return model

    def plan(self, height: int, width: int) -> TilePlan:
        """The tile grid this segmenter uses for an image of that size."""
        return plan_tiles(height, width, self.tile, self.overlap, self.align)

    # ---- the network on one batch

    @property
    def views(self) -> int:
        """Network passes per tile: 1; 2 with the mirror view; 4 with both turned upside down too."""
        return self._views

    def views_at(self, scale: float) -> int:
        """Network passes per tile at ``scale``: :attr:`views` at 1, :attr:`scale_views` elsewhere."""
        return self._views if float(scale) == 1.0 else self.scale_views

    @property
    def passes(self) -> float:
        """Network work per tile, in passes of its own size: the views at each scale times its square."""
        return float(sum(self.views_at(s) * s * s for s in self.scales))

    def _probabilities(self, x):
        """float (B, 1, h, w) in [0, 1] -> float32 (B, 3, h, w) probabilities, averaged over
        the views at each scale, then over the scales with equal weight (a scaled tile's
        probabilities are brought back to its size)."""
        if not multi_scale(self.scales):
            return self._probabilities_views(x, self._views)
        return sum(at_scale(functools.partial(self._probabilities_views, views=self.views_at(s)), x, s)
                   for s in self.scales) * (1.0 / len(self.scales))

    def _probabilities_views(self, x, views: int):
        """float (B, 1, h, w) in [0, 1] -> float32 (B, 3, h, w) probabilities (``views`` views averaged)."""
        return views_averaged(self._probabilities_one, x, views)

    def _probabilities_one(self, x):
        """One view: float (B, 1, h, w) in [0, 1] -> float32 (B, 3, h, w) probabilities."""
        import torch

        from veer.device import autocast

        if self._ov is not None:
            outs = [torch.from_numpy(o) for o in self._ov.run(x.contiguous().numpy())]
        else:
            with autocast(self.device, self.precision):
                outs = [m(x) for m in self.models]
        if self.mode == "joint":
            logits = outs[0].float()
            if logits.shape[1] != 3:
                raise ConfigError(f"the joint model must give 3 channels, it gave {logits.shape[1]}")
            return torch.softmax(logits, dim=1)
        for o in outs:
            if o.shape[1] != 1:
                raise ConfigError(f"a binary model must give 1 channel, one gave {o.shape[1]}")
        return torch.sigmoid(torch.cat([o.float() for o in outs], dim=1))

    def _probabilities_inference(self, x):
        """:meth:`_probabilities` in a worker thread (inference mode is per thread)."""
        import torch

        with torch.inference_mode():
            return self._probabilities(x)

    # ---- segmentation

    def segment(self, gray: np.ndarray, *, progress: ProgressFn | None = None,
                return_probs: bool | str = False, cancel: threading.Event | None = None,
                on_queued: Callable[[int], None] | None = None) -> SegmentResult:
        """Segment one gray image (uint8 (H, W), 0 ink .. 255 paper).

        ``progress(done, total)`` is called with tiles done (first with 0).
        ``return_probs``: False, True (float32), or "float16" / "uint8".
        ``cancel``: set it from another thread to stop with :class:`Cancelled`.
        ``on_queued(position)`` is called once if the call has to wait for a
        free slot (see :func:`queue_status`).
        """
        import torch

        gray = _as_gray(gray)
        probs_dtype = None
        if return_probs:
            probs_dtype = "float32" if return_probs is True else str(return_probs)
            if probs_dtype not in PROBS_DTYPES:
                raise ConfigError(f"return_probs must be True or one of {', '.join(PROBS_DTYPES)}")
        plan = self.plan(*gray.shape)
        with _GATE.slot(cancel, on_queued):
            t0 = time.perf_counter()
            if cancel is not None and cancel.is_set():
                raise Cancelled("segmentation cancelled")
            with torch.inference_mode():
                out = self._run(gray, plan, progress, probs_dtype, cancel)
            seconds = time.perf_counter() - t0
        if out is None:  # raised here, not inside _run, so no traceback keeps its buffers alive
            raise Cancelled("segmentation cancelled")
        labels, probs, conflict, shared = out
        return SegmentResult(labels=labels, probs=probs, conflict=conflict, mode=self.mode,
                             device=self.device_name, seconds=seconds, tiles=plan.n_tiles, shared=shared)

    def _run(self, gray: np.ndarray, plan: TilePlan, progress: ProgressFn | None,
             probs_dtype: str | None, cancel: threading.Event | None):
        """Tiles -> (labels, probs, conflict, shared); None if ``cancel`` was set."""
        import torch

        from veer.stitch import argmax3, stitch

        dev = self.device
        H, W = gray.shape
        th, tw = plan.tile_h, plan.tile_w
        origins = plan.origins
        total = len(origins)
        batches = [origins[i:i + self.batch_size] for i in range(0, total, self.batch_size)]
        span = max(b[-1][0] - b[0][0] for b in batches) + th
        cap = min(H, span + self.band_rows)

        weight = torch.from_numpy(gaussian_weights(th, tw)).to(dev)
        acc = torch.zeros((3, cap, W), dtype=torch.float32, device=dev)
        wsum = torch.zeros((cap, W), dtype=torch.float32, device=dev)
        labels = np.empty((H, W), np.uint8)
        conflict = np.empty((H, W), np.uint8) if self.mode == "separate" else None
        probs = np.empty((3, H, W), np.dtype(probs_dtype)) if probs_dtype else None
        shared = np.empty((H, W), bool)
        base = 0   # image row held in accumulator row 0
        used = 0   # accumulator rows touched so far

        def flush(upto: int) -> None:
            nonlocal base, used
            n = upto - base
            if n <= 0:
                return
            rows = slice(base, upto)
            if self.mode == "joint":
                # the label needs no normalising: every class of a pixel has the same weight sum
                a = acc[:, :n]
                lab = argmax3(a[0], a[1], a[2])
                labels[rows] = lab.cpu().numpy()
                shared[rows] = ((lab == 1) & (a[2] >= SHARED_AT * wsum[:n])).cpu().numpy()
                p_np = (a / wsum[:n]).cpu().numpy() if probs is not None else None
            else:
                p_np = (acc[:, :n] / wsum[:n]).cpu().numpy()
                labels[rows], conflict[rows] = stitch(p_np, self.threshold)
                shared[rows] = (labels[rows] == 1) & (p_np[2] >= SHARED_AT)
            if probs is not None:
                if probs.dtype == np.uint8:
                    probs[:, rows] = np.rint(np.clip(p_np, 0.0, 1.0) * 255.0)
                else:
                    probs[:, rows] = p_np
            rest = max(used - n, 0)
            if rest:
                acc[:, :rest] = acc[:, n:n + rest].clone()
                wsum[:rest] = wsum[n:n + rest].clone()
            acc[:, rest:].zero_()
            wsum[rest:].zero_()
            base, used = upto, rest

        if progress is not None:
            progress(0, total)
        done = 0
        for batch in batches:
            if cancel is not None and cancel.is_set():
                return None
            first_row = batch[0][0]
            if first_row - base >= self.band_rows:
                flush(first_row)
            tiles = np.stack([gray[y:y + th, x:x + tw] for y, x in batch])
            x_in = torch.from_numpy(tiles).to(dev, non_blocking=True).unsqueeze(1)
            x_in = x_in.to(torch.float32).div_(255.0)
            if self.channels_last and dev.type in ("cpu", "cuda") and self._ov is None:
                x_in = x_in.contiguous(memory_format=torch.channels_last)
            if self.workers > 1 and len(batch) > 1 and self._ov is None:
                chunks = torch.tensor_split(x_in, min(self.workers, len(batch)))
                p = torch.cat(list(_worker_pool(self.workers).map(self._probabilities_inference, chunks)))
            else:
                p = self._probabilities(x_in)
            p = p * weight
            for i, (y, x) in enumerate(batch):
                r = y - base
                acc[:, r:r + th, x:x + tw] += p[i]
                wsum[r:r + th, x:x + tw] += weight
                used = max(used, r + th)
            done += len(batch)
            if progress is not None:
                progress(done, total)
        flush(H)
        return labels, probs, conflict, shared


# --------------------------------------------------------------------------- process-wide cache

_CACHE: dict[tuple, Segmenter] = {}
_CACHE_LOCK = threading.Lock()


def get_segmenter(mode: str = "joint", device: Any = "auto", models_dir: Any = None,
                  flip: bool = True, backend: str = "auto", views: int | None = None,
                  scales: Any = None, scale_views: int | None = None) -> Segmenter:
    """The process-wide :class:`Segmenter` for (mode, device, models_dir, views, scales,
    scale_views, backend); loads weights once. ``views`` defaults to 2 (1 with ``flip=False``),
    ``scales`` to :data:`DEFAULT_SCALES`, ``scale_views`` (the views at scales other than 1) to
    ``views``."""
    from veer.device import pick_device

    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose joint or separate")
    dev = pick_device(str(device)) if not hasattr(device, "type") else device
    folder = str(Path(models_dir).resolve()) if models_dir is not None else None
    views = views_for(flip, views)
    scales = scales_for(scales)
    scale_views = scale_views_for(scale_views, views, scales)
    key = (mode, str(dev), folder, views, scales, scale_views, (backend or "auto").lower(),
           os.environ.get("VEER_BACKEND", ""))
    with _CACHE_LOCK:
        seg = _CACHE.get(key)
        if seg is None:
            seg = Segmenter(mode, dev, models_dir, views=views, scales=scales, scale_views=scale_views,
                            backend=backend)
            _CACHE[key] = seg
        return seg


def clear_cache() -> None:
    """Forget the cached segmenters (their models are freed when unused)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --------------------------------------------------------------------------- CLI: segment


def overlay(gray: np.ndarray, labels: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """RGB: the scan in gray with curve pixels tinted in their class colours."""
    from veer.classes import colorize

    rgb = np.repeat(gray[..., None], 3, axis=2)
    curve = labels != 0
    tint = colorize(labels)[curve].astype(np.float32)
    rgb[curve] = np.rint((1 - alpha) * rgb[curve].astype(np.float32) + alpha * tint).astype(np.uint8)
    return rgb


def add_arguments(parser) -> None:
    from veer.device import DEVICE_CHOICES, PRECISION_CHOICES

    parser.add_argument("images", nargs="+", metavar="IMAGE", help="scan files (PNG, JPEG, TIFF, BMP, GIF)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="folder for <stem>.mask.png (and .conflict.png, .overlay.png)")
    parser.add_argument("--mode", choices=MODES, default="joint",
                        help="joint 3-class model, or three binary models stitched (default joint)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="compute device (default auto: CUDA, then Apple MPS, then CPU)")
    parser.add_argument("--overlay", action="store_true", help="also write <stem>.overlay.png")
    parser.add_argument("--page", type=int, default=1, metavar="N",
                        help="page of multi-page files to read, counting from 1 (default 1)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse images larger than N pixels (default VEER_MAX_PIXELS or 60e6)")
    parser.add_argument("--models", type=Path, default=None, metavar="DIR",
                        help="folder with the model weights (default assets/models)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help=f"largest tile side (default {DEFAULT_TILE})")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help=f"least tile overlap as a fraction of the tile (default {DEFAULT_OVERLAP})")
    parser.add_argument("--batch", type=int, default=None, help="tiles per batch (default by device)")
    add_views_argument(parser)
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="arithmetic (default auto: bf16/fp16 on CUDA, bf16 on CPUs with native bf16, "
                             "else fp32; or VEER_PRECISION)")
    add_backend_argument(parser)


def add_views_argument(parser) -> None:
    """``--views 1|2|4`` and ``--no-flip`` (the same as ``--views 1``), into ``args.views``."""
    parser.add_argument("--views", type=int, choices=VIEW_CHOICES, default=2,
                        help="network passes per tile, averaged: 1; 2 with the tile mirrored (default); "
                             "4 with both also upside down (a little better, twice the time)")
    parser.add_argument("--no-flip", dest="views", action="store_const", const=1,
                        help="the same as --views 1: each tile once, without the mirror (twice as fast)")
    parser.add_argument("--scales", type=_scales_arg, default=None, metavar="S[,S...]",
                        help="scales each tile runs at, averaged, e.g. 1,1.3 (the tile as it is and "
                             f"enlarged 1.3x); each in [{SCALE_RANGE[0]}, {SCALE_RANGE[1]}] (default "
                             f"{','.join(f'{v:g}' for v in DEFAULT_SCALES)})")
    parser.add_argument("--scale-views", type=int, choices=VIEW_CHOICES, default=None,
                        help="network passes per tile at the scales other than 1 (default: as --views); "
                             "1 runs the enlarged tile once, without its mirror: most of what the scale "
                             "gains, for 31 %% less network work than 2 views with --scales 1,1.3")


def _scales_arg(text: str) -> tuple[float, ...]:
    import argparse

    try:
        return scales_for(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_backend_argument(parser) -> None:
    from veer.openvino_engine import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="what runs the networks (default auto: OpenVINO on the CPU when installed, "
                             "else PyTorch; or VEER_BACKEND)")


OUTPUT_SUFFIXES = (".mask.png", ".conflict.png", ".overlay.png")


def _output_stem(name: str, out: Path, used: set[str], inputs: set[Path]) -> str:
    """A stem for ``name`` not used in this run, none of whose outputs is an input file."""
    from veer.io import safe_stem

    base = stem = safe_stem(Path(name).name)
    k = 1
    while stem in used or any((out / f"{stem}{s}").resolve() in inputs for s in OUTPUT_SUFFIXES):
        k += 1
        stem = f"{base}-{k}"
    used.add(stem)
    return stem


def run(args) -> int:
    import sys

    from tqdm import tqdm

    from veer.classes import write_mask
    from veer.io import read_scan, save_png

    if args.page < 1:
        raise ConfigError(f"--page counts from 1, got {args.page}")
    seg = Segmenter(args.mode, args.device, args.models, tile=args.tile, overlap=args.overlap,
                    batch_size=args.batch, precision=args.precision, views=args.views, scales=args.scales,
                    scale_views=args.scale_views, backend=args.backend)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    inputs = {Path(p).resolve() for p in args.images}
    used: set[str] = set()
    failed = 0
    for path in args.images:
        try:
            scan = read_scan(path, page=args.page - 1, max_pixels=args.max_pixels)
            stem = _output_stem(path, out, used, inputs)
            bar = tqdm(total=None, desc=Path(path).name, unit="tile", leave=False,
                       disable=not sys.stderr.isatty())

            def progress(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            try:
                result = seg.segment(scan.gray, progress=progress)
            finally:
                bar.close()
            written = [write_mask(out / f"{stem}.mask.png", result.labels)]
            if result.conflict is not None:
                written.append(save_png(out / f"{stem}.conflict.png", result.conflict))
            if args.overlay:
                written.append(save_png(out / f"{stem}.overlay.png", overlay(scan.gray, result.labels)))
            h, w = scan.shape
            at = f" at scales {scales_text(seg.scales, seg.views, seg.scale_views)}" \
                if multi_scale(seg.scales) else ""
            print(f"{path}: {w}x{h} px, {result.tiles} tiles{at}, {result.seconds:.1f} s on "
                  f"{result.device} -> {', '.join(str(p) for p in written)}")
        except (ImageReadError, VeerError) as exc:
            failed += 1
            print(f"veer segment: error: {one_line(exc)}", file=sys.stderr)
        except (MemoryError, OSError) as exc:
            failed += 1
            print(f"veer segment: error: {path}: {one_line(exc)}", file=sys.stderr)
    if failed:
        print(f"veer segment: {failed} of {len(args.images)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


