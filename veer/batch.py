"""Digitise a whole archive of scans on a Dask cluster, resumably.

One machine at about a second per megapixel needs days for an archive of tens
of thousands of scans; a cluster needs hours. This module spreads the scans
over the workers of a Dask cluster (``dask.distributed``): a LocalCluster on
this machine by default, or any existing cluster via ``--scheduler``. Each
scan is one task. Every worker loads the models once (the process-wide cache
of :func:`veer.infer.get_segmenter`, warmed by :class:`VeerWorkerPlugin`),
runs on its GPU if it has one, and writes per scan, into the output folder:

    <stem>.mask.png       labels 0 background / 1 curve1 / 2 curve2
    <stem>.conflict.png   separate mode only: 0 agreed, 1 claimed by >=2 masks, 2 by none
    <stem>.curves.csv     the depth-indexed curves (veer.digitize)
    <stem>.las            when a depth calibration is available (else the summary says why not)

plus, for the whole run, ``manifest.jsonl`` (what is finished) and
``summary.csv`` / ``summary.parquet`` (one row per scan; see
:data:`SUMMARY_COLUMNS`).

Usage::

    python -m veer batch scans/ more/*.tif one.png --out results/ [--workers 2] [--mode joint]
    python -m veer batch scans/ --out results/ --scheduler tcp://HOST:8786
    python -m veer batch --bench [--bench-scans 12]     # scans/minute with 1 and 2 workers here

From Python (the dashboard's results page uses :func:`open_batch` and the
readers after it: :func:`batch_figures`, :func:`batch_failures`,
:func:`scan_outputs`, :func:`open_scan`)::

    from veer.batch import run_batch, load_summary
    df = run_batch(["scans/"], "results/", mode="joint", workers=2)   # pandas.DataFrame
    df = load_summary("results/")

Resuming
--------
After each finished scan the driver appends one line to ``manifest.jsonl``
(input path, its sha256, size and mtime, the output files, the settings that
shaped them, the per-scan figures), and only after the worker has written all
of that scan's outputs, each with :func:`veer.io.atomic_write`. Killing the run
at any moment therefore loses nothing finished and leaves no half-written file
under a final name (stray ``.*.part`` temporaries are removed by the next run).
A rerun skips a scan whose manifest entry has the same settings and whose
outputs all exist, when its size and mtime are unchanged (as make and rsync
do). A scan whose size or mtime changed is hashed again on a worker: same
sha256 -> skipped, different -> redone. ``--verify`` hashes every scan.
Scans that failed are tried again on every rerun.

Digitising options
------------------
``--tracks`` and the calibration options (``--depth-points``, ``--depth-grid``,
``--scale``/``--left``/``--right``, ``--curves``, well header...) are those of
``veer digitize`` and apply to every scan of the run alike. Without a depth
calibration each scan gets its curves CSV in pixel rows and no LAS; the
summary's ``las_note`` says so. (Per-scan calibration files are not read yet:
run scans that share a depth scale together.)

Failures
--------
A scan veer cannot use (unreadable, damaged, too large: a
:class:`veer.errors.VeerError`) comes back as a ``failed`` row with its error;
the batch goes on. A worker that dies (out of memory, killed, a crash in native
code) is survived: Dask reruns its task elsewhere (tasks are submitted with
``retries=2``, and the scheduler reassigns the tasks of a lost worker); only a
scan that keeps killing workers ends as ``failed`` with "worker died".

Running on a real cluster
-------------------------
Every worker needs veer importable, the weights in ``assets/models`` and the
same view of the input and output paths (a shared file system: NFS, Lustre,
a mounted bucket), because workers read the scans and write the outputs
themselves; only small per-scan records travel back to the driver. E.g.::

    # on the scheduler node
    dask scheduler --port 8786
    # on every worker node (one worker per GPU, or per 4-8 cores on CPU nodes)
    cd /shared/veer && . .venv/bin/activate          # or: export PYTHONPATH=/shared/veer
    dask worker tcp://SCHEDULER:8786 --nworkers 1 --nthreads 1
    # from anywhere that sees the same paths
    python -m veer batch /shared/archive --out /shared/results --scheduler tcp://SCHEDULER:8786

``--nthreads 1`` keeps one scan per worker process at a time (the segmenter
itself is multi-threaded); on a CPU node give torch the cores with
``--threads-per-worker``. Before submitting anything the driver asks each
worker to load the models and write into the output folder, and stops with a
one-line error naming the worker that cannot (no weights, no shared folder).
On multi-GPU nodes run one worker per GPU (``CUDA_VISIBLE_DEVICES=i dask worker
...``, or dask-cuda's ``dask cuda worker``).

Test-only hook
--------------
``run_batch(segmenter=...)`` (and the hidden ``--segmenter`` flag) replaces
the shipped models: ``"threshold"`` is a built-in model-free segmenter that
labels dark ink as curve1 (for tests and dry runs of the plumbing);
``"random"`` runs seeded random-weight networks of the shipped size (the
benchmark's stand-in before weights exist: same cost, meaningless masks);
``"module:attr"`` or a picklable callable ``factory(mode, device) -> object
with .segment(gray)`` injects another. Never use it for real results.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

from veer.errors import ConfigError, VeerError, one_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
MANIFEST = "manifest.jsonl"
SUMMARY_CSV = "summary.csv"
SUMMARY_PARQUET = "summary.parquet"
LOCK = ".batch.lock"
RETRIES = 2
MODES = ("joint", "separate")
VEER_OUTPUT_SUFFIXES = (".mask.png", ".conflict.png")

# One row per scan in the summary, in this order.
SUMMARY_COLUMNS = [
    "input", "stem", "status", "error", "width", "height", "megapixels", "seconds",
    "device", "worker", "coverage_curve1", "coverage_curve2", "conflict_share", "gap_share",
    "n_tracks", "mask", "conflict", "curves_csv", "las", "las_note", "sha256",
]

PathLike = Union[str, Path]
SegmenterSpec = Union[None, str, Callable[..., Any]]


# --------------------------------------------------------------------------------------
# Inputs and output names
# --------------------------------------------------------------------------------------

def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _is_veer_output(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in VEER_OUTPUT_SUFFIXES)


def expand_inputs(inputs: Iterable[PathLike], exclude: PathLike | None = None) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> sorted unique paths.

    Folders and patterns yield image files (:data:`IMAGE_EXTENSIONS`) except
    hidden ones, masks (``*.mask.png``: veer's outputs and the synthetic truth
    beside a scan, ``*.conflict.png``) and anything under ``exclude`` (the
    output folder), so a rerun never takes its own masks for scans; a file
    named explicitly is always taken. A name that is neither a file, a folder
    nor a pattern matching something raises :class:`ConfigError`.
    """
    excl = Path(exclude).resolve() if exclude is not None else None
    found: dict[Path, None] = {}
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_file():
            found[path.resolve()] = None
        elif path.is_dir():
            for sub in sorted(path.rglob("*")):
                if (sub.is_file() and _is_image(sub) and not sub.name.startswith(".")
                        and not _is_veer_output(sub)):
                    res = sub.resolve()
                    if not _inside(res, excl):
                        found[res] = None
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            hits = 0
            for m in matches:
                mp = Path(m)
                if mp.is_file() and _is_image(mp) and not _is_veer_output(mp):
                    res = mp.resolve()
                    if not _inside(res, excl):
                        found[res] = None
                        hits += 1
            if not hits:
                raise ConfigError(f"{text}: the pattern matches no image "
                                  f"({'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})")
        else:
            raise ConfigError(f"{text}: no such file or folder")
    return sorted(found)


