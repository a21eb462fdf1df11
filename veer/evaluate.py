"""Score the joint and the separate pipeline on a folder of logs with truth.

``python -m veer evaluate --data DIR [--n N --seed S] [--out report.json]
[--mode both|joint|separate] [--device auto|cpu|cuda] [--limit K] [--labels KEEP]``

With ``--labels KEEP`` each pipeline's labels are kept in KEEP and reused on
a later run with the same weights and settings (:class:`LabelCache`).

For every scan in DIR that has truth beside it (``<stem>.mask.png``, written
by ``python -m veer synth``), each pipeline segments the scan and is scored
against the truth mask:

* pixel precision / recall / F1 / IoU per class, from one confusion matrix
  per pipeline summed over all samples (and one per sample), with both macro
  averages: ``macro_all`` (three classes, background included) and
  ``macro_curves`` (curve1 and curve2 only); see :mod:`veer.metrics`;
* tolerant precision / recall / F1 per curve class (a pixel within 2 px of
  the right place counts as right), from counts summed over samples;
* for the separate pipeline, the share of pixels where the three binary
  masks conflict (two or more claim a pixel) or leave a gap (none does); see
  :mod:`veer.stitch`;
* seconds per pipeline;
* if :mod:`veer.digitize` provides ``trace_curves`` and ``score_curves``,
  curve-digitisation errors per sample (see "curve digitisation hook").

If DIR holds no samples and ``--n`` is given, N fresh logs are generated
there first, from seeds S, S+1, ... (default 20,000,000: a range that is
never used for training).

The dashboard calls :func:`evaluate_folder` and :func:`format_table`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from veer import __version__
from veer.classes import CLASS_NAMES, CURVE_CLASSES, IGNORE
from veer.errors import ConfigError, VeerError
from veer.infer import multi_scale, scales_text
from veer.metrics import (
    BOOTSTRAP_DRAWS,
    ConfusionMatrix,
    add_conflict_counts,
    bootstrap_f1,
    conflict_counts,
    nanmean,
    summarize,
    tolerant_counts,
    tolerant_from_counts,
)

MODES = ("joint", "separate")
MODE_CHOICES = ("both",) + MODES
DEFAULT_SEED = 20_000_000  # evaluation seeds: far away from any training seed
TOLERANCE_PX = 2
CURVE_NAMES = tuple(CLASS_NAMES[c] for c in CURVE_CLASSES)

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what was just done)


# --------------------------------------------------------------------------- seams
# Thin wrappers around the modules other parts of veer own. Imported lazily so
# that ``--help`` is quick and tests can replace them (monkeypatch).


VIEW_NAMES = {1: "one pass", 2: "with the mirror", 4: "mirrored and upside down too"}


def get_segmenter(mode: str, device: str = "auto", models_dir=None, flip: bool = True,
                  views: int | None = None, scales=None, scale_views: int | None = None):
    """The process-wide cached segmenter of ``mode`` (veer.infer.get_segmenter)."""
    from veer.infer import get_segmenter as _get_segmenter

    return _get_segmenter(mode, device=device, models_dir=models_dir, flip=flip, views=views,
                          scales=scales, scale_views=scale_views)


def find_samples(folder) -> list[Path]:
    from veer.synth import find_samples as _find_samples

    return list(_find_samples(folder))


def load_truth(image_path):
    from veer.synth import load_truth as _load_truth

    return _load_truth(image_path)


# --------------------------------------------------------------------------- data


def generate_eval_set(data_dir, n: int, seed: int = DEFAULT_SEED,
                      progress: Progress | None = None) -> list[Path]:
    """Generate ``n`` synthetic logs into ``data_dir`` from seeds ``seed``.. ``seed+n-1``.

    Logs whose files are already there are kept, not regenerated, so an
    interrupted run can simply be started again. Returns the scan paths.
    """
    from veer import synth

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # a log counts as there only when all its files are (a save cut short is redone)
    done = {p.name.split(".")[0] for p in find_samples(data_dir)
            if all(p.with_name(p.name.split(".")[0] + suffix).exists() for suffix in (".curves.npz", ".json"))}
    for i in range(n):
        s = int(seed) + i
        stem = f"eval_{s:08d}"
        if stem not in done:
            log = synth.generate_log(s)
            synth.save_log(log, data_dir, stem)
        if progress is not None:
            progress(i + 1, n, f"generated {stem}")
    return [p for p in find_samples(data_dir) if p.name.split(".")[0].startswith("eval_")]


# --------------------------------------------------------------------------- scoring one prediction


def score_prediction(truth: np.ndarray, labels: np.ndarray, conflict: np.ndarray | None = None,
                     tol: int = TOLERANCE_PX) -> dict:
    """All pixel scores of one predicted label map against one truth mask.

    Returns a JSON-able dict: ``confusion_matrix`` (rows truth, cols
    prediction), ``per_class``/``macro_all``/``macro_curves``/``pixel_accuracy``
    (:func:`veer.metrics.summarize`), ``tolerant`` (per curve class:
    precision, recall, f1 and their counts, within ``tol`` px) and, when a
    conflict map is given, ``conflicts`` (all pixels) and
    ``conflicts_on_curves`` (truth curve pixels only).
    """
    truth = np.asarray(truth)
    labels = np.asarray(labels)
    cm = ConfusionMatrix().update(truth, labels)
    out = summarize(cm)
    out["confusion_matrix"] = cm.matrix.tolist()
    tolerant = {}
    for cls, name in zip(CURVE_CLASSES, CURVE_NAMES):
        counts = tolerant_counts(truth, labels, cls, tol)
        tolerant[name] = {**tolerant_from_counts(counts), **counts}
    tolerant["macro_curves_f1"] = nanmean([tolerant[n]["f1"] for n in CURVE_NAMES])
    tolerant["tol_px"] = int(tol)
    out["tolerant"] = tolerant
    if conflict is not None:
        conflict = np.asarray(conflict)
        out["conflicts"] = conflict_counts(conflict)
        on_curves = (truth != 0) & (truth != IGNORE)
        out["conflicts_on_curves"] = conflict_counts(conflict, where=on_curves)
    return out


class _PipelineTotals:
    """Sums of one pipeline's counts over samples."""

    def __init__(self, mode: str, tol: int):
        self.mode = mode
        self.tol = tol
        self.matrices: list[np.ndarray] = []   # one per sample: pooled for the scores, resampled for the interval
        self.tolerant = {n: {"pred": 0, "truth": 0, "matched_pred": 0, "matched_truth": 0}
                         for n in CURVE_NAMES}
        self.conflicts: dict | None = None
        self.conflicts_on_curves: dict | None = None
        self.seconds = 0.0
        self.megapixels = 0.0
        self.digitize_rows: list[dict] = []
        self.digitize_errors: list[str] = []

    def add(self, score: Mapping, seconds: float, megapixels: float) -> None:
        self.matrices.append(np.asarray(score["confusion_matrix"], np.int64))
        for name in CURVE_NAMES:
            for key in self.tolerant[name]:
                self.tolerant[name][key] += int(score["tolerant"][name][key])
        if score.get("conflicts") is not None:
            self.conflicts = add_conflict_counts(self.conflicts, score["conflicts"])
            self.conflicts_on_curves = add_conflict_counts(self.conflicts_on_curves,
                                                           score["conflicts_on_curves"])
        self.seconds += seconds
        self.megapixels += megapixels

    def report(self, dz=None) -> dict:
        cm = ConfusionMatrix()
        for matrix in self.matrices:
            cm.merge(matrix)
        out = summarize(cm)
        out["confusion_matrix"] = cm.matrix.tolist()
        out["interval"] = bootstrap_f1(self.matrices) if self.matrices else None   # None for one log
        tolerant: dict[str, Any] = {}
        for name in CURVE_NAMES:
            tolerant[name] = {**tolerant_from_counts(self.tolerant[name]), **self.tolerant[name]}
        tolerant["macro_curves_f1"] = nanmean([tolerant[n]["f1"] for n in CURVE_NAMES])
        tolerant["tol_px"] = int(self.tol)
        out["tolerant"] = tolerant
        out["conflicts"] = self.conflicts
        out["conflicts_on_curves"] = self.conflicts_on_curves
        out["samples"] = len(self.matrices)
        out["seconds"] = self.seconds
        out["megapixels"] = self.megapixels
        out["seconds_per_megapixel"] = self.seconds / self.megapixels if self.megapixels else math.nan
        if self.digitize_rows or self.digitize_errors:
            out["digitize"] = _aggregate_digitize(self.digitize_rows, self.digitize_errors, dz)
        return out


