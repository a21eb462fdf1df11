"""Train the joint 3-class model or one binary-mask model on synthetic tiles.

    python -m veer train --task joint
    python -m veer train --task binary --target background|curve1|curve2

Fair comparison by construction: every task goes through the same
:func:`train` code path with the same data stream. Tiles come straight from
the generator (``veer.synth.sample_tile``) with the batch of step ``s`` drawn
from ``numpy.random.default_rng([seed, s])``: the same seed gives every model
the very same tiles in the same order, whatever its task, and a resumed run
continues exactly where it stopped. The model is initialised from the same
torch seed too, so the backbones start alike; only the head (3 logits or 1)
and the loss (:func:`veer.losses.make_loss`) differ. The validation tiles are
drawn from seeds ``10_000_000 + i``, never used for training.
``--wrap-tiles SHARE`` centres that share of the tiles on a curve's
wrap-around sweep (the rows where a reading leaves one border of the track
and re-enters at the other), which whole logs hold few of.

A run writes to ``--out`` (default ``runs/<name>``): ``checkpoint.pt``
(model, optimiser, step; for ``--resume``), ``best.pt`` (best validation
weights), ``history.json``. Whenever the validation macro F1 improves, the
weights are exported to ``assets/models/<name>.pt`` with their model card and
history (unless ``--no-export``), so usable weights exist long before the end.
Ctrl-C or SIGTERM stop a run after the step in hand, checkpointed, and
``--time-limit MINUTES`` ends a call at the first step past it, validated
too: ``--resume`` continues either with nothing lost.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from veer.classes import CLASS_NAMES, IGNORE
from veer.errors import ConfigError
from veer.losses import DEFAULT_CLASS_WEIGHTS, JOINT_LOSSES, binary_target, distillation_loss, make_loss
from veer.model import ModelConfig, build_model, count_parameters, gmac_per_megapixel, grow_state, grows_from

VAL_SEED_BASE = 10_000_000
# sampler(rng, size) -> (gray, mask); with --wrap-tiles it is also called as sampler(rng, size, at_wrap=True)
Sampler = Callable[..., tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints and model cards)."""

    task: str = "joint"                 # joint | binary
    target: str | None = None           # binary only: background | curve1 | curve2
    steps: int = 700                    # a first run; the shipped models then ran 4,000, 3,000, 3,000, 4,000, 2,000, 3,000, 4,000 and 1,500 (--wrap-tiles 0.25) more with --init,
                                        # then 1,500 and 2,000 (--wrap-tiles 0.25) grown by --model, then 1,500
                                        # and 1,000 widened by --model, then 1,000 with --ema 0.998 (see README)
    batch: int = 8
    tile: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100                   # linear warm-up steps, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.02
    seed: int = 0
    loss: str = "ce_dice"               # joint: ce_dice | lovasz | tversky (binary: always BCE + Dice)
    class_weights: tuple[float, ...] = DEFAULT_CLASS_WEIGHTS
    region_weight: float = 1.0
    overlap: float = 0.0                # weight of losses.overlap_loss (0: overlap pixels ignored, as before)
    ema: float = 0.0                    # decay of an exponential moving average of the weights, which is
                                        # validated and kept instead of the raw weights, the run's end
                                        # exported whatever its validation score (0: off)
    eval_every: int = 100
    checkpoint_every: int = 50
    val_tiles: int = 48
    scale_jitter: float = 0.15          # tiles are drawn at tile * U(1 - j, 1 + j) and resized
    wrap_tiles: float = 0.0             # share of tiles centred on a wrap-around sweep (synth.sample_tile(at_wrap=True))
    model: dict[str, Any] = field(default_factory=lambda: ModelConfig().to_dict())
    init: str | None = None             # start from these weights (a .pt beside its model card)
    teacher: str | None = None          # distil from these weights (a .pt beside its model card) ...
    distill: float = 1.0                # ... with this weight on the KL term (see Teacher) ...
    teacher_views: int = 2              # ... run in this many views (1, 2 or 4) ...
    teacher_scales: tuple[float, ...] = (1.0, 1.3)   # ... at these scales, as the segmenter runs them

    def __post_init__(self) -> None:
        if self.task not in ("joint", "binary"):
            raise ConfigError(f"--task must be joint or binary, got {self.task!r}")
        if self.task == "binary":
            if self.target not in CLASS_NAMES:
                raise ConfigError(f"--task binary needs --target {' | '.join(CLASS_NAMES)}")
        else:
            self.target = None
            if self.loss not in JOINT_LOSSES:
                raise ConfigError(f"--loss must be one of {', '.join(JOINT_LOSSES)}")
        for name in ("steps", "batch", "tile", "eval_every", "checkpoint_every", "val_tiles"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.tile < 16:
            raise ConfigError("--tile must be at least 16 px")
        if not 0 <= self.scale_jitter < 0.5:
            raise ConfigError("--scale-jitter must be in [0, 0.5)")
        if not 0 <= self.wrap_tiles <= 1:
            raise ConfigError(f"--wrap-tiles must be a share between 0 and 1, got {self.wrap_tiles}")
        self.class_weights = tuple(float(w) for w in self.class_weights)
        self.model = ModelConfig.from_dict(self.model).to_dict()
        if not 0 <= self.overlap < float("inf"):
            raise ConfigError(f"--overlap must be a weight of 0 or more, got {self.overlap}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema must be a decay in [0, 1) (0: off), e.g. 0.998, got {self.ema}")
        if not self.distill > 0:
            raise ConfigError(f"--distill must be a positive weight, got {self.distill}")
        if self.teacher_views not in (1, 2, 4):
            raise ConfigError(f"--teacher-views must be 1, 2 or 4, got {self.teacher_views}")
        from veer.infer import scales_for

        self.teacher_scales = scales_for(self.teacher_scales)

    @property
    def name(self) -> str:
        return "joint" if self.task == "joint" else f"binary_{self.target}"

    @property
    def out_channels(self) -> int:
        return 3 if self.task == "joint" else 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class_weights"] = list(self.class_weights)
        d["teacher_scales"] = list(self.teacher_scales)
        return d

    # the fields that must agree between a checkpoint and a resumed run
    def identity(self) -> dict[str, Any]:
        d = self.to_dict()
        for k in ("eval_every", "checkpoint_every"):
            d.pop(k)
        return d


# --------------------------------------------------------------------------- data


def default_sampler() -> Sampler:
    try:
        from veer.synth import sample_tile
    except ImportError as exc:
        raise ConfigError(f"the tile generator veer.synth.sample_tile is not available ({exc})") from None
    return sample_tile


def _resize(arr: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    from PIL import Image

    if arr.shape == (size, size):
        return arr
    img = Image.fromarray(arr)
    return np.asarray(img.resize((size, size), Image.NEAREST if nearest else Image.BILINEAR))


def augmented_tile(rng: np.random.Generator, tile: int, sampler: Sampler,
                   scale_jitter: float, wrap_tiles: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One training tile: float32 gray in [0, 1] and uint8 mask, augmented.

    Augmentations keep the classes' meaning: a small scale jitter (nearest
    neighbour for the mask), a horizontal flip (a vertical one would not
    change the classes either, but depth runs downwards on every log), and
    gamma / contrast / brightness changes of the paper and ink.

    ``wrap_tiles``: the share of tiles the sampler centres on a wrap-around
    sweep (``sampler(rng, size, at_wrap=True)``); at 0 no draw is spent on
    it, so the tile stream of earlier runs is unchanged.
    """
    scale = 1.0 + rng.uniform(-scale_jitter, scale_jitter) if scale_jitter else 1.0
    src = max(16, int(round(tile * scale)))
    if wrap_tiles > 0 and rng.random() < wrap_tiles:
        gray, mask = sampler(rng, src, at_wrap=True)
    else:
        gray, mask = sampler(rng, src)
    gray = _resize(np.asarray(gray, np.uint8), tile, nearest=False)
    mask = _resize(np.asarray(mask, np.uint8), tile, nearest=True)
    if rng.random() < 0.5:
        gray, mask = gray[:, ::-1], mask[:, ::-1]
    g = gray.astype(np.float32) / 255.0
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    contrast = rng.uniform(0.75, 1.15)
    brightness = rng.uniform(-0.08, 0.06)
    g = 1.0 - (1.0 - np.power(g, gamma)) * contrast + brightness
    np.clip(g, 0.0, 1.0, out=g)
    return np.ascontiguousarray(g), np.ascontiguousarray(mask)


def training_arrays(seed: int, step: int, batch: int, tile: int, sampler: Sampler,
                    scale_jitter: float = 0.15, wrap_tiles: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The batch of ``step`` as arrays: x float32 (B, T, T), y uint8 (B, T, T) three-class masks."""
    rng = np.random.default_rng([int(seed), int(step)])
    xs, ys = zip(*(augmented_tile(rng, tile, sampler, scale_jitter, wrap_tiles) for _ in range(batch)))
    return np.stack(xs), np.stack(ys)


def _as_tensors(arrays: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = arrays
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def training_batch(seed: int, step: int, batch: int, tile: int, sampler: Sampler,
                   scale_jitter: float = 0.15, wrap_tiles: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of ``step``: x float32 (B, 1, T, T), y int64 (B, T, T) three-class masks."""
    return _as_tensors(training_arrays(seed, step, batch, tile, sampler, scale_jitter, wrap_tiles))


def validation_set(n: int, tile: int, sampler: Sampler) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed validation tiles from seeds 10_000_000 + i (no augmentation)."""
    xs, ys = [], []
    for i in range(n):
        gray, mask = sampler(np.random.default_rng(VAL_SEED_BASE + i), tile)
        xs.append(np.asarray(gray, np.float32) / 255.0)
        ys.append(np.asarray(mask, np.int64))
    return torch.from_numpy(np.stack(xs)).unsqueeze(1), torch.from_numpy(np.stack(ys))


class _BatchStream(torch.utils.data.IterableDataset):
    """Batches for steps ``start..stop-1``; with workers, generated ahead of the compute.

    With ``N`` worker processes, worker ``k`` makes the batches of steps
    ``start + k, start + k + N, ...`` and the loader takes them from the
    workers in turn, so the batches arrive in step order and are the very
    batches one process would make (each is drawn from ``[seed, step]``).
    The workers are started afresh (``spawn``), not forked from a process
    that may already hold threads, locks or a CUDA context; so a script
    that trains with workers needs the ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, cfg: TrainConfig, start: int, stop: int, sampler: Sampler):
        super().__init__()
        self.cfg, self.start, self.stop, self.sampler = cfg, start, stop, sampler

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        first, every = (self.start, 1) if info is None else (self.start + info.id, info.num_workers)
        for step in range(first, self.stop, every):
            yield training_arrays(self.cfg.seed, step, self.cfg.batch, self.cfg.tile,
                                  self.sampler, self.cfg.scale_jitter, self.cfg.wrap_tiles)


def _as_is(arrays):
    """The loader's conversion step: none. The workers' arrays come back pickled through a pipe and
    become tensors in the main process, so no tensor storage is shared between processes."""
    return arrays


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group: the main process finishes its step and stops the
    # run (see _StopRequests); a worker that died of it first would fail that step's batch
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers(device_type: str) -> int:
    """Data worker processes when ``--workers`` is not given.

    On the CPU none: the cores are the compute's, and the generator costs a
    small share of a step there. On a GPU one per core but one (at most 15):
    one process makes about 110 tiles of 256 px a second on this project's
    2-core machine, far fewer than a GPU trains on.
    """
    if device_type == "cpu":
        return 0
    return max(1, min(15, (os.cpu_count() or 2) - 1))


def batch_stream(cfg: TrainConfig, start: int, stop: int, sampler: Sampler,
                 workers: int, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of steps ``start..stop-1`` in order, made by ``workers`` processes (0: inline)."""
    ds = _BatchStream(cfg, start, stop, sampler)
    workers = min(int(workers), max(0, stop - start))
    if workers <= 0:
        return map(_as_tensors, ds)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, collate_fn=_as_is, num_workers=workers,
                                         prefetch_factor=4 if workers == 1 else 2,
                                         worker_init_fn=_worker_init, persistent_workers=False,
                                         multiprocessing_context="spawn")
    tensors = map(_as_tensors, loader)
    return (tuple(t.pin_memory() for t in pair) for pair in tensors) if pin_memory else tensors


# --------------------------------------------------------------------------- scores


def confusion_counts(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """(n, n) int64 counts, rows truth, cols prediction; truth 255 is skipped."""
    t = np.asarray(truth).reshape(-1)
    p = np.asarray(pred).reshape(-1)
    keep = t != IGNORE
    idx = t[keep].astype(np.int64) * n + p[keep].astype(np.int64)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def scores(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per-class precision / recall / F1 / IoU from confusion counts, plus macro F1."""
    m = np.asarray(matrix, np.float64)
    tp = np.diag(m)
    fp = m.sum(0) - tp
    fn = m.sum(1) - tp
    per_class = {}
    for i, name in enumerate(names):
        def ratio(a: float, b: float) -> float:
            return float(a / b) if b > 0 else 0.0
        per_class[name] = {
            "precision": ratio(tp[i], tp[i] + fp[i]),
            "recall": ratio(tp[i], tp[i] + fn[i]),
            "f1": ratio(2 * tp[i], 2 * tp[i] + fp[i] + fn[i]),
            "iou": ratio(tp[i], tp[i] + fp[i] + fn[i]),
            "support": int(tp[i] + fn[i]),
        }
    macro = float(np.mean([v["f1"] for v in per_class.values()]))
    return {"per_class": per_class, "macro_f1": macro}


def class_names_for(cfg: TrainConfig) -> list[str]:
    if cfg.task == "joint":
        return list(CLASS_NAMES)
    return [f"not_{cfg.target}", str(cfg.target)]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, cfg: TrainConfig, val: tuple[torch.Tensor, torch.Tensor],
             loss_fn: Callable, device: torch.device) -> dict[str, Any]:
    """Validation loss and scores of ``model`` on the fixed validation tiles."""
    from veer.device import autocast

    was_training = model.training
    model.eval()
    x_all, y_all = val
    n = 3 if cfg.task == "joint" else 2
    matrix = np.zeros((n, n), np.int64)
    losses = []
    for i in range(0, len(x_all), cfg.batch):
        x = x_all[i:i + cfg.batch].to(device).contiguous(memory_format=torch.channels_last)
        y = y_all[i:i + cfg.batch].to(device)
        with autocast(device):
            logits = model(x)
        logits = logits.float()
        losses.append(float(loss_fn(logits, y)) * len(x))
        if cfg.task == "joint":
            pred, truth = logits.argmax(1), y
        else:
            pred = (logits[:, 0] > 0).long()
            truth = binary_target(y, CLASS_NAMES.index(cfg.target))
        matrix += confusion_counts(truth.cpu().numpy(), pred.cpu().numpy(), n)
    model.train(was_training)
    out = scores(matrix, class_names_for(cfg))
    out["loss"] = float(sum(losses) / len(x_all))
    out["confusion"] = matrix.tolist()
    return out


# --------------------------------------------------------------------------- schedule


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of ``step``: linear warm-up, then cosine decay (a pure function of step)."""
    warm = min(cfg.warmup, max(1, cfg.steps // 5))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


# --------------------------------------------------------------------------- hardware


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> dict[str, Any]:
    from veer.device import describe_device

    return {"device": describe_device(device), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}


# --------------------------------------------------------------------------- checkpoints


def _save_torch(path: Path, obj: Any) -> None:
    from veer.io import atomic_write

    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _load_torch(path: Path) -> Any:
    from veer.errors import ModelFileError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path}: the checkpoint cannot be read ({type(exc).__name__}: {exc}); "
                             f"start again without --resume or with another --out") from None


def _checked_card(path: Path | str, cfg: TrainConfig, option: str) -> tuple[Path, dict[str, Any], str]:
    """A weight file named by ``option`` (``--init``, ``--teacher``): its model card and checksum.

    The card (``.json`` beside the ``.pt``) must be readable, its checksum
    must match the file, and it must be of this run's task and target.
    """
    from veer.errors import ModelFileError
    from veer.weights import sha256_file

    pt = Path(path)
    card_path = pt.with_suffix(".json")
    if not pt.exists():
        raise ConfigError(f"{option} {pt}: weight file not found")
    if not card_path.exists():
        raise ConfigError(f"{option} {pt}: no model card {card_path.name} beside it")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{card_path}: the model card is damaged ({exc})") from None
    digest = sha256_file(pt)
    if digest != card.get("sha256"):
        raise ModelFileError(f"{pt}: checksum does not match its model card {card_path.name}")
    if card.get("task") != cfg.task or card.get("target") != cfg.target:
        raise ConfigError(f"{option} {pt}: trained for {card.get('task')} {card.get('target') or ''}".rstrip()
                          + f", not for {cfg.name}")
    return pt, card, digest


def load_init(path: Path | str, cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Weights to start a run from, and what the card should say about them.

    ``path`` is a weight file (``.pt``) with its model card (``.json``) beside
    it, as the models folder holds them: the checksum is verified, the card
    must describe the same network, task and target, and its history (when
    present) is carried over so the training curves run on from it.
    """
    pt, card, digest = _checked_card(path, cfg, "--init")
    card_path = pt.with_suffix(".json")
    small = ModelConfig.from_dict(card.get("config", {}))
    grown = small.to_dict() != cfg.model
    if grown and not grows_from(small, cfg.model):
        raise ConfigError(f"--init {pt}: its network ({card_path.name}) differs from this run's --model "
                          f"(a --model may only add residual blocks, attention layers, head_blocks or whole "
                          f"GroupNorm groups of channels below the bottleneck to it)")
    state = _load_torch(pt)
    prior = card.get("training", {})
    hist_path = pt.with_name(pt.stem + ".history.json")
    history = json.loads(hist_path.read_text()) if hist_path.exists() else []
    info = {"file": pt.name, "sha256": digest, "steps": int(prior.get("total_steps", prior.get("steps", 0))),
            "seconds": float(prior.get("total_seconds", prior.get("seconds", 0.0))),
            "command": prior.get("command"), "history": history}
    if grown:
        info["grown_from"] = small.to_dict()
    return state, info


class Teacher:
    """A trained network's answer on a training batch, for ``train --teacher``.

    It runs as the segmenter does at inference (:func:`veer.infer.at_scale`,
    :data:`veer.infer.VIEW_FLIPS`): each batch in ``views`` views at every
    one of ``scales``, probabilities averaged. Those options buy the
    segmenter accuracy for more network work; distillation teaches the
    student to give that answer from one pass. Frozen and in eval mode.
    """

    def __init__(self, path: Path | str, cfg: TrainConfig, device: torch.device):
        from veer.errors import ModelFileError

        pt, card, self.sha256 = _checked_card(path, cfg, "--teacher")
        card_path = pt.with_suffix(".json")
        self.model = build_model(card.get("config", {}), cfg.out_channels)
        try:
            self.model.load_state_dict(_load_torch(pt))
        except RuntimeError as exc:
            raise ModelFileError(f"{pt}: the weights do not fit the network on {card_path.name} "
                                 f"({str(exc).splitlines()[0]})") from None
        self.model.to(device).to(memory_format=torch.channels_last).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.file, self.device = pt.name, device
        self.views, self.scales = cfg.teacher_views, tuple(cfg.teacher_scales)

    def describe(self, weight: float) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "views": self.views,
                "scales": list(self.scales), "weight": weight}

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        """One pass: float (B, 1, H, W) -> float32 probabilities (B, C, H, W)."""
        from veer.device import autocast

        with autocast(self.device):
            logits = self.model(x.contiguous(memory_format=torch.channels_last)).float()
        return torch.softmax(logits, 1) if logits.shape[1] > 1 else torch.sigmoid(logits)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """float (B, 1, H, W) in [0, 1] -> float32 probabilities (B, C, H, W)."""
        from veer.infer import at_scale, views_averaged

        views = functools.partial(views_averaged, self._one, views=self.views)
        return sum(at_scale(views, x, s) for s in self.scales) / len(self.scales)


@dataclass
class RunState:
    step: int = 0
    seconds: float = 0.0
    best_score: float = -1.0
    best_step: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""       # why this call ended before the run's last step: "SIGINT", "SIGTERM", "time limit"


class _StopRequests:
    """Ctrl-C (SIGINT) and SIGTERM while training ask the run to stop after the step in hand.

    The step is finished, the run checkpointed and the call returns, so
    ``--resume`` continues exactly there and no step is lost or half-done. A
    second Ctrl-C stops at once (as Python does by default). Outside the main
    thread signals cannot be caught, and nothing changes. A signal the caller
    ignores stays ignored: a shell starts a background job (``nohup CMD &``)
    with Ctrl-C ignored, so the terminal's Ctrl-C does not reach it.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.requested = ""
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested and name == "SIGINT":
            raise KeyboardInterrupt
        self.requested = self.requested or name

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                num = getattr(signal, name, None)
                if num is not None and signal.getsignal(num) is not signal.SIG_IGN:
                    self._old[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for num, old in self._old.items():
            signal.signal(num, old)
        self._old.clear()


def _card(cfg: TrainConfig, state: RunState, val: dict[str, Any], model, gmac: float,
          device: torch.device, threads: int, complete: bool,
          init: dict[str, Any] | None = None, teacher: dict[str, Any] | None = None) -> dict[str, Any]:
    prior_steps = init["steps"] if init else 0
    prior_seconds = init["seconds"] if init else 0.0
    return {
        "task": cfg.task,
        "target": cfg.target,
        "gmac_per_mpx": round(gmac, 3),
        "parameters": count_parameters(model),
        "training": {
            "steps": state.best_step,
            "planned_steps": cfg.steps,
            "steps_run": state.step,
            "complete": complete,
            "tile": cfg.tile,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "schedule": f"AdamW, linear warm-up {cfg.warmup} steps, cosine to {cfg.min_lr_ratio} x lr"
                        + (f"; weights kept as their moving average (decay {cfg.ema:g} per step)" if cfg.ema else ""),
            "loss": cfg.loss if cfg.task == "joint" else "bce_dice",
            "class_weights": list(cfg.class_weights),
            "seconds": round(state.seconds, 1),
            "total_steps": prior_steps + state.best_step,
            "total_seconds": round(prior_seconds + state.seconds, 1),
            "init": {k: v for k, v in init.items() if k != "history"} if init else None,
            "teacher": teacher,
            "threads": threads,
            "hardware": hardware(device),
            "data": {
                "generator": "veer.synth.sample_tile",
                "train_seed": cfg.seed,
                "train_stream": "numpy.random.default_rng([seed, step]) per batch",
                "validation_seeds": [VAL_SEED_BASE, VAL_SEED_BASE + cfg.val_tiles - 1],
                "wrap_tiles": cfg.wrap_tiles,
                "augment": {"hflip": 0.5, "scale_jitter": cfg.scale_jitter,
                            "gamma": [0.7, 1.4], "contrast": [0.75, 1.15], "brightness": [-0.08, 0.06]},
            },
            "config": cfg.to_dict(),
            "command": "python -m veer train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else None,
        },
        "validation": {"step": state.best_step, "tiles": cfg.val_tiles, "tile": cfg.tile, **val},
    }


# --------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, out: Path | str, *, resume: bool = False, device: str = "auto",
          threads: int | None = None, workers: int | None = None, export: bool = True,
          models_dir: Path | str | None = None, sampler: Sampler | None = None,
          stop_at: int | None = None, time_limit: float | None = None,
          progress: bool = True) -> RunState:
    """Run (or continue) training; returns the final :class:`RunState`.

    ``stop_at`` ends this call after that many total steps without finishing
    the schedule (as if the run were interrupted); ``--resume`` continues it.
    ``time_limit`` (seconds of this call) ends it likewise at the first step
    that passes it, validated there so its weights are kept and exported as
    at any validation (the card then says the run is not complete). Ctrl-C or
    SIGTERM end it after the step in hand, checkpointed (``state.stopped``
    says why).
    """
    from tqdm import tqdm

    from veer.device import autocast, pick_device, set_cpu_threads
    from veer.weights import save_history, save_model, write_json

    out = Path(out)
    dev = pick_device(device)
    threads = set_cpu_threads(threads)
    sampler = sampler or default_sampler()
    if workers is None:
        workers = default_workers(dev.type)
    if workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {workers}")
    if time_limit is not None and not 0 < time_limit < float("inf"):
        raise ConfigError(f"--time-limit must be a positive number of minutes, got {time_limit / 60:g}")
    ckpt_path = out / "checkpoint.pt"

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.out_channels)
    model.to(dev).to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    use_scaler = dev.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    loss_fn = make_loss(cfg.task, cfg.target, cfg.loss, cfg.class_weights, cfg.region_weight, cfg.overlap)
    state = RunState()
    init = None
    if cfg.init:
        init_state, init = load_init(cfg.init, cfg)
    teacher = Teacher(cfg.teacher, cfg, dev) if cfg.teacher else None
    teacher_info = teacher.describe(cfg.distill) if teacher is not None else None
    averaged = None   # with --ema: the moving average of the weights, the model that is validated and kept

    if ckpt_path.exists():
        if not resume:
            raise ConfigError(f"{out} already holds a training run ({ckpt_path.name}); pass --resume "
                              f"to continue it or choose another --out")
        ck = _load_torch(ckpt_path)
        saved = json.loads(ck["config"])
        if TrainConfig(**saved).identity() != cfg.identity():
            diff = sorted(k for k, v in cfg.identity().items() if TrainConfig(**saved).identity().get(k) != v)
            raise ConfigError(f"{ckpt_path}: was trained with different settings ({', '.join(diff)}); "
                              f"use the same options to resume, or another --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if use_scaler and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        rs = json.loads(ck["state"])
        state = RunState(**rs)
        state.stopped = ""
    else:
        if resume and progress:
            print(f"no checkpoint in {out}; starting a new run", file=sys.stderr)
        if init is not None and "grown_from" in init:
            grow_state(model, init_state, init["grown_from"])
        elif init is not None:
            model.load_state_dict(init_state)
    if cfg.ema:
        averaged = _moving_average(model, cfg.ema)
        if ckpt_path.exists():
            averaged.load_state_dict(ck["ema"])   # the average so far, as the run left it
    kept = averaged.module if averaged is not None else model   # the weights validated and exported

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    gmac = gmac_per_megapixel(model) if dev.type == "cpu" else gmac_per_megapixel(build_model(cfg.model, cfg.out_channels))
    val = validation_set(cfg.val_tiles, cfg.tile, sampler)
    end = cfg.steps if stop_at is None else min(cfg.steps, int(stop_at))

    def save_checkpoint() -> None:
        _save_torch(ckpt_path, {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if use_scaler else {},
            "config": json.dumps(cfg.to_dict()), "state": json.dumps(dataclasses.asdict(state)),
            **({"ema": averaged.state_dict()} if averaged is not None else {}),
        })
        write_json(out / "history.json", state.history)

    def export_best(val_scores: dict[str, Any], complete: bool) -> None:
        card = _card(cfg, state, val_scores, model, gmac, dev, threads, complete, init, teacher_info)
        best = build_model(cfg.model, cfg.out_channels)
        best.load_state_dict(_load_torch(out / "best.pt"))
        write_json(out / "card.json", card)
        history = full_history(state.history, init)
        write_json(out / "full_history.json", history)
        if export:
            save_model(best, cfg.name, card, models_dir)
            save_history(cfg.name, history, models_dir)

    model.train()
    running, running_n = 0.0, 0
    bar = tqdm(total=cfg.steps, initial=state.step, desc=cfg.name, unit="step", disable=not progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)

    def validate(is_last: bool) -> None:
        v = evaluate(kept, cfg, val, loss_fn, dev)
        row = {"step": state.step, "seconds": round(state.seconds, 1),
               "loss": running / running_n,
               "lr": lr_at(cfg, state.step - 1), "val_loss": v["loss"], "val_macro_f1": v["macro_f1"],
               "val": v["per_class"]}
        state.history.append(row)
        # with --ema the run's end is kept: the average over its last steps is the point of
        # averaging, and the validation tiles are too few to choose between close averages
        improved = v["macro_f1"] > state.best_score or (bool(cfg.ema) and (is_last or bool(state.stopped)))
        if improved:
            state.best_score, state.best_step = v["macro_f1"], state.step
            _save_torch(out / "best.pt", kept.state_dict())
        f1s = " ".join(f"{k}={s['f1']:.3f}" for k, s in v["per_class"].items())
        if progress:
            bar.write(f"[{cfg.name}] step {state.step} {state.seconds:.0f}s loss {row['loss']:.4f} "
                      f"val {v['loss']:.4f} F1 {f1s} macro {v['macro_f1']:.4f}"
                      f"{(' (kept, exported)' if cfg.ema else ' (best, exported)') if improved and export else ''}")
        save_checkpoint()
        if improved:
            export_best(v, complete=is_last)
        elif is_last and state.best_step >= 0:
            # mark the exported best weights as coming from a finished run
            export_best(_best_val(state), complete=True)

    t_start = t_last = time.perf_counter()
    with _StopRequests() as stops:
        try:
            for x, y in batch_stream(cfg, state.step, end, sampler, workers, pin_memory=dev.type == "cuda"):
                step = state.step
                lr = lr_at(cfg, step)
                for group in opt.param_groups:
                    group["lr"] = lr
                x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                y = y.to(dev, non_blocking=True)
                with autocast(dev):
                    logits = model(x)
                logits = logits.float()
                loss = loss_fn(logits, y)
                if teacher is not None:
                    loss = loss + cfg.distill * distillation_loss(logits, teacher(x), y,
                                                                  class_weights=cfg.class_weights)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
                if averaged is not None:
                    averaged.update_parameters(model)
                running += float(loss.detach())
                running_n += 1
                state.step = step + 1
                now = time.perf_counter()
                state.seconds += now - t_last
                t_last = now
                bar.update(1)
                bar.set_postfix(loss=f"{running / running_n:.4f}", lr=f"{lr:.2e}", refresh=False)

                is_last = state.step == cfg.steps
                if not is_last and state.step < end:
                    if stops.requested:
                        state.stopped = stops.requested
                    elif time_limit is not None and now - t_start >= time_limit:
                        state.stopped = "time limit"
                if state.step % cfg.eval_every == 0 or is_last or state.stopped == "time limit":
                    validate(is_last)
                    running, running_n = 0.0, 0
                    t_last = time.perf_counter()
                elif state.step % cfg.checkpoint_every == 0 or state.step == end or state.stopped:
                    save_checkpoint()
                    t_last = time.perf_counter()
                if state.stopped:
                    break
        finally:
            bar.close()
    if state.step == end and not ckpt_path.exists():
        save_checkpoint()
    return state


def _moving_average(model: torch.nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights (torch.optim.swa_utils), updated
    after every optimiser step: w_avg <- decay * w_avg + (1 - decay) * w, starting from the
    weights after the first step. The networks hold no running statistics (GroupNorm), so
    averaging the parameters averages the whole model."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def full_history(rows: list[dict[str, Any]], init: dict[str, Any] | None) -> list[dict[str, Any]]:
    """This run's history after the history of the weights it started from (steps counted on)."""
    if not init:
        return list(rows)
    prior = [r for r in init.get("history", []) if r.get("step", 0) <= init["steps"]]
    offset, secs = init["steps"], init["seconds"]
    return prior + [{**r, "step": r["step"] + offset, "seconds": round(r.get("seconds", 0.0) + secs, 1)}
                    for r in rows]


def _best_val(state: RunState) -> dict[str, Any]:
    for row in state.history:
        if row["step"] == state.best_step:
            return {"per_class": row["val"], "macro_f1": row["val_macro_f1"], "loss": row["val_loss"]}
    return {}


def export_run(out: Path | str, models_dir: Path | str | None = None) -> dict[str, Any]:
    """Export the best weights of the run in ``out`` to the models folder."""
    from veer.errors import ModelFileError
    from veer.weights import save_history, save_model

    out = Path(out)
    card_path, best_path = out / "card.json", out / "best.pt"
    if not card_path.exists() or not best_path.exists():
        raise ModelFileError(f"{out}: no evaluated weights to export yet (need best.pt and card.json)")
    card = json.loads(card_path.read_text())
    cfg = TrainConfig(**card["training"]["config"])
    model = build_model(cfg.model, cfg.out_channels)
    model.load_state_dict(_load_torch(best_path))
    card = save_model(model, cfg.name, card, models_dir)
    hist = out / "full_history.json"
    if not hist.exists():
        hist = out / "history.json"
    history = json.loads(hist.read_text()) if hist.exists() else []
    save_history(cfg.name, history, models_dir)
    return card


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--task", choices=("joint", "binary"), default="joint")
    parser.add_argument("--target", choices=CLASS_NAMES, help="binary task: the positive class")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch", type=int, default=d.batch)
    parser.add_argument("--tile", type=int, default=d.tile)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--loss", choices=JOINT_LOSSES, default=d.loss, help="joint task only")
    parser.add_argument("--class-weights", type=float, nargs=3, default=list(d.class_weights),
                        metavar=("BG", "C1", "C2"))
    parser.add_argument("--overlap", type=float, default=d.overlap, metavar="WEIGHT",
                        help="weight of a term that teaches the model the pixels where the two curves overlap "
                             "(the truth's 255): both curves there, so the digitiser can follow the dashed "
                             "curve hidden under the solid one (default %(default)s: those pixels ignored)")
    parser.add_argument("--ema", type=float, default=d.ema, metavar="DECAY",
                        help="keep an exponential moving average of the weights (e.g. 0.998: about the last "
                             "500 steps) and validate and keep it instead of the raw weights; the average at the "
                             "run's end is exported, whatever its validation score (default 0: off)")
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--val-tiles", type=int, default=d.val_tiles)
    parser.add_argument("--scale-jitter", type=float, default=d.scale_jitter)
    parser.add_argument("--wrap-tiles", type=float, default=d.wrap_tiles, metavar="SHARE",
                        help="share of training tiles centred on a curve's wrap-around sweep, where the "
                             "models label worst (default %(default)s)")
    parser.add_argument("--model", type=str, default=None,
                        help='network config as JSON, changing keys of the --init weights\' network (or of the '
                             'default one), e.g. \'{"widths": [8, 16, 32, 64, 128]}\'; with --init it may only '
                             'grow the network: more "blocks", "attn_layers", "head_blocks" (the new ones start '
                             'as the identity) or "widths" below the bottleneck where each GroupNorm keeps its '
                             'group size, e.g. 8 -> 16 at full resolution (the new channels start feeding nothing)')
    parser.add_argument("--init", type=str, default=None,
                        help="start from these weights (a .pt with its model card beside it, e.g. "
                             "assets/models/joint.pt); the card counts the steps on from them")
    parser.add_argument("--teacher", type=str, default=None,
                        help="distil: also pull the answers towards these weights' (a .pt with its model card "
                             "beside it, of the same task), run in --teacher-views views at --teacher-scales")
    parser.add_argument("--distill", type=float, default=d.distill, metavar="WEIGHT",
                        help="weight of the teacher's term (KL divergence) next to the loss (default %(default)s)")
    parser.add_argument("--teacher-views", type=int, choices=(1, 2, 4), default=d.teacher_views,
                        help="views the teacher averages, as segment --views (default %(default)s)")
    parser.add_argument("--teacher-scales", type=str, default=",".join(f"{v:g}" for v in d.teacher_scales),
                        help="scales the teacher runs at, as segment --scales (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                        help="stop this call at the first step past MINUTES of training, validated, "
                             "checkpointed and its weights kept as at any validation; --resume continues "
                             "(Ctrl-C or SIGTERM likewise stop after the step in hand, checkpointed)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default VEER_THREADS or all)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that make the training batches ahead of the compute, the same batches "
                             "in the same order whatever their number (default: 0 on the CPU, one per core "
                             "but one on a GPU, at most 15)")
    parser.add_argument("--models-dir", type=Path, default=None, help="where to export (default assets/models)")
    parser.add_argument("--no-export", action="store_true", help="do not write into the models folder")
    parser.add_argument("--export", action="store_true",
                        help="only export the best weights of the run in --out, then stop")


def _init_network(init: str | None) -> dict[str, Any] | None:
    """The network config on the model card beside ``--init`` weights (None when unreadable:
    :func:`load_init` then says what is wrong)."""
    if not init:
        return None
    try:
        card = json.loads(Path(init).with_suffix(".json").read_text())
        return ModelConfig.from_dict(card.get("config", {})).to_dict()
    except (OSError, ValueError, TypeError, ConfigError):
        return None


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    # the network of the --init weights (or the default one); --model changes keys of it,
    # e.g. '{"head_blocks": 2}' grows the shipped network by two refine blocks,
    # '{"widths": [16, 16, 32, 64, 128]}' doubles its full-resolution channels
    model = _init_network(args.init) or ModelConfig().to_dict()
    if args.model:
        try:
            model.update(json.loads(args.model))
        except ValueError as exc:
            raise ConfigError(f"--model is not valid JSON ({exc})") from None
    return TrainConfig(task=args.task, target=args.target, steps=args.steps, batch=args.batch,
                       tile=args.tile, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
                       seed=args.seed, loss=args.loss, class_weights=tuple(args.class_weights),
                       eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                       val_tiles=args.val_tiles, scale_jitter=args.scale_jitter,
                       wrap_tiles=args.wrap_tiles, model=model, overlap=args.overlap, ema=args.ema,
                       init=args.init, teacher=args.teacher, distill=args.distill,
                       teacher_views=args.teacher_views, teacher_scales=args.teacher_scales)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = args.out or Path("runs") / cfg.name
    if args.export:
        card = export_run(out, args.models_dir)
        print(f"exported {cfg.name} (step {card['training']['steps']}) to "
              f"{args.models_dir or 'assets/models'}")
        return 0
    limit = args.time_limit * 60.0 if args.time_limit is not None else None
    state = train(cfg, out, resume=args.resume, device=args.device, threads=args.threads,
                  workers=args.workers, export=not args.no_export, models_dir=args.models_dir,
                  time_limit=limit)
    if state.stopped:
        why = f"at the time limit of {args.time_limit:g} minutes" if state.stopped == "time limit" else \
            {"SIGINT": "on Ctrl-C"}.get(state.stopped, f"on {state.stopped}")
        print(f"{cfg.name}: stopped {why} after step {state.step} of {cfg.steps}, checkpointed in {out}; "
              f"continue with the same options and --resume", file=sys.stderr)
        if state.stopped != "time limit":
            return 128 + int(getattr(signal, state.stopped))
    kept = "the moving average at the run's end" if cfg.ema else "best"
    if state.best_step >= 0:
        print(f"{cfg.name}: {state.step} steps in {state.seconds:.0f} s; kept weights ({kept}): validation "
              f"macro F1 {state.best_score:.4f} at step {state.best_step}; run folder {out}")
    return 0