def output_paths(out_dir: PathLike, stem: str, mode: str, las: bool) -> dict[str, Path]:
    """The files one scan produces (kinds of mask, conflict, curves_csv, las that apply)."""
    out = Path(out_dir)
    paths = {"mask": out / f"{stem}.mask.png", "curves_csv": out / f"{stem}.curves.csv"}
    if mode == "separate":
        paths["conflict"] = out / f"{stem}.conflict.png"
    if las:
        paths["las"] = out / f"{stem}.las"
    return paths


def _path_hash(path: Path) -> str:
    return hashlib.sha1(path.as_posix().encode("utf-8")).hexdigest()[:8]


def assign_stems(paths: Sequence[Path], out_dir: PathLike,
                 known: Mapping[str, str] | None = None) -> dict[Path, str]:
    """Output stems for ``paths``: :func:`veer.io.safe_stem`, unique within ``out_dir``.

    A scan that has a stem in the manifest (``known``: input path -> stem)
    keeps it, so reruns with more or fewer inputs never rename outputs. A new
    scan gets its plain stem when nobody else claims it (case-insensitively:
    macOS and Windows folders are), else the stem plus ``-`` and 8 hex digits
    of a hash of its full path. A stem whose outputs would land on an input
    file is also suffixed: outputs never overwrite inputs.
    """
    from veer.io import safe_stem

    known = dict(known or {})
    out = Path(out_dir).resolve()
    input_set = {p.resolve() for p in paths}
    stems: dict[Path, str] = {}
    taken: set[str] = set()
    for p in paths:
        if str(p) in known:
            stems[p] = known[str(p)]
            taken.add(known[str(p)].lower())
    taken.update(s.lower() for s in known.values())
    new = [p for p in paths if p not in stems]
    claims: dict[str, list[Path]] = {}
    for p in new:
        claims.setdefault(safe_stem(p.name).lower(), []).append(p)
    # another scan once claimed this stem (even if it went by a suffixed name): suffix too,
    # so a scan whose manifest line was lost gets back the name it had
    for other in known:
        claims.setdefault(safe_stem(Path(other).name).lower(), []).append(Path(other))

    def collides(stem: str) -> bool:
        return any(q.resolve() in input_set for q in output_paths(out, stem, "separate", True).values())

    for p in new:
        base = safe_stem(p.name)
        stem = base
        if base.lower() in taken or len(claims[base.lower()]) > 1 or collides(base):
            stem = f"{base}-{_path_hash(p)}"
            n = 1
            while stem.lower() in taken or collides(stem):
                stem = f"{base}-{_path_hash(p)}-{n}"
                n += 1
        stems[p] = stem
        taken.add(stem.lower())
    return stems


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# Manifest: what is finished
# --------------------------------------------------------------------------------------