# --------------------------------------------------------------------------- curve digitisation hook
# ==== CURVE DIGITISATION HOOK ===============================================
# veer.digitize is written separately. When it provides ``trace_curves`` and
# ``score_curves``, each pipeline's labels are traced into curves and scored
# against the truth centrelines (per-curve median absolute error in px, share
# within 3 px, missed / spurious rows, MAE and R² in calibrated units: whatever
# score_curves returns). Without it, or when it fails on a sample, evaluation
# goes on and the report says why in the "digitize" section.


def digitize_api():
    """veer.digitize if it offers ``trace_curves`` and ``score_curves``, else None."""
    try:
        import veer.digitize as dz
    except ImportError:
        return None
    if not (callable(getattr(dz, "trace_curves", None)) and callable(getattr(dz, "score_curves", None))):
        return None
    return dz


def digitize_scores(dz, gray: np.ndarray, labels: np.ndarray, truth, shared: np.ndarray | None = None) -> dict:
    """Trace the curves of one label map with veer.digitize and score them.

    Tracks are found on the scan and its labels (``find_tracks``) as the
    ``digitize`` verb does; where that finds none, the truth tracks are used
    and the result says so in ``tracks_from``. ``shared``: the segmenter's
    pixels to trace for both curves, as the ``digitize`` verb uses them.
    """
    tracks, source = [], "scan"
    if callable(getattr(dz, "find_tracks", None)):
        try:
            tracks = list(dz.find_tracks(gray, labels=labels))
        except VeerError:
            tracks = []
    if not tracks:
        tracks = [tuple(map(float, t)) for t in np.asarray(truth.tracks)]
        source = "truth"
    table = dz.trace_curves(labels, tracks) if shared is None else dz.trace_curves(labels, tracks, shared=shared)
    scores = dict(jsonable(dz.score_curves(truth, table)))
    scores["tracks_from"] = source
    return scores


def _flatten(d: Mapping, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
        elif isinstance(value, (int, float, np.integer, np.floating)) or value is None:
            out[name] = math.nan if value is None else float(value)
    return out


def _aggregate_digitize(rows: list[dict], errors: list[str], dz=None) -> dict:
    """Pool the per-sample curve scores over samples.

    ``pooled``: veer.digitize.pool_scores when it exists (shares from summed
    counts, medians of medians); ``mean_over_samples``: the plain mean of
    every number score_curves returned (always there, whatever its keys).
    """
    flat = [_flatten(r) for r in rows]
    keys = sorted({k for f in flat for k in f})
    means = {k: nanmean([f.get(k, math.nan) for f in flat]) for k in keys}
    out: dict[str, Any] = {"samples": len(rows), "mean_over_samples": means}
    if rows and dz is not None and callable(getattr(dz, "pool_scores", None)):
        try:
            out["pooled"] = jsonable(dz.pool_scores(rows))
        except Exception as exc:  # noqa: BLE001 - optional section
            out["pooled_error"] = f"{type(exc).__name__}: {exc}"
    if errors:
        out["errors"] = errors[:20]
        out["failed_samples"] = len(errors)
    return out
# ==== END OF CURVE DIGITISATION HOOK ========================================


# --------------------------------------------------------------------------- the folder


def evaluate_folder(data_dir, modes: Sequence[str] = MODES, device: str = "auto",
                    progress: Progress | None = None, *, limit: int | None = None,
                    models_dir=None, segmenters: Mapping[str, Any] | None = None,
                    tol: int = TOLERANCE_PX, digitize: bool = True,
                    cancel: threading.Event | None = None,
                    keep_partial_on_interrupt: bool = False, truth_curves: bool = False,
                    flip: bool = True, views: int | None = None, labels_dir=None,
                    scales=None, scale_views: int | None = None) -> dict:
    """Evaluate ``modes`` on every sample with truth in ``data_dir``; return the report.

    ``progress(done, total, text)`` is called after each (sample, pipeline)
    step. ``segmenters`` maps mode -> an object with ``segment(gray)`` (default:
    :func:`get_segmenter`, with ``views`` passes per tile: default 2, the
    mirror view, or 1 when ``flip`` is False; and each tile at ``scales``, in
    ``scale_views`` views at the scales other than 1).
    ``limit`` takes the first K samples. Setting ``cancel`` stops after the
    current step; the report then covers the samples finished so far and has
    ``"complete": False``. With ``labels_dir`` each pipeline's labels are kept
    there and reused on a later run with the same weights and settings (see
    :class:`LabelCache`).

    A sample whose scan or truth cannot be read, or that a pipeline fails on
    (a :class:`VeerError` or MemoryError), is reported in its row with
    ``"error"`` and left out of every pipeline's totals, so the pipelines are
    always compared on the same samples. With ``keep_partial_on_interrupt``,
    Ctrl-C also ends the run with a partial report instead of an exception.

    Raises :class:`VeerError` if the folder is missing or holds no samples,
    or if a pipeline's model cannot be loaded.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    modes = _check_modes(modes)
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir}: no such folder")
    samples = find_samples(data_dir)
    if not samples:
        raise ConfigError(f"{data_dir}: no scans with truth (<stem>.mask.png) in this folder; "
                          f"pass --n N to generate N synthetic logs there")
    found = len(samples)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        samples = samples[:limit]

    segs = dict(segmenters or {})
    for mode in modes:
        if mode not in segs:
            segs[mode] = get_segmenter(mode, device=device, models_dir=models_dir, flip=flip, views=views,
                                       scales=scales, scale_views=scale_views)
    views = {m: int(getattr(segs[m], "views", 1)) for m in modes}
    scales = {m: list(getattr(segs[m], "scales", (1.0,)) or (1.0,)) for m in modes}
    scale_views = {m: int(getattr(segs[m], "scale_views", views[m]) or views[m]) for m in modes}
    weights = _weights_used(segs, modes)
    caches = {}
    if labels_dir is not None:
        caches = {m: LabelCache(segs[m], m, labels_dir) for m in modes}
        segs.update(caches)
    dz = digitize_api() if digitize else None

    totals = {m: _PipelineTotals(m, tol) for m in modes}
    truth_rows: list[dict] = []
    truth_errors: list[str] = []
    rows: list[dict] = []
    devices: dict[str, str] = {}
    kinds: Counter = Counter()
    seeds: list[int] = []
    steps, done = len(samples) * len(modes), 0
    complete = True

    def step_done(text: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, steps, text)

    try:
        for path in samples:
            if cancel is not None and cancel.is_set():
                complete = False
                break
            row, sample = _read_sample(path)
            if sample is None:
                rows.append(row)
                for _ in modes:
                    step_done(f"skipped {path.name}")
                continue
            meta = row.pop("_meta")
            scores: dict[str, dict] = {}
            for mode in modes:
                if cancel is not None and cancel.is_set():
                    break
                try:
                    score, device_text = _run_pipeline(segs[mode], mode, sample, tol, dz, path.name,
                                                       cancel)
                except (VeerError, MemoryError) as exc:
                    if cancel is not None and cancel.is_set():
                        break  # cancelled inside the segmenter: not the sample's fault
                    row["error"] = f"{mode}: {exc or type(exc).__name__}"
                    break
                if device_text:
                    devices.setdefault(mode, device_text)
                scores[mode] = score
                step_done(f"{mode}: {path.name}")
            if cancel is not None and cancel.is_set() and len(scores) < len(modes):
                complete = False  # a half-scored sample is left out, so pipelines share one sample set
                break
            if "error" in row:
                rows.append(row)
                for _ in range(len(modes) - len(scores)):
                    step_done(f"failed on {path.name}")
                continue
            # the sample counts only once every pipeline has scored it
            for mode, score in scores.items():
                totals[mode].add(score, score["seconds"], row["megapixels"])
                if "digitize" in score:
                    if "error" in score["digitize"]:
                        totals[mode].digitize_errors.append(score["digitize"]["error"])
                    else:
                        totals[mode].digitize_rows.append(score["digitize"])
            kinds[(str(meta.get("scan", "?")), str(meta.get("style", "?")))] += 1
            if isinstance(meta.get("seed"), (int, np.integer)):
                seeds.append(int(meta["seed"]))
            row["pipelines"] = scores
            if truth_curves and dz is not None:
                try:
                    row["digitize_truth"] = digitize_scores(dz, sample.gray, sample.mask, sample.truth)
                    truth_rows.append(row["digitize_truth"])
                except Exception as exc:  # noqa: BLE001 - the optional section must never stop evaluation
                    truth_errors.append(f"{path.name}: {type(exc).__name__}: {exc}")
            rows.append(row)
    except KeyboardInterrupt:
        if not keep_partial_on_interrupt:
            raise
        complete = False

    scored = [r for r in rows if "error" not in r]
    report = {
        "veer_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": complete,
        "modes": list(modes),
        "device": _device_text(devices, device),
        "devices": devices,
        "views": views,
        "scales": scales,
        "scale_views": scale_views,
        "tolerance_px": int(tol),
        "weights": weights,
        "data": {
            "dir": str(data_dir),
            "samples_found": found,
            "samples_selected": len(samples),
            "samples_scored": len(scored),
            "samples_failed": len(rows) - len(scored),
            "megapixels": float(sum(r["megapixels"] for r in scored)),
            "kinds": [{"scan": k[0], "style": k[1], "samples": v} for k, v in sorted(kinds.items())],
            "seeds": [min(seeds), max(seeds)] if seeds else None,
            "description": _describe_data(data_dir, scored, kinds),
        },
        "pipelines": {m: totals[m].report(dz) for m in modes},
        "digitize_available": dz is not None,
        "labels_cache": ({"dir": str(labels_dir), "reused": sum(c.reused for c in caches.values()),
                          "computed": sum(c.computed for c in caches.values())} if caches else None),
        "digitize_truth": (_aggregate_digitize(truth_rows, truth_errors, dz)
                           if truth_rows or truth_errors else None),
        "samples": rows,
        "timing": {"total_seconds": time.perf_counter() - started,
                   **{f"{m}_seconds": totals[m].seconds for m in modes}},
        "definitions": {
            "macro_all": "mean over background, curve1 and curve2 (NaN classes skipped)",
            "macro_curves": "mean over curve1 and curve2 (NaN classes skipped)",
            "tolerant": f"a pixel within {tol} px of a pixel of the same class on the other side counts as right",
            "conflicts": "separate pipeline: 1 = two or more binary masks claim a pixel, 2 = none does",
            "ignore": "truth pixels 255 (where the curves overlap) are not scored",
            "interval": f"F1 interval over the logs: the middle 95 % of {BOOTSTRAP_DRAWS} resamples of the scored "
                        "logs drawn with replacement (seeded); how far the figure could move with other logs drawn",
        },
    }
    return jsonable(report)


def _weights_used(segs: Mapping[str, Any], modes: Sequence[str]) -> dict[str, str] | None:
    """{model name: sha256 of its weights} for the pipelines scored, from their model cards.

    None when a segmenter does not say which weights it runs (one built from
    models in memory, or a stand-in), so that a report never vouches for
    weights it did not see.
    """
    from veer.weights import PIPELINES

    out: dict[str, str] = {}
    for mode in modes:
        cards = list(getattr(segs[mode], "cards", None) or [])
        names = PIPELINES.get(mode, [])
        shas = [c.get("sha256") if isinstance(c, Mapping) else None for c in cards]
        if len(shas) != len(names) or not all(shas):
            return None
        out.update(zip(names, shas))
    return out or None


def _read_sample(path: Path) -> tuple[dict, Any]:
    """(row, sample) of one scan: sample has .truth, .mask, .gray; None (and
    row["error"] set) if the scan or its truth cannot be read."""
    from veer.io import read_scan

    row: dict[str, Any] = {"name": path.name}
    try:
        truth = load_truth(path)
        scan = read_scan(path)
        mask = np.asarray(truth.mask)
        if mask.shape != scan.gray.shape:
            raise VeerError(f"{path.name}: the truth mask is {mask.shape[1]}x{mask.shape[0]} px "
                            f"but the scan is {scan.gray.shape[1]}x{scan.gray.shape[0]} px")
    except VeerError as exc:
        row["error"] = str(exc)
        return row, None
    meta = dict(getattr(truth, "meta", None) or {})
    h, w = mask.shape
    row.update(height=int(h), width=int(w), megapixels=h * w / 1e6,
               scan=meta.get("scan"), style=meta.get("style"), seed=meta.get("seed"), _meta=meta)
    return row, SimpleNamespace(truth=truth, mask=mask, gray=scan.gray)


def _labels_folder(folder) -> Path:
    """The ``--labels`` folder, made if missing; a one-line ConfigError if it cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--labels {folder}: cannot create the folder ({exc.strerror or exc})") from None
    return folder


class LabelCache:
    """A segmenter that keeps its labels on disk and reuses them.

    Wraps ``seg`` (anything with ``segment(gray)``) for one pipeline. Each
    result is stored in ``folder`` as ``<scan digest>.<mode>.npz``: the label
    map, the pixels in doubt (``shared``), the conflict map of the separate
    pipeline, the seconds the segmentation took and the device it ran on. A
    stored result is reused only when its key matches: the pipeline, the
    weights' sha256 (from the model cards), the views, scales, tile and overlap. So
    changing the weights or the settings recomputes it, and digitiser work can
    be rescored in seconds instead of rerunning the models.

    The reused result reports the seconds of the run that made it, so the
    report's speed figures stay those of the models. ``reused`` and
    ``computed`` count what happened.
    """

    FORMAT = 1

    def __init__(self, seg, mode: str, folder) -> None:
        self.seg, self.mode = seg, mode
        self.folder = _labels_folder(folder)
        self.views = int(getattr(seg, "views", 1) or 1)
        self.scales = tuple(float(v) for v in (getattr(seg, "scales", None) or (1.0,)))
        self.scale_views = int(getattr(seg, "scale_views", self.views) or self.views)
        self.key = json.dumps({
            "format": self.FORMAT, "mode": mode,
            "weights": [str(c.get("sha256", "")) for c in (getattr(seg, "cards", None) or [])],
            "views": self.views,
            # only where other than 1, so labels kept before scales existed stay valid
            **({"scales": list(self.scales)} if multi_scale(self.scales) else {}),
            # likewise only where the enlarged tiles run other views than the tile as it is
            **({"scale_views": self.scale_views}
               if multi_scale(self.scales) and self.scale_views != self.views else {}),
            "tile": list(getattr(seg, "tile", ()) or ()),
            "overlap": getattr(seg, "overlap", None),
            "kind": type(seg).__name__,
        }, sort_keys=True)
        self.reused = 0
        self.computed = 0

    def _path(self, gray: np.ndarray) -> Path:
        from veer.viz import content_key

        arr = np.ascontiguousarray(gray)
        return self.folder / f"{content_key(f'{arr.shape}{arr.dtype}'.encode() + arr.tobytes())}.{self.mode}.npz"

    def _load(self, path: Path, shape: tuple[int, ...]):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != self.key:
                    return None
                labels = z["labels"]
                if labels.shape != shape:
                    return None
                shared = np.unpackbits(z["shared"])[:labels.size].reshape(shape).astype(bool) \
                    if z["has_shared"] else None
                conflict = z["conflict"] if z["has_conflict"] else None
                return SimpleNamespace(labels=labels, probs=None, conflict=conflict, mode=self.mode,
                                       device=str(z["device"]), seconds=float(z["seconds"]),
                                       tiles=int(z["tiles"]), shared=shared, cached=True,
                                       model_seconds=float(z["seconds"]))
        except (OSError, ValueError, KeyError, EOFError):
            return None  # unreadable or from another veer: computed again and overwritten

    def segment(self, gray, **kwargs):
        gray = np.asarray(gray)
        path = self._path(gray)
        if path.is_file():
            hit = self._load(path, gray.shape[:2])
            if hit is not None:
                self.reused += 1
                return hit
        t0 = time.perf_counter()
        result = self.seg.segment(gray, **kwargs)
        seconds = time.perf_counter() - t0
        labels = np.asarray(result.labels, dtype=np.uint8)
        shared = getattr(result, "shared", None)
        conflict = getattr(result, "conflict", None)
        tmp = path.with_name(path.name + ".part")
        try:
            with open(tmp, "wb") as fh:
                np.savez_compressed(
                    fh, key=np.array(self.key), labels=labels,
                    has_shared=np.array(shared is not None),
                    shared=np.packbits(np.asarray(shared, bool)) if shared is not None else np.zeros(0, np.uint8),
                    has_conflict=np.array(conflict is not None),
                    conflict=np.asarray(conflict, np.uint8) if conflict is not None else np.zeros(0, np.uint8),
                    device=np.array(str(getattr(result, "device", ""))),
                    seconds=np.array(seconds),
                    tiles=np.array(int(getattr(result, "tiles", 0) or 0)))
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"--labels {self.folder}: cannot write {path.name} ({exc.strerror or exc})") from None
        self.computed += 1
        try:
            result.model_seconds = seconds  # the model's time, without writing the file
        except AttributeError:
            pass
        return result