class Manifest:
    """``DIR/manifest.jsonl``: one JSON object per finished (or failed) scan, appended.

    Only the driver writes it, one ``write`` of one line per scan, flushed and
    fsynced, after the scan's outputs exist. A line cut short by a kill is
    ignored when read back; the latest line for an input wins.
    """

    def __init__(self, out_dir: PathLike):
        self.path = Path(out_dir) / MANIFEST
        self.entries: dict[str, dict] = {}
        self.lines = 0
        self._fh = None
        self.load()

    def load(self) -> dict[str, dict]:
        self.entries = {}
        self.lines = 0
        if not self.path.exists():
            return self.entries
        with open(self.path, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if isinstance(entry, dict) and "input" in entry:
                    self.entries[str(entry["input"])] = entry
                    self.lines += 1
        return self.entries

    def done(self, input_path: str) -> dict | None:
        entry = self.entries.get(input_path)
        return entry if entry and entry.get("status") == "done" else None

    def append(self, entry: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a manifest whose last line was cut short: start on a fresh line
            needs_newline = False
            if self.path.exists() and self.path.stat().st_size:
                with open(self.path, "rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    needs_newline = fh.read(1) != b"\n"
            self._fh = open(self.path, "a", encoding="utf-8")
            if needs_newline:
                self._fh.write("\n")
        self._fh.write(json.dumps(entry, default=_json_default, separators=(",", ":")) + "\n")
        self._fh.flush()
        with contextlib.suppress(OSError):
            os.fsync(self._fh.fileno())
        self.entries[str(entry["input"])] = entry
        self.lines += 1

    def compact(self) -> None:
        """Rewrite the manifest with one line per input (atomically) when it has grown."""
        from veer.io import atomic_write

        if self.lines <= 2 * max(1, len(self.entries)):
            return
        self.close()
        with atomic_write(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for entry in self.entries.values():
                    fh.write(json.dumps(entry, default=_json_default, separators=(",", ":")) + "\n")
        self.lines = len(self.entries)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder (an advisory lock; POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    fh = open(out_dir / LOCK, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"{out_dir}: another 'veer batch' is writing into this folder; "
                              f"wait for it or choose another --out") from None
        yield
    finally:
        fh.close()


def _remove_stale_parts(out_dir: Path) -> int:
    """Delete temporaries a killed run left behind (atomic_write's ``.<name>.*.part``)."""
    n = 0
    for p in out_dir.glob(".*.part"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


# --------------------------------------------------------------------------------------
# Per-scan work (runs on the workers)
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchOptions:
    """Settings every task needs. Everything here is picklable and small."""

    mode: str = "joint"
    device: str = "auto"
    models_dir: str | None = None
    tracks: tuple[Any, ...] | None = None                     # veer.digitize Tracks; None: find them
    calibration: Any = None                                   # veer.digitize.Calibration or None
    params: Any = None                                        # veer.digitize.TraceParams or None
    segmenter: SegmenterSpec = None                           # test-only hook (module docstring)
    torch_threads: int | None = None

    def config_key(self) -> str:
        """A digest of the settings that shape the outputs (a change means redo)."""
        seg = self.segmenter if isinstance(self.segmenter, (str, type(None))) else _spec_key(self.segmenter)
        payload = {"mode": self.mode, "tracks": _jsonable(self.tracks), "calibration": _jsonable(self.calibration),
                   "params": _jsonable(self.params),
                   "segmenter": seg, "models": _model_digests(self.mode, self.models_dir)
                   if self.segmenter is None else None}
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(obj):
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return _jsonable(asdict(obj))
    return repr(obj)


def _model_digests(mode: str, models_dir: str | None) -> list | None:
    """sha256 of each weight file the pipeline uses, from the model cards (None if unknown)."""
    try:
        from veer.weights import PIPELINES, load_card

        return [load_card(name, models_dir).get("sha256") for name in PIPELINES[mode]]
    except Exception:  # noqa: BLE001 - no cards yet: fall back to "unknown"
        return None


@dataclass(frozen=True)
class ScanJob:
    input: str
    stem: str
    out_dir: str
    size: int
    mtime_ns: int
    known_sha256: str | None = None     # from the manifest: skip if unchanged and outputs exist
    known_outputs: dict = field(default_factory=dict)


@dataclass
class _FakeResult:
    labels: np.ndarray
    conflict: np.ndarray | None
    device: str
    seconds: float
    mode: str
    probs: None = None
    tiles: int = 0


class ThresholdSegmenter:
    """TEST-ONLY, model-free: dark ink -> curve1, everything else background.

    Exists so tests and dry runs can exercise the batch plumbing (cluster,
    manifest, outputs, digitisation) without the trained weights.
    """

    def __init__(self, mode: str = "joint", device: str = "auto", threshold: int = 110):
        self.mode = mode
        self.threshold = threshold

    def segment(self, gray: np.ndarray, **_: Any) -> _FakeResult:
        t0 = time.perf_counter()
        labels = np.where(gray < self.threshold, 1, 0).astype(np.uint8)
        conflict = np.zeros_like(labels) if self.mode == "separate" else None
        return _FakeResult(labels, conflict, "CPU (threshold, test-only)", time.perf_counter() - t0, self.mode)


def threshold_segmenter(mode: str, device: str = "auto") -> ThresholdSegmenter:
    return ThresholdSegmenter(mode, device)


def random_segmenter(mode: str, device: str = "auto"):
    """TEST/BENCH-ONLY: the real segmenter around seeded random-weight VeerNets of the default size.

    Its masks are meaningless, but it costs what the shipped models cost, so
    the benchmark measures the cluster's throughput before any training.
    """
    import torch

    from veer.infer import Segmenter
    from veer.model import build_model

    torch.manual_seed(0)
    models = [build_model(None, out_channels=3)] if mode == "joint" else \
        [build_model(None, out_channels=1) for _ in range(3)]
    return Segmenter.from_models(mode, models, device=device)


_SEGMENTERS: dict[Any, Any] = {}    # per worker process: (spec, mode, device) -> segmenter
_WORKER_DEVICE: dict[str, str] = {}  # per worker process: requested -> resolved device string


def _resolve_factory(spec: SegmenterSpec) -> Callable[..., Any]:
    if spec is None:
        from veer.infer import get_segmenter

        return get_segmenter
    if callable(spec):
        return spec
    if spec == "threshold":
        return threshold_segmenter
    if spec == "random":
        return random_segmenter
    if isinstance(spec, str) and ":" in spec:
        import importlib

        mod, _, attr = spec.partition(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--segmenter {spec}: cannot import it ({exc})") from None
    raise ConfigError(f"--segmenter {spec!r}: use 'threshold', 'random' or 'module:function'")


def _worker_device(requested: str) -> str:
    """The device this worker process uses for ``requested`` (auto -> its GPU if it has one)."""
    if requested in _WORKER_DEVICE:
        return _WORKER_DEVICE[requested]
    device = requested
    if requested == "auto":
        try:
            import torch

            if torch.cuda.is_available():
                device = "cuda"
        except ImportError:  # pragma: no cover
            pass
    _WORKER_DEVICE[requested] = device
    return device


def _spec_key(spec: SegmenterSpec) -> Any:
    """A cache key for a segmenter spec that survives pickling (tasks unpickle a fresh copy)."""
    if spec is None or isinstance(spec, str):
        return spec
    import pickle

    try:
        return hashlib.sha256(pickle.dumps(spec)).hexdigest()
    except Exception:  # noqa: BLE001 - unpicklable locally: one per object
        return id(spec)


def get_worker_segmenter(options: BatchOptions):
    """The segmenter for ``options`` in this process, built once (models loaded once)."""
    device = _worker_device(options.device)
    key = (_spec_key(options.segmenter), options.mode, device, options.models_dir)
    seg = _SEGMENTERS.get(key)
    if seg is None:
        factory = _resolve_factory(options.segmenter)
        if options.segmenter is None:
            seg = factory(options.mode, device=device, models_dir=options.models_dir)
        else:
            seg = factory(options.mode, device)
        _SEGMENTERS[key] = seg
    return seg


def _set_threads(n: int | None) -> None:
    if not n:
        return
    try:
        from veer.device import set_cpu_threads

        set_cpu_threads(n)
    except ImportError:  # pragma: no cover
        pass


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def _coverage(table, labels: np.ndarray) -> dict[str, float]:
    """Share of (row, track) places where curve1 / curve2 was found.

    The digitised table has one row per image row and track; a track whose
    curve is missing over half the scan gives 0.5 whatever the other tracks do.
    """
    out: dict[str, float] = {}
    for name in ("curve1", "curve2"):
        col = f"{name}_x"
        if table is not None and len(table) and col in table.columns:
            out[f"coverage_{name}"] = float(table[col].notna().mean())
        else:
            out[f"coverage_{name}"] = 0.0
    return out


LAS_NOTE = ("no LAS: no depth calibration; give --depth-points ROW:DEPTH,ROW:DEPTH "
            "or --depth-grid SPACING with one --depth-points anchor")


def _digitize_and_write(labels: np.ndarray, gray: np.ndarray, paths: dict[str, Path],
                        options: BatchOptions, label: str, shared: np.ndarray | None = None) -> dict[str, Any]:
    """Curves CSV (and LAS when calibrated) with veer.digitize; returns record fields."""
    from veer import digitize as dg

    try:
        log = dg.digitize_labels(labels, gray=gray, tracks=list(options.tracks) if options.tracks else None,
                                 calibration=options.calibration, params=options.params, shared=shared)
    except VeerError as exc:
        raise type(exc)(f"{label}: {exc}") from None
    fields: dict[str, Any] = {"curves_csv": str(dg.write_csv(log, paths["curves_csv"])),
                              "n_tracks": len(log.tracks), "las": "", "las_note": LAS_NOTE}
    if log.calibrated:
        fields["las"] = str(dg.write_las(log, paths["las"]))
        fields["las_note"] = ""
    fields.update(_coverage(log.table, labels))
    return fields


def _base_record(job: ScanJob) -> dict[str, Any]:
    return {"input": job.input, "stem": job.stem, "status": "failed", "error": "",
            "size": job.size, "mtime_ns": job.mtime_ns}


def process_scan(job: ScanJob, options: BatchOptions) -> dict[str, Any]:
    """Segment and digitise one scan; write its outputs; return its summary record.

    Runs on a worker. A :class:`VeerError` (the scan's fault) is returned as a
    ``failed`` record, never raised, so Dask does not retry it; anything else
    (a bug, a crash) is raised and retried by Dask.
    """
    from veer.classes import write_mask
    from veer.io import read_scan, save_png

    rec = _base_record(job)
    rec["worker"] = _worker_name()
    t0 = time.perf_counter()
    try:
        try:
            data = Path(job.input).read_bytes()
        except OSError as exc:
            raise VeerError(f"{job.input}: cannot be read ({exc.strerror or exc})") from None
        rec["sha256"] = sha256_bytes(data)
        if (job.known_sha256 and job.known_sha256 == rec["sha256"] and job.known_outputs
                and all(Path(p).exists() for p in job.known_outputs.values() if p)):
            rec["status"] = "skipped"
            return rec
        scan = read_scan(data, name=job.input)
        gray = scan.gray
        rec.update(width=int(gray.shape[1]), height=int(gray.shape[0]),
                   megapixels=round(gray.size / 1e6, 4))
        _set_threads(options.torch_threads)
        segmenter = get_worker_segmenter(options)
        result = segmenter.segment(gray)
        labels = np.asarray(result.labels, dtype=np.uint8)
        rec["device"] = str(getattr(result, "device", "") or "")
        paths = output_paths(job.out_dir, job.stem, options.mode, las=True)
        outputs: dict[str, str] = {}
        write_mask(paths["mask"], labels)
        outputs["mask"] = rec["mask"] = str(paths["mask"])  # kept even if digitising fails below
        conflict = getattr(result, "conflict", None)
        if options.mode == "separate" and conflict is not None:
            conflict = np.asarray(conflict, dtype=np.uint8)
            save_png(paths["conflict"], conflict)
            outputs["conflict"] = str(paths["conflict"])
            rec["conflict_share"] = float((conflict == 1).mean())
            rec["gap_share"] = float((conflict == 2).mean())
        fields = _digitize_and_write(labels, gray, paths, options, job.input, getattr(result, "shared", None))
        outputs["curves_csv"] = fields["curves_csv"]
        if fields.get("las"):
            outputs["las"] = fields["las"]
        rec.update({k: v for k, v in fields.items() if k not in ("curves_csv", "las")})
        rec.update(outputs)
        rec["outputs"] = outputs
        rec["status"] = "done"
    except VeerError as exc:
        rec["status"] = "failed"
        rec["error"] = str(exc)
    rec["seconds"] = round(time.perf_counter() - t0, 4)
    return rec


# --------------------------------------------------------------------------------------
# Worker setup
# --------------------------------------------------------------------------------------

def _plugin_class():
    """:class:`VeerWorkerPlugin`, built on first use so that importing veer.batch
    (the dashboard only wants :func:`load_summary`) does not import dask."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class VeerWorkerPlugin(WorkerPlugin):
        """Prepares every worker that joins: torch threads, device, models loaded once.

        Registered with the client, so workers that join later or are restarted
        after a crash get the same setup. Loading errors are kept, not raised:
        tasks then report them per scan, and the driver's preflight reports them
        once, naming the worker.
        """

        name = "veer-batch"

        def __init__(self, options: BatchOptions, warm: bool = True):
            self.options = options
            self.warm = warm

        def setup(self, worker) -> None:  # noqa: D401 - Dask hook
            _set_threads(self.options.torch_threads)
            if self.warm:
                with contextlib.suppress(Exception):
                    get_worker_segmenter(self.options)

    VeerWorkerPlugin.__module__ = __name__
    VeerWorkerPlugin.__qualname__ = "VeerWorkerPlugin"
    return VeerWorkerPlugin


def __getattr__(name: str):  # PEP 562: veer.batch.VeerWorkerPlugin, importable (and picklable) by name
    if name == "VeerWorkerPlugin":
        cls = _plugin_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _preflight(options: BatchOptions, out_dir: str) -> dict[str, str]:
    """Run on each worker before any scan: can it load the models and write the outputs?"""
    info: dict[str, str] = {"error": ""}
    try:
        import veer.classes  # noqa: F401 - import the per-scan modules now, not in the first scan
        import veer.digitize  # noqa: F401
        import veer.io  # noqa: F401

        _set_threads(options.torch_threads)
        seg = get_worker_segmenter(options)
        info["device"] = _worker_device(options.device)
        info["device"] = str(getattr(seg, "device_name", "") or info["device"])
        out = Path(out_dir)
        if not out.is_dir():
            raise ConfigError(f"the output folder {out_dir} is not visible on this worker "
                              f"(workers need a shared file system)")
        fd, tmp = tempfile.mkstemp(prefix=".probe.", suffix=".part", dir=out)
        os.close(fd)
        os.unlink(tmp)
    except VeerError as exc:
        info["error"] = str(exc)
    except OSError as exc:
        info["error"] = f"cannot write into {out_dir} ({exc.strerror or exc})"
    except ImportError as exc:
        info["error"] = f"veer is not importable here ({exc}); put the repository on the worker's PYTHONPATH"
    return info


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------

def _default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1) // 2 or 1))


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int, torch_threads: int | None) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if scheduler in (None, "", "local"):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        try:
            with Client(cluster) as client:
                yield client
        finally:
            with contextlib.suppress(Exception):
                cluster.close()
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot connect ({exc}); "
                              f"is 'dask scheduler' running there?") from None
        try:
            yield client
        finally:
            client.close()


def _fmt_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return "worker died while processing this scan (tried on several workers)"
    return f"internal error ({name}: {exc}); retried {RETRIES} times"


def _summary_row(rec: Mapping[str, Any], status: str | None = None) -> dict[str, Any]:
    row = {c: rec.get(c) for c in SUMMARY_COLUMNS}
    if status:
        row["status"] = status
        if status == "skipped":
            row["error"] = ""
    for c in ("error", "device", "worker", "mask", "conflict", "curves_csv", "las", "las_note", "sha256"):
        row[c] = "" if row[c] is None else str(row[c])
    return row


def summary_frame(rows: Sequence[Mapping[str, Any]]):
    import pandas as pd

    df = pd.DataFrame([_summary_row(r) for r in rows], columns=SUMMARY_COLUMNS)
    for c in ("width", "height", "n_tracks"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in ("megapixels", "seconds", "coverage_curve1", "coverage_curve2", "conflict_share", "gap_share"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def write_summary(df, out_dir: PathLike) -> dict[str, Path]:
    """``summary.csv`` and, if pyarrow is installed, ``summary.parquet`` (atomically)."""
    from veer.io import atomic_write

    out = Path(out_dir)
    written = {}
    with atomic_write(out / SUMMARY_CSV) as tmp:
        df.to_csv(tmp, index=False)
    written["csv"] = out / SUMMARY_CSV
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    with atomic_write(out / SUMMARY_PARQUET) as tmp:
        df.to_parquet(tmp, index=False)
    written["parquet"] = out / SUMMARY_PARQUET
    return written


def load_summary(out_dir: PathLike):
    """The summary of the batch in ``out_dir`` as a DataFrame.

    Reads ``summary.parquet`` (or ``summary.csv``); for a run that was killed
    before it wrote them, rebuilds the table from ``manifest.jsonl``. Raises
    :class:`ConfigError` when the folder holds no batch, or when its summary is
    damaged or is not a veer batch summary (one line, naming the file).
    """
    import pandas as pd

    out = Path(out_dir)
    parquet_error = None
    if (out / SUMMARY_PARQUET).exists():
        try:
            return _checked_summary(pd.read_parquet(out / SUMMARY_PARQUET), out / SUMMARY_PARQUET)
        except (ImportError, OSError, ValueError) as exc:  # damaged or no pyarrow: the CSV is the same table
            parquet_error = exc
    if (out / SUMMARY_CSV).exists():
        try:
            df = pd.read_csv(out / SUMMARY_CSV, keep_default_na=False, na_values=[""],
                             dtype={c: str for c in _TEXT_COLUMNS})  # an all-empty column stays text
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise _damaged(out / SUMMARY_CSV, exc) from None
        df = _checked_summary(df, out / SUMMARY_CSV)
        for c in _TEXT_COLUMNS:
            if c in df:
                df[c] = df[c].fillna("").astype(str)
        for c in ("width", "height", "n_tracks"):
            if c in df:
                df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        return df[[c for c in SUMMARY_COLUMNS if c in df.columns]]
    if parquet_error is not None and not isinstance(parquet_error, ImportError):
        raise _damaged(out / SUMMARY_PARQUET, parquet_error)
    manifest = Manifest(out)
    if manifest.entries:
        return summary_frame(list(manifest.entries.values()))
    raise ConfigError(f"{out}: no batch summary here (summary.csv, summary.parquet or manifest.jsonl); "
                      f"run 'python -m veer batch ... --out {out}' first")


_TEXT_COLUMNS = ("error", "device", "worker", "mask", "conflict", "curves_csv", "las", "las_note", "sha256")
#: Columns without which a table is not a batch summary.
REQUIRED_SUMMARY_COLUMNS = ("stem", "status")


def _damaged(path: Path, exc: BaseException) -> ConfigError:
    return ConfigError(f"{path}: the batch summary is damaged ({one_line(exc)}); rerun "
                       f"'python -m veer batch ... --out {path.parent}' to rewrite it")


def _checked_summary(df, path: Path):
    missing = [c for c in REQUIRED_SUMMARY_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: not a veer batch summary (no column {', '.join(repr(c) for c in missing)}); "
                          f"give the --out folder of 'python -m veer batch'")
    return df


# --------------------------------------------------------------------------------------
# Reading a finished batch (the dashboard's results page)
# --------------------------------------------------------------------------------------

#: The per-scan files a batch may write, in the order they are offered.
OUTPUT_KINDS = ("mask", "conflict", "curves_csv", "las")
#: Statuses of scans whose outputs exist (``skipped``: finished by an earlier run).
FINISHED = ("done", "skipped")
MAKE_BATCH = "python -m veer batch SCANS... --out {out}"


def open_batch(out_dir: PathLike | None):
    """The summary of the batch whose output folder is ``out_dir`` (:func:`load_summary`).

    Checks the folder first so that every way of getting it wrong (nothing
    given, no such folder, a file, an unreadable folder, no or a damaged
    summary) is a one-line :class:`ConfigError` that says what to do.
    """
    text = "" if out_dir is None else str(out_dir).strip()
    if not text:
        raise ConfigError(f"give the output folder of a batch run (made by '{MAKE_BATCH.format(out='DIR')}')")
    out = Path(text).expanduser()
    if not out.exists():
        raise ConfigError(f"{out}: no such folder; make a batch there with '{MAKE_BATCH.format(out=out)}'")
    if not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a folder; give the --out folder of a batch run")
    try:
        return load_summary(out)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot be read ({exc.strerror or one_line(exc)})") from None


def _status(df):
    return df["status"].fillna("").astype(str)


def _text(value: Any) -> str:
    """A summary cell as text: "" for a missing value (None, NaN, pd.NA)."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def _mean_or_none(values) -> float | None:
    import pandas as pd

    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def batch_figures(df) -> dict[str, Any]:
    """Headline figures of a batch summary.

    ``scans`` rows in all; ``done`` scans with outputs (of which ``skipped``
    were finished by an earlier run); ``failed``; ``megapixels`` summed and
    ``median_seconds`` per scan over the finished scans; ``devices`` that ran
    them (sorted, unique); ``coverage_curve1`` / ``coverage_curve2``: the mean
    share of (row, track) places where each curve was found. Figures with no
    scan to average over are None.
    """
    import pandas as pd

    status = _status(df)
    finished = df[status.isin(FINISHED)]
    seconds = pd.to_numeric(finished.get("seconds", pd.Series(dtype=float)), errors="coerce").dropna()
    mpx = pd.to_numeric(finished.get("megapixels", pd.Series(dtype=float)), errors="coerce").dropna()
    devices = sorted({str(d) for d in finished.get("device", []) if isinstance(d, str) and d})
    return {"scans": int(len(df)), "done": int(len(finished)), "skipped": int((status == "skipped").sum()),
            "failed": int((status == "failed").sum()), "megapixels": float(mpx.sum()),
            "median_seconds": float(seconds.median()) if len(seconds) else None, "devices": devices,
            "coverage_curve1": _mean_or_none(finished.get("coverage_curve1", [])),
            "coverage_curve2": _mean_or_none(finished.get("coverage_curve2", []))}


def batch_failures(df):
    """The failed scans and why: a frame of stem, input, error (summary order)."""
    cols = [c for c in ("stem", "input", "error") if c in df.columns]
    return df.loc[_status(df) == "failed", cols].reset_index(drop=True)


def browsable_scans(df) -> list[str]:
    """Stems of the finished scans (those with outputs to show), in summary order."""
    return [str(s) for s in df.loc[_status(df).isin(FINISHED), "stem"]]


def _scan_row(df, stem: str) -> dict[str, Any]:
    rows = df[df["stem"].astype(str) == str(stem)]
    if not len(rows):
        raise ConfigError(f"{stem}: no such scan in this batch summary")
    return rows.iloc[0].to_dict()


def scan_outputs(out_dir: PathLike, df, stem: str) -> dict[str, Path]:
    """The files of scan ``stem`` that exist in ``out_dir``: kind (:data:`OUTPUT_KINDS`) -> path.

    The summary's paths are looked up by name inside ``out_dir`` (so a batch
    folder that was moved or mounted elsewhere still opens, and a summary never
    points the dashboard outside its folder); a kind the summary leaves empty
    (no LAS without a calibration, no conflict map in joint mode) is absent.
    """
    row = _scan_row(df, stem)
    out = Path(out_dir).expanduser()
    defaults = output_paths(out, str(stem), "separate", las=True)
    found: dict[str, Path] = {}
    for kind in OUTPUT_KINDS:
        if kind in row:
            recorded = _text(row[kind])
            path = out / Path(recorded).name if recorded else None
        else:  # an older summary without this column: the name the batch gives it
            path = defaults[kind]
        if path is not None and path.is_file():
            found[kind] = path
    return found


def read_output(path: PathLike) -> bytes:
    """The bytes of one output file (for a download), or a one-line :class:`ConfigError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or one_line(exc)})") from None


def read_curves(source: PathLike | bytes, name: str | None = None):
    """A curves CSV the batch wrote (veer.digitize's per-row table), from a path or its bytes, as a DataFrame."""
    import io

    import pandas as pd

    label = name or ("curves CSV" if isinstance(source, (bytes, bytearray)) else str(source))
    data = source if isinstance(source, (bytes, bytearray)) else read_output(source)
    try:
        return pd.read_csv(io.BytesIO(data))
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"{label}: the curves CSV is damaged ({one_line(exc)}); rerun the batch to redo it") \
            from None


@dataclass
class ScanView:
    """What the results page shows for one scan of a batch."""

    stem: str
    row: dict[str, Any]              # its summary row
    outputs: dict[str, Path]         # :func:`scan_outputs`
    files: dict[str, bytes]          # each output's content, for the downloads
    labels: np.ndarray               # the mask: 0 background, 1 curve1, 2 curve2
    conflict: np.ndarray | None      # separate mode: 0 agreed, 1 claimed by >=2 masks, 2 by none
    curves: Any                      # the curves CSV as a DataFrame, or None when there is none


def open_scan(out_dir: PathLike, df, stem: str) -> ScanView:
    """Read scan ``stem``'s outputs from the batch in ``out_dir``: mask, conflict map, curves, LAS.

    Each file is read once (its bytes are kept for the downloads). A missing
    mask or an unreadable or damaged file is a one-line :class:`VeerError`.
    """
    from veer.classes import read_mask

    row = _scan_row(df, stem)
    outputs = scan_outputs(out_dir, df, stem)
    if "mask" not in outputs:
        raise ConfigError(f"{stem}: its mask ({stem}.mask.png) is not in {out_dir}; rerun the batch to redo it")
    files = {kind: read_output(path) for kind, path in outputs.items()}
    labels = read_mask(files["mask"], allow_ignore=False, name=str(outputs["mask"]))
    conflict = None
    if "conflict" in files:
        conflict = read_mask(files["conflict"], labels.shape, allow_ignore=False, name=str(outputs["conflict"]))
    curves = read_curves(files["curves_csv"], name=str(outputs["curves_csv"])) if "curves_csv" in files else None
    return ScanView(str(stem), row, outputs, files, labels, conflict, curves)


def run_batch(inputs: Iterable[PathLike] | PathLike, out_dir: PathLike, *, mode: str = "joint",
              scheduler: str | None = None, workers: int | None = None,
              threads_per_worker: int | None = None, device: str = "auto",
              tracks: Sequence[Any] | None = None, calibration: Any = None, params: Any = None,
              models_dir: PathLike | None = None, verify: bool = False, progress: bool = True,
              segmenter: SegmenterSpec = None, client: Any = None, window: int | None = None):
    """Digitise every scan in ``inputs`` into ``out_dir``; return the summary DataFrame.

    ``inputs``: files, folders (searched recursively) and glob patterns.
    ``scheduler``: None/"local" starts a LocalCluster of ``workers`` processes
    (1 task thread each; torch uses ``threads_per_worker`` threads, default
    cores / workers); "tcp://HOST:PORT" uses that cluster as it is. An
    existing ``distributed.Client`` may be passed as ``client`` instead.
    ``segmenter`` is a test-only hook (see the module docstring).

    The frame has :data:`SUMMARY_COLUMNS`; ``df.attrs["run"]`` holds the run's
    timings (startup and processing seconds, scans per minute, workers).
    """
    from distributed import as_completed

    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: choose joint or separate")
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    paths = expand_inputs(inputs, exclude=out)
    if not paths:
        raise ConfigError("no scans found in the inputs (images: png, jpg, jpeg, tif, tiff, bmp, gif)")
    local = client is None and scheduler in (None, "", "local")
    n_workers = int(workers or _default_workers())
    if n_workers < 1:
        raise ConfigError("--workers must be at least 1")
    if threads_per_worker is None and local:
        threads_per_worker = max(1, (os.cpu_count() or 1) // n_workers)
    if tracks is not None and not isinstance(tracks, str):
        from veer.digitize import as_track

        tracks = tuple(sorted((as_track(t) for t in tracks), key=lambda t: t.x0))
    elif isinstance(tracks, str):
        from veer.digitize import parse_tracks

        tracks = parse_tracks(tracks)
        tracks = tuple(tracks) if tracks else None
    options = BatchOptions(mode=mode, device=device, models_dir=str(models_dir) if models_dir else None,
                           tracks=tracks or None, calibration=calibration, params=params,
                           segmenter=segmenter, torch_threads=threads_per_worker)
    config = options.config_key()

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, Any] = {"workers": n_workers if local else None, "scans": len(paths)}
    with _locked(out):
        _remove_stale_parts(out)
        manifest = Manifest(out)
        stems = assign_stems(paths, out, {k: v["stem"] for k, v in manifest.entries.items() if "stem" in v})
        records: dict[str, dict] = {}
        todo: list[ScanJob] = []
        for p in paths:
            key = str(p)
            try:
                st = p.stat()
            except OSError as exc:
                records[key] = {"input": key, "stem": stems[p], "status": "failed",
                                "error": f"{p}: cannot be read ({exc.strerror or exc})"}
                continue
            entry = manifest.done(key)
            usable = (entry is not None and entry.get("config") == config
                      and entry.get("stem") == stems[p]
                      and all(Path(f).exists() for f in (entry.get("outputs") or {}).values() if f)
                      and bool(entry.get("outputs")))
            if usable and not verify and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
                records[key] = dict(entry, status="skipped")
                continue
            todo.append(ScanJob(input=key, stem=stems[p], out_dir=str(out), size=st.st_size,
                                mtime_ns=st.st_mtime_ns,
                                known_sha256=entry.get("sha256") if usable else None,
                                known_outputs=dict(entry.get("outputs") or {}) if usable else {}))
        # longest first: big scans started last would idle the rest of the cluster at the end
        todo.sort(key=lambda j: -j.size)
        timings["todo"] = len(todo)
        n_skipped_fast = len(paths) - len(todo)
        started = not todo  # nothing to do: the summary is still rewritten for these inputs
        try:
            if todo:
                t_start = time.perf_counter()
                with contextlib.ExitStack() as stack:
                    if client is None:
                        client = stack.enter_context(_client(scheduler, n_workers, threads_per_worker))
                    _prepare_workers(client, options, out)
                    timings["startup_s"] = time.perf_counter() - t_start
                    n_threads = sum(client.nthreads().values()) or 1
                    timings["workers"] = len(client.nthreads())
                    win = window or max(8, 4 * n_threads)
                    t0 = time.perf_counter()
                    started = True
                    _drive(client, todo, options, manifest, records, config, win, progress,
                           n_skipped_fast, as_completed)
                    timings["processing_s"] = time.perf_counter() - t0
        finally:
            manifest.close()
            with contextlib.suppress(OSError):
                manifest.compact()
            df = summary_frame([records[str(p)] for p in paths if str(p) in records])
            if started:  # a run that could not start (no workers, no models) keeps the last summary
                with contextlib.suppress(OSError):
                    write_summary(df, out)
    proc = timings.get("processing_s")
    n_done = int((df["status"] == "done").sum()) if len(df) else 0
    timings["done"] = n_done
    timings["scans_per_minute"] = (60.0 * len(todo) / proc) if proc else None
    df.attrs["run"] = timings
    return df


def _prepare_workers(client, options: BatchOptions, out: Path) -> None:
    """Register the worker plugin and check every worker can do the job (fail fast)."""
    if not client.nthreads():
        try:
            client.wait_for_workers(1, timeout=60)
        except (TimeoutError, OSError):
            raise ConfigError("the Dask scheduler has no workers; start some with "
                              "'dask worker tcp://SCHEDULER:8786 --nthreads 1'") from None
    plugin_cls = globals().get("VeerWorkerPlugin") or __getattr__("VeerWorkerPlugin")
    client.register_plugin(plugin_cls(options, warm=True), name=plugin_cls.name)
    answers = client.run(_preflight, options, str(out))
    bad = {w: a["error"] for w, a in answers.items() if a.get("error")}
    if bad:
        worker, error = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more workers)" if len(bad) > 1 else ""
        raise ConfigError(f"worker {worker}{more}: {error}")


def _drive(client, todo: list[ScanJob], options: BatchOptions, manifest: Manifest,
           records: dict[str, dict], config: str, window: int, progress: bool,
           n_skipped: int, as_completed) -> None:
    from tqdm.auto import tqdm

    jobs = iter(todo)
    by_key: dict[str, ScanJob] = {}
    ac = as_completed()

    def submit_next() -> bool:
        job = next(jobs, None)
        if job is None:
            return False
        fut = client.submit(process_scan, job, options, retries=RETRIES, pure=False,
                            key=f"veer-scan-{job.stem}-{os.urandom(4).hex()}")
        by_key[fut.key] = job
        ac.add(fut)
        return True

    for _ in range(window):
        if not submit_next():
            break
    failed = 0
    bar = tqdm(total=len(todo), unit="scan", disable=not progress, desc="batch",
               postfix={"skipped": n_skipped, "failed": 0}, file=sys.stderr)
    try:
        for fut in ac:
            job = by_key.pop(fut.key)
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker crash or a bug, after retries
                rec = _base_record(job)
                rec["error"] = _fmt_error(exc)
            fut.release()
            rec["config"] = config
            if rec.get("status") == "skipped":
                # unchanged content (mtime moved): keep the old figures, refresh size/mtime
                old = manifest.entries.get(job.input, {})
                rec = dict(old, size=job.size, mtime_ns=job.mtime_ns, status="done")
                manifest.append(rec)
                records[job.input] = dict(rec, status="skipped")
            else:
                manifest.append(rec)
                records[job.input] = rec
                if rec.get("status") == "failed":
                    failed += 1
                    if progress:
                        bar.write(f"failed: {rec['error']}")
            bar.set_postfix({"skipped": n_skipped, "failed": failed}, refresh=False)
            bar.update(1)
            submit_next()
    except BaseException:
        for f in list(ac.futures):
            with contextlib.suppress(Exception):
                f.cancel()
        raise
    finally:
        bar.close()


# --------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------

def _make_scans(folder: Path, n: int, height: int, width: int, seed: int = 0) -> list[Path]:
    """``n`` synthetic logs (veer.synth) in ``folder``; returns the scan files."""
    from veer.synth import generate_log, save_log

    folder.mkdir(parents=True, exist_ok=True)
    return [Path(save_log(generate_log(seed + i, height=height, width=width), folder, f"scan{i:04d}")["image"])
            for i in range(n)]


def bench_batch(n_scans: int = 12, workers_list: Sequence[int] = (1, 2), *, height: int = 1024,
                width: int = 512, mode: str = "joint", segmenter: SegmenterSpec = None,
                threads_per_worker: int | None = 1, work_dir: PathLike | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Scans per minute with each worker count in ``workers_list`` on this machine.

    Generates ``n_scans`` synthetic logs once, then runs a fresh batch for each
    worker count (LocalCluster). Each worker gets ``threads_per_worker`` torch
    threads (default 1, so the ratio shows what adding workers, i.e. nodes,
    buys; None splits the cores among the workers instead). The time counted
    is from the first submitted scan to the last finished one; the cluster
    start and the model loading (done once per worker before any scan) are
    reported apart. Returns {"runs": [...], "scaling": speed of the last
    worker count / speed of the first, ...}.
    """
    with tempfile.TemporaryDirectory(prefix="veer-bench-", dir=work_dir) as tmp:
        root = Path(tmp)
        scans = _make_scans(root / "scans", n_scans, height, width)
        mpx = sum(int(np.prod(_image_shape(p))) for p in scans) / 1e6
        runs = []
        for n in workers_list:
            threads = threads_per_worker or max(1, (os.cpu_count() or 1) // n)
            df = run_batch(scans, root / f"out-{n}", mode=mode, workers=n, progress=progress,
                           segmenter=segmenter, threads_per_worker=threads)
            t = df.attrs["run"]
            runs.append({"workers": n, "threads_per_worker": threads,
                         "scans": n_scans, "megapixels": round(mpx, 2),
                         "done": int((df["status"] == "done").sum()),
                         "scan_s_mean": round(float(df["seconds"].mean()), 2),
                         "startup_s": round(t.get("startup_s") or 0.0, 2),
                         "processing_s": round(t.get("processing_s") or 0.0, 2),
                         "scans_per_minute": round(t.get("scans_per_minute") or 0.0, 2),
                         "megapixels_per_minute": round(60 * mpx / (t.get("processing_s") or math.inf), 2)})
    base = runs[0]["scans_per_minute"] or math.nan
    return {"runs": runs, "scaling": round(runs[-1]["scans_per_minute"] / base, 3) if base else None,
            "cpu_count": os.cpu_count(), "height": height, "width": width, "mode": mode,
            "segmenter": segmenter if isinstance(segmenter, (str, type(None))) else repr(segmenter)}


def _image_shape(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        return img.height, img.width


def format_bench(figures: Mapping[str, Any]) -> str:
    lines = [f"veer batch benchmark: {figures['runs'][0]['scans']} scans of "
             f"{figures['height']}x{figures['width']} px, mode {figures['mode']}, "
             f"{figures['cpu_count']} CPU cores"]
    lines.append(f"{'workers':>7} {'torch thr':>9} {'startup s':>9} {'work s':>8} {'s/scan':>7} "
                 f"{'scans/min':>9} {'Mpx/min':>8}")
    for r in figures["runs"]:
        lines.append(f"{r['workers']:>7} {r['threads_per_worker']:>9} {r['startup_s']:>9.1f} "
                     f"{r['processing_s']:>8.1f} {r['scan_s_mean']:>7.2f} {r['scans_per_minute']:>9.1f} "
                     f"{r['megapixels_per_minute']:>8.1f}")
    lines.append("(s/scan: mean time one worker spent on a scan; if it grows with the workers, "
                 "the cores are saturated)")
    if figures.get("scaling") is not None:
        lines.append(f"scaling {figures['runs'][-1]['workers']} vs {figures['runs'][0]['workers']} "
                     f"workers: x{figures['scaling']:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Reruns skip finished scans (manifest.jsonl in --out). Exit status 0 when every scan "
                     "is done or skipped, 1 when some failed (errors in summary.csv). Cluster set-up: "
                     "see the module docstring of veer/batch.py.")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="scan files, folders (searched recursively) or glob patterns")
    parser.add_argument("--out", help="output folder (masks, curves, LAS, manifest, summary)")
    parser.add_argument("--scheduler", default="local",
                        help="'local' (default: a LocalCluster here) or tcp://HOST:PORT of a running Dask scheduler")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"LocalCluster worker processes (default {_default_workers()})")
    parser.add_argument("--threads-per-worker", type=int, default=None,
                        help="torch threads per worker (default: cores / workers locally)")
    parser.add_argument("--mode", choices=MODES, default="joint",
                        help="joint 3-class model or 3 separate binary masks")
    parser.add_argument("--device", default="auto", help="auto (each worker's GPU if it has one) | cpu | cuda")
    parser.add_argument("--models-dir", default=None, help="folder of the weights (default assets/models)")
    parser.add_argument("--tracks", default="auto", metavar="auto|X0:X1,...",
                        help="track pixel column ranges for every scan, or auto (found on each scan; default)")
    parser.add_argument("--max-gap", type=int, default=None,
                        help="longest gap in rows bridged by interpolation (default: veer digitize's)")
    from veer.digitize import add_calibration_arguments

    add_calibration_arguments(parser)  # the digitize verb's options, applied to every scan alike
    parser.add_argument("--verify", action="store_true",
                        help="hash every scan to decide what is finished (default: only those whose size/mtime changed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--bench", action="store_true",
                        help="benchmark: scans/minute with 1 and 2 workers here (synthetic scans), then exit")
    parser.add_argument("--bench-scans", type=int, default=12, help="scans per benchmark run")
    parser.add_argument("--bench-size", default="1024x512", help="benchmark scan size HxW")
    parser.add_argument("--bench-workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--segmenter", default=None, help=argparse.SUPPRESS)  # TEST-ONLY hook


def run(args: argparse.Namespace) -> int:
    if args.bench:
        try:
            h, w = (int(v) for v in args.bench_size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--bench-size {args.bench_size!r}: write it as HxW, e.g. 1024x512") from None
        try:
            counts = tuple(int(v) for v in args.bench_workers.split(","))
        except ValueError:
            raise ConfigError(f"--bench-workers {args.bench_workers!r}: write worker counts as 1,2") from None
        figures = bench_batch(args.bench_scans, counts, height=h, width=w, mode=args.mode,
                              segmenter=args.segmenter, threads_per_worker=args.threads_per_worker or 1,
                              progress=not args.no_progress)
        print(format_bench(figures))
        return 0
    if not args.inputs:
        raise ConfigError("give at least one INPUT (file, folder or glob pattern), or --bench")
    if not args.out:
        raise ConfigError("give the output folder with --out DIR")
    from veer import digitize as dg

    params = None
    if args.max_gap is not None:
        if args.max_gap < 0:
            raise ConfigError("--max-gap must be 0 or more")
        params = dg.TraceParams(max_gap=int(args.max_gap))
    df = run_batch(args.inputs, args.out, mode=args.mode, scheduler=args.scheduler, workers=args.workers,
                   threads_per_worker=args.threads_per_worker, device=args.device,
                   tracks=dg.parse_tracks(args.tracks), calibration=dg.calibration_from_args(args),
                   params=params, models_dir=args.models_dir, verify=args.verify,
                   progress=not args.no_progress, segmenter=args.segmenter)
    counts = df["status"].value_counts().to_dict()
    t = df.attrs.get("run", {})
    speed = f", {t['scans_per_minute']:.1f} scans/min" if t.get("scans_per_minute") else ""
    print(f"{len(df)} scans: {counts.get('done', 0)} done, {counts.get('skipped', 0)} skipped, "
          f"{counts.get('failed', 0)} failed{speed}; summary in {Path(args.out) / SUMMARY_CSV}")
    for _, row in df[df["status"] == "failed"].head(10).iterrows():
        print(f"  failed: {row['error']}")
    notes = df.loc[(df["status"] != "failed") & (df["las_note"] != ""), "las_note"]
    if len(notes):
        print(f"  {len(notes)} scan(s) without LAS: {notes.iloc[0]}")
    return 1 if counts.get("failed", 0) else 0