def _run_pipeline(seg, mode: str, sample, tol: int, dz, name: str,
                  cancel: threading.Event | None = None) -> tuple[dict, str | None]:
    """Segment one sample with one pipeline and score it (and its curves, if possible)."""
    t0 = time.perf_counter()
    if cancel is not None:
        result = seg.segment(sample.gray, cancel=cancel)
    else:
        result = seg.segment(sample.gray)
    seconds = time.perf_counter() - t0
    if getattr(result, "model_seconds", None) is not None:
        seconds = float(result.model_seconds)  # kept labels: the run that made them
    labels = np.asarray(result.labels)
    conflict = getattr(result, "conflict", None) if mode == "separate" else None
    score = score_prediction(sample.mask, labels, conflict, tol)
    score["seconds"] = seconds
    if dz is not None:
        try:
            score["digitize"] = digitize_scores(dz, sample.gray, labels, sample.truth,
                                                getattr(result, "shared", None))
        except Exception as exc:  # noqa: BLE001 - the optional section must never stop evaluation
            score["digitize"] = {"error": f"{name}: {type(exc).__name__}: {exc}"}
    device = getattr(result, "device", None)
    return score, (str(device) if device else None)


def _check_modes(modes: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(modes, str):
        modes = MODES if modes == "both" else (modes,)
    out = tuple(dict.fromkeys(modes))
    bad = [m for m in out if m not in MODES]
    if bad or not out:
        raise ConfigError(f"unknown pipeline {bad[0] if bad else '(none)'!r}; choose joint, separate or both")
    return out


def _device_text(devices: Mapping[str, str], requested: str) -> str:
    values = list(dict.fromkeys(devices.values()))
    if not values:
        return f"requested: {requested}"
    return values[0] if len(values) == 1 else "; ".join(f"{m}: {d}" for m, d in devices.items())


def _describe_data(data_dir: Path, scored: list[dict], kinds: Counter) -> str:
    if not scored:
        return f"{data_dir}: no sample could be scored"
    mpx = sum(r["megapixels"] for r in scored)
    kind_text = ", ".join(f"{v} {k[0]}/{k[1]}" for k, v in sorted(kinds.items()))
    return f"{len(scored)} logs ({mpx:.1f} Mpx) in {data_dir}" + (f": {kind_text}" if kind_text else "")


def jsonable(obj):
    """Plain JSON types: NaN/inf -> None, NumPy scalars/arrays -> Python, Path -> str."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_report(report: Mapping, path) -> Path:
    """Write the report as indented JSON, atomically."""
    from veer.io import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False), encoding="utf-8")
    return path


def load_report(path) -> dict:
    """Read a report written by :func:`write_report`."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such report; run python -m veer evaluate first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable evaluation report ({exc})") from None


# --------------------------------------------------------------------------- the table


def _f(value, pct: bool = False, width: int = 6) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a".rjust(width)
    return (f"{100 * value:.2f}%" if pct else f"{value:.3f}").rjust(width)


def format_table(report: Mapping) -> str:
    """The report as a plain-text table (what the CLI prints)."""
    modes = list(report.get("modes") or report.get("pipelines", {}).keys())
    pipes = report["pipelines"]
    data = report.get("data", {})
    lines = [f"veer evaluation: {data.get('description', '')}",
             f"device: {report.get('device', '?')}"]
    views = report.get("views") or {}
    if views:
        lines.append("views per tile: " + ", ".join(
            f"{m} {v} ({VIEW_NAMES.get(v, 'passes')})" for m, v in views.items()))
    scales = report.get("scales") or {}
    if any(multi_scale(v) for v in scales.values()):
        sv = report.get("scale_views") or {}
        lines.append("scales per tile: " + ", ".join(
            f"{m} {scales_text(v, views.get(m), sv.get(m))}" for m, v in scales.items()))
    if not report.get("complete", True):
        lines.append("STOPPED EARLY: the figures cover the samples finished before the stop")
    if data.get("samples_failed"):
        lines.append(f"{data['samples_failed']} sample(s) could not be read and were skipped")
    block = "   P      R      F1     IoU  "
    name_w = 16
    lines.append("")
    lines.append(" " * name_w + "".join(f"| {m:<{len(block) - 1}}" for m in modes))
    lines.append(" " * name_w + "".join(f"|{block}" for _ in modes))
    lines.append("-" * (name_w + (len(block) + 1) * len(modes)))

    def score_row(label: str, get) -> str:
        cells = []
        for m in modes:
            s = get(pipes[m])
            cells.append("|" + " ".join(_f(s[k]) if k in s else " " * 6
                                        for k in ("precision", "recall", "f1", "iou")) + " ")
        return f"{label:<{name_w}}" + "".join(cells)

    for name in CLASS_NAMES:
        lines.append(score_row(name, lambda p, n=name: p["per_class"][n]))
    lines.append(score_row("macro (all 3)", lambda p: p["macro_all"]))
    lines.append(score_row("macro (curves)", lambda p: p["macro_curves"]))
    intervals = [_interval_line(m, pipes[m].get("interval")) for m in modes]
    if any(intervals):
        lines.append("")
        lines.append("95 % interval of F1 over the logs (resampled with replacement), how far each figure "
                     "could move with other logs drawn:")
        lines.extend(line for line in intervals if line)
    lines.append("")
    tol = report.get("tolerance_px", TOLERANCE_PX)
    lines.append(f"tolerant scores: a pixel within {tol} px of the right place counts as right")
    for name in CURVE_NAMES:
        lines.append(score_row(f"{name} ±{tol}px", lambda p, n=name: p["tolerant"][n]))
    lines.append(score_row("macro (curves)", lambda p: {"f1": p["tolerant"]["macro_curves_f1"]}))
    lines.append("")
    for m in modes:
        c, cc = pipes[m].get("conflicts"), pipes[m].get("conflicts_on_curves")
        if c:
            lines.append(f"{m}: masks conflict on {_f(c['conflict_share'], True).strip()} and leave gaps on "
                         f"{_f(c['gap_share'], True).strip()} of all pixels"
                         + (f"; on truth curve pixels {_f(cc['conflict_share'], True).strip()} / "
                            f"{_f(cc['gap_share'], True).strip()}" if cc else ""))
    lines.append("")
    for m in modes:
        p = pipes[m]
        lines.append(f"{m}: {p['samples']} samples, {p['seconds']:.2f} s "
                     f"({_f(p.get('seconds_per_megapixel')).strip()} s/Mpx)")
    dz_pipes = {m: pipes[m] for m in modes if pipes[m].get("digitize")}
    if report.get("digitize_truth"):
        dz_pipes["truth_mask"] = {"digitize": report["digitize_truth"]}
    if dz_pipes:
        lines.append("")
        lines.extend(_digitize_table(dz_pipes, list(dz_pipes)))
    return "\n".join(lines)


def _span(pair, pct: bool = False) -> str:
    """An interval [low, high] as "low-high" ("n/a" without one)."""
    if not pair:
        return "n/a"
    return f"{_f(pair[0], pct).strip()}-{_f(pair[1], pct).strip()}"


def _interval_line(mode: str, interval: Mapping | None) -> str:
    """One pipeline's F1 intervals over the logs as a line of the table ("" without one)."""
    if not interval:
        return ""
    per = interval.get("per_class", {})
    parts = [f"macro (all 3) {_span(interval['macro_all'])}"]
    parts += [f"{name} {_span(per[name])}" for name in CURVE_NAMES if name in per]
    return f"  {mode} ({interval.get('logs', '?')} logs): " + ", ".join(parts)


# (label, key in pool_scores / score_curves output, is a share)
DIGITIZE_COLUMNS = (("median px", "median_px", False), ("within 3px", "within3", True),
                    ("missed", "missed", True), ("spurious", "spurious", True),
                    ("wraps", "wrap_share", True), ("wrap steps", "wrap_step_share", True),
                    ("MAE", "mae", False), ("R2", "r2", False))


def _row_kinds_line(pooled: Mapping) -> str:
    """Rows within 3 px split by where the true curve is (score_curves' row kinds), or ""."""
    from veer.digitize import ROW_KIND_WORDS, row_kinds_shown

    parts = []
    for name in CURVE_NAMES:
        p = pooled.get(name)
        if not isinstance(p, Mapping):
            continue
        cells = [f"{ROW_KIND_WORDS[kind]} {_f(within, pct=True).strip()} ({share * 100:.1f} % of rows)"
                 for kind, share, within in row_kinds_shown(p)]
        if cells:
            parts.append(f"{name} " + ", ".join(cells))
    return ("within 3px where the true curve runs: " + "; ".join(parts)) if parts else ""


def _digitize_table(pipes: Mapping, modes: Sequence[str]) -> list[str]:
    """Headline curve-digitisation figures per pipeline and curve."""
    lines = ["curve digitisation (traced from each pipeline's labels, against the true centre lines):"]
    head = "".join(f"{label:>11}" for label, _, _ in DIGITIZE_COLUMNS)
    lines.append(f"{'':<20}{head}")
    for m in modes:
        dz = pipes[m]["digitize"]
        pooled = dz.get("pooled") or {}
        means = dz.get("mean_over_samples") or {}
        for name in CURVE_NAMES:
            cells = []
            for _, key, share in DIGITIZE_COLUMNS:
                source = pooled.get(name) if isinstance(pooled.get(name), Mapping) else None
                if source is not None:
                    value = source.get({"r2": "r2_median", "mae": "mae_median"}.get(key, key))
                else:
                    value = means.get(f"{name}.{key}")
                cells.append(_f(value, pct=share, width=11))
            lines.append(f"{m + ' ' + name:<20}" + "".join(cells))
        how = f"pooled over {dz['samples']} logs" if pooled else f"mean over {dz['samples']} logs"
        lines.append(f"{'':<20}({m}: {how}; wraps: values right after each "
                     f"wrap-around; wrap steps: the step across it right, whatever came before; "
                     f"MAE (each track's units) and R2 {'median over logs' if pooled else 'mean over logs'})")
        spans = [f"{name} within 3px {_span(pooled[name].get('within3_interval'), True)}, wraps "
                 f"{_span(pooled[name].get('wrap_share_interval'), True)}"
                 for name in CURVE_NAMES if isinstance(pooled.get(name), Mapping)
                 and (pooled[name].get("within3_interval") or pooled[name].get("wrap_share_interval"))]
        if spans:
            lines.append(f"{'':<20}({m}: 95 % intervals over the logs: " + "; ".join(spans) + ")")
        kinds = _row_kinds_line(pooled)
        if kinds:
            lines.append(f"{'':<20}({m}: {kinds})")
        if pooled.get("logs_tracks_right") is not None and pooled.get("logs"):
            lines.append(f"{'':<20}({m}: tracks found right, every border within "
                         f"{pooled.get('track_tol_px') or 6:g} px, on "
                         f"{pooled['logs_tracks_right']} of {pooled['logs']} logs)")
        if dz.get("failed_samples"):
            lines.append(f"{'':<20}digitisation failed on {dz['failed_samples']} sample(s): {dz['errors'][0]}")
    return lines


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="folder of scans with truth (<stem>.mask.png beside each)")
    parser.add_argument("--n", type=int, default=None,
                        help="if the folder holds no samples, generate N synthetic logs there first")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"first seed for generated logs (default {DEFAULT_SEED}, never used for training)")
    parser.add_argument("--out", default=None, help="JSON report path (default: DIR/evaluation.json)")
    parser.add_argument("--mode", choices=MODE_CHOICES, default="both", help="pipelines to score (default both)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first K samples")
    parser.add_argument("--tol", type=int, default=TOLERANCE_PX,
                        help=f"tolerance in px for the tolerant scores (default {TOLERANCE_PX})")
    parser.add_argument("--models", default=None, help="folder of model weights (default assets/models)")
    from veer.infer import add_views_argument

    add_views_argument(parser)
    parser.add_argument("--no-digitize", action="store_true", help="skip the curve-digitisation scores")
    parser.add_argument("--truth-curves", action="store_true",
                        help="also trace the truth masks (the digitiser's own error, as pipeline truth_mask)")
    parser.add_argument("--labels", default=None, metavar="DIR",
                        help="keep each pipeline's labels in DIR and reuse them on later runs with the same "
                             "weights and settings (a digitiser change is rescored without running the models)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    data_dir = Path(args.data)
    if args.tol < 0:
        raise ConfigError(f"--tol must be >= 0, got {args.tol}")
    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    existing = find_samples(data_dir) if data_dir.is_dir() else []
    generated = None
    if not existing and args.n is not None:
        with tqdm(total=args.n, desc="generating logs", unit="log", file=sys.stderr) as bar:
            def gen_progress(done: int, total: int, text: str) -> None:
                bar.update(done - bar.n)
            generate_eval_set(data_dir, args.n, args.seed, progress=gen_progress)
        generated = {"n": args.n, "seeds": [args.seed, args.seed + args.n - 1]}
    elif existing and args.n is not None:
        print(f"{data_dir} already holds {len(existing)} sample(s); scoring those (--n ignored)",
              file=sys.stderr)
    elif not existing:
        raise ConfigError(f"{data_dir}: " + ("no scans with truth (<stem>.mask.png) in this folder"
                                             if data_dir.is_dir() else "no such folder")
                          + "; pass --n N to generate N synthetic logs there")
    modes = _check_modes(args.mode)
    # load the models before any progress bar, so a missing weight file is one clean line
    segmenters = {m: get_segmenter(m, device=args.device, models_dir=args.models, views=args.views,
                                   scales=args.scales, scale_views=args.scale_views)
                  for m in modes}

    if args.labels:
        _labels_folder(args.labels)  # before the progress bar, so a bad folder is one clean line
    with tqdm(desc="evaluating", unit="step", file=sys.stderr) as bar:
        def progress(done: int, total: int, text: str) -> None:
            bar.total = total
            bar.set_postfix_str(text[-40:], refresh=False)
            bar.update(done - bar.n)
        report = evaluate_folder(data_dir, modes, device=args.device, progress=progress,
                                 limit=args.limit, segmenters=segmenters, tol=args.tol,
                                 digitize=not args.no_digitize, keep_partial_on_interrupt=True,
                                 truth_curves=args.truth_curves, labels_dir=args.labels)
    if generated:
        report["data"]["generated"] = generated
    out = Path(args.out) if args.out else data_dir / "evaluation.json"
    write_report(report, out)
    print(format_table(report))
    if not report["complete"]:
        print(f"\ninterrupted: the report at {out} covers the {report['data']['samples_scored']} "
              f"sample(s) finished before the stop")
        return 130
    cache = report.get("labels_cache")
    if cache:
        print(f"\nlabels in {cache['dir']}: {cache['reused']} reused, {cache['computed']} computed "
              f"(a reused result's seconds are those of the run that made it)")
    print(f"\nreport written to {out}")
    return 0
