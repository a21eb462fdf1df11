"""Masks -> curves a petrophysicist can use: centre lines, calibration, CSV and LAS.

The pipeline, one plain function per step::

    tracks = find_tracks(gray)                      # plotting areas from the heavy borders
    table  = trace_curves(labels, tracks)           # centre line per row, track and curve
    cal    = Calibration(depth=fit_depth([(r0, d0), (r1, d1)]), scales=[ValueScale(0, 150)])
    log    = digitize_labels(labels, gray=gray, calibration=cal)   # all of the above
    write_csv(log, "out/scan.curves.csv"); write_las(log, "out/scan.las")
    score_curves(truth, log.table)                   # against a synthetic log's truth

Tracing (per track and curve class)
    The pixels of the class (255 "both curves" counts for each) inside the
    track are split into 8-connected pieces (pieces side by side within a
    dash gap count as one). A dynamic programme chains pieces from top to
    bottom so that the chain covers as many rows as possible while each link
    is continuous: the next piece starts where the last one ended (or where
    it was heading, over a gap), or at the other border of the track (a
    wrap-around: the wrap count goes up or down by one). Specks and blobs of
    the curve class away from the trace do not fit the chain and are
    dropped; a piece reached only by a jump costs as much as a fresh start.
    The wrap count the trace spends most rows at is taken as zero.
    Where the trace sweeps across the track in a few rows and runs off scale,
    the stroke leaving one border and the one re-entering at the other touch
    and form one piece; there the wrap is decided from which columns the
    sweep inks, in which order, and which way it leaves and arrives
    (:func:`_resolve_sweeps`).
    Positions: the stroke's half-width is measured (distance transform), the
    ink is eroded to its pen path (round caps and the fat ends of dots
    vanish), and in each row the stretch continuing the rows above is kept.
    Steep rows take the sub-pixel middle of their ink. Near-horizontal rows
    (steps, spikes, zigzags), where one row's ink mixes several legs of the
    path, are refined by fitting the pen model: the polyline through one
    point per row, drawn with the measured pen, must ink exactly the pixels
    that are inked (:func:`_fit_path`), so excursions are followed to their
    tips instead of being averaged away. Gaps up to ``TraceParams.max_gap``
    rows (dashes, dots, crossings) are bridged by linear interpolation of the
    unwrapped position; longer ones stay empty.
    Hidden stretches: where a curve's ink stops within a few px of the other
    curve, which runs on, and resumes beside it again, the curve ran under
    the other (a model labels those pixels as the other curve): the gap is
    filled along the other curve, at the offset of its two ends
    (:func:`_bridge_hidden`).
    Wraps settled: one missed wrap step would put every later value a whole
    scale out. A curve is off scale only briefly, so each wrap step the
    tracer took is open to a second look, and a dynamic programme trades the
    rows left off scale against the steps re-decided (:func:`_settle_wraps`).

Coordinates
    x is a float pixel column of the whole image (pixel centres at integers).
    A track's plotting area runs from ``x0`` to ``x1`` at row ``row_ref`` and
    both borders drift by ``slope`` px per row (page skew). The unwrapped
    position is ``xu = x + wraps * (x1 - x0)`` and the track fraction
    ``frac = (xu - x0(row)) / (x1 - x0)``; a value scale maps frac to the
    physical value (linear or log10, see :class:`ValueScale`).

CLI: ``python -m veer digitize IMAGE [IMAGE ...] --out DIR [--mask MASK ...]
[--tracks auto|X0:X1,...] [--depth-points ROW:DEPTH,...] [--scale ...] ...``
writes ``DIR/<stem>.curves.csv`` and, when calibrated, ``DIR/<stem>.las``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from veer.classes import CURVE1, CURVE2, IGNORE
from veer.errors import ConfigError, MaskError, VeerError
from veer.metrics import bootstrap_share

CURVES = ("curve1", "curve2")
SOLID_SHARE = 0.9          # a trace whose ink covers this share of its rows is continuous (solid)
LOCAL_WIDTH_ROWS = 61  # rows over which the tracer judges how thick the ink is locally
LOCAL_WIDTH_QUANTILE = 0.75  # ... from this quantile of the per-row ridge of the ink (0.25-1.0 tried)
SWEEP_WIDTH = 0.25         # a row whose ink spans this share of the track may be a sweep across it (_resolve_sweeps)
CURVE_CLASSES = {"curve1": CURVE1, "curve2": CURVE2}
LAS_NULL = -999.25
DEPTH_UNITS = {"ft": "F", "m": "M"}

# CSV columns: always, then with a depth calibration, then with value scales.
BASE_COLUMNS = ("row", "track", "curve1_x", "curve2_x", "curve1_xu", "curve2_xu")
DEPTH_COLUMNS = ("depth",)
VALUE_COLUMNS = ("curve1_value", "curve2_value")


# =========================================================================== tracks


@dataclass(frozen=True)
class Track:
    """A track's plotting area: borders x0 < x1 at row ``row_ref``, drifting by ``slope`` px/row.

    Unpacks like the plain ``(x0, x1)`` pair the rest of veer passes around.
    """

    x0: float
    x1: float
    slope: float = 0.0
    row_ref: float = 0.0

    def __iter__(self) -> Iterator[float]:
        yield self.x0
        yield self.x1

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        return (self.x0, self.x1)[i]

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    def left(self, rows) -> np.ndarray:
        return self.x0 + self.slope * (np.asarray(rows, np.float64) - self.row_ref)

    def right(self, rows) -> np.ndarray:
        return self.x1 + self.slope * (np.asarray(rows, np.float64) - self.row_ref)

    def frac(self, rows, xu) -> np.ndarray:
        """Unwrapped position -> fraction of the track width from its left border."""
        return (np.asarray(xu, np.float64) - self.left(rows)) / self.width

    def as_dict(self) -> dict:
        return {"x0": float(self.x0), "x1": float(self.x1), "slope": float(self.slope),
                "row_ref": float(self.row_ref)}


def as_track(t: Any) -> Track:
    """A :class:`Track` from a Track, ``(x0, x1)``, ``(x0, x1, slope, row_ref)`` or a dict."""
    if isinstance(t, Track):
        return t
    if isinstance(t, Mapping):
        return Track(float(t["x0"]), float(t["x1"]), float(t.get("slope", 0.0)), float(t.get("row_ref", 0.0)))
    vals = [float(v) for v in t]
    if len(vals) == 2:
        vals += [0.0, 0.0]
    if len(vals) != 4:
        raise ConfigError(f"a track is (x0, x1) in pixels; got {t!r}")
    if not vals[1] > vals[0]:
        raise ConfigError(f"track {vals[0]:g}:{vals[1]:g} is empty (x1 must be greater than x0)")
    return Track(*vals)


def parse_tracks(text: str | None) -> list[Track] | None:
    """``"auto"``/empty -> None; ``"X0:X1,X0:X1"`` -> tracks (whole-image pixel columns)."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "auto":
        return None
    tracks = []
    for part in str(text).split(","):
        try:
            a, b = (float(v) for v in part.split(":"))
        except ValueError:
            raise ConfigError(f"--tracks {text!r}: write track ranges as X0:X1,X0:X1 in pixels, "
                              f"or 'auto'") from None
        if not b > a:
            raise ConfigError(f"--tracks: {part} is empty (X1 must be greater than X0)")
        tracks.append(Track(a, b))
    return sorted(tracks, key=lambda t: t.x0)


def _dark_threshold(gray: np.ndarray) -> float:
    """Ink/paper threshold: Otsu on a subsample, kept within sane limits."""
    sample = gray[:: max(1, gray.shape[0] // 512), :: max(1, gray.shape[1] // 512)]
    try:
        from skimage.filters import threshold_otsu

        thr = float(threshold_otsu(sample)) if sample.min() < sample.max() else 128.0
    except Exception:  # noqa: BLE001 - a flat or odd image: use the middle grey
        thr = 128.0
    return float(min(max(thr, 60.0), 200.0))


def estimate_skew(dark: np.ndarray, max_deg: float = 3.0) -> float:
    """Slope (dx per row) that makes long vertical lines of ``dark`` sharpest.

    Dark pixels are projected onto a sheared column axis for each candidate
    angle; the angle with the most peaked column histogram wins (coarse then
    fine search). Returns dx/drow (0 for a straight scan).
    """
    h, w = dark.shape
    step = max(1, h // 1500)
    rows, cols = np.nonzero(dark[::step])
    if rows.size < 10:
        return 0.0
    if rows.size > 600_000:
        keep = np.random.default_rng(0).choice(rows.size, 600_000, replace=False)
        rows, cols = rows[keep], cols[keep]
    rows = rows.astype(np.float64) * step - h / 2.0
    cols = cols.astype(np.float64)

    def sharpness(slope: float) -> float:
        x = np.rint(cols - slope * rows).astype(np.int64)
        x -= x.min()
        hist = np.bincount(x).astype(np.float64)
        return float(np.dot(hist, hist))

    lim = math.tan(math.radians(max_deg))
    coarse = np.linspace(-lim, lim, 2 * int(round(max_deg / 0.1)) + 1)
    best = max(coarse, key=sharpness)
    d = coarse[1] - coarse[0] if coarse.size > 1 else 0.0
    fine = np.linspace(best - d, best + d, 21)
    best = max(fine, key=sharpness)
    return float(best) if abs(best) > 1e-5 else 0.0


def _lines_1d(profile: np.ndarray, level: float) -> list[tuple[float, float, int, int]]:
    """Runs of ``profile >= level``: (centre, mass = summed profile, first, last)."""
    on = profile >= level
    pad = np.concatenate([[False], on, [False]]).astype(np.int8)
    d = np.diff(pad)
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1
    out = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        w = profile[a:b + 1]
        out.append((float(np.dot(np.arange(a, b + 1), w) / w.sum()), float(w.sum()), a, b))
    return out


def _shear(dark: np.ndarray, slope: float, block: int = 32) -> tuple[np.ndarray, int]:
    """Shift column blocks up/down so horizontal lines of a skewed scan lie along rows."""
    h, w = dark.shape
    xc = (w - 1) / 2.0
    pad = int(math.ceil(abs(slope) * w / 2.0)) + 1
    out = np.zeros((h + 2 * pad, w), dark.dtype)
    for c0 in range(0, w, block):
        c1 = min(w, c0 + block)
        sh = int(round(slope * ((c0 + c1 - 1) / 2.0 - xc)))
        out[pad + sh:pad + sh + h, c0:c1] = dark[:, c0:c1]
    return out, pad


def _grid_models() -> list[np.ndarray]:
    """Inner line positions (fractions of the width) of the grids a track may carry:
    linear grids of 3..25 divisions, logarithmic grids of 1..5 decades."""
    models = [np.arange(1, n) / n for n in range(3, 26)]
    for d in range(1, 6):
        f = np.array([(j + math.log10(k)) / d for j in range(d) for k in range(1, 10)])
        models.append(f[f > 0])
    return models


_GRID_MODELS = _grid_models()


def _grid_score(peaks: list[float], a: float, b: float) -> float:
    """How well the line peaks between a and b form a track grid (recall x precision).

    Tried: linear grids of 3..25 divisions and logarithmic grids of 1..5
    decades (lines at log10 of 2..9 within each decade, decade lines between).
    """
    if len(peaks) < 2:
        return 0.0
    width = b - a
    tol = max(2.0, 0.01 * width)
    pk = np.asarray(peaks)
    best = 0.0
    for f in _GRID_MODELS:
        exp = a + f * width
        # lines closer than the tolerance to the next line or border cannot be told apart
        gaps = np.diff(np.r_[a, exp, b])
        exp = exp[(gaps[:-1] >= 2 * tol + 1.0) & (gaps[1:] >= 2 * tol + 1.0)]
        if exp.size < 2:
            continue
        dist = np.abs(exp[:, None] - pk[None, :])
        recall = float((dist.min(axis=1) <= tol).mean())          # expected lines that are there
        precision = float((dist.min(axis=0) <= tol).mean())       # peaks the grid explains
        best = max(best, recall * precision)
    return best


def _grid_fit(peaks: np.ndarray, a: float, b: float) -> tuple[float, float, float]:
    """Best grid between borders a and b for the line peaks inside.

    Returns (peaks explained - peaks left unexplained - lines expected but
    missing, recall, precision) of the grid that scores best. Every peak
    counts once however the space is split, so the scores of neighbouring
    spaces add up fairly.
    """
    width = b - a
    tol = max(2.0, 0.01 * width)
    pk = peaks[(peaks > a + tol) & (peaks < b - tol)]
    best = (-math.inf, 0.0, 0.0)
    for f in _GRID_MODELS:
        every = a + f * width
        gaps = np.diff(np.r_[a, every, b])
        # lines closer than the tolerance to the next line or border cannot be told apart:
        # they are not expected, but a peak there is explained
        exp = every[(gaps[:-1] >= 2 * tol + 1.0) & (gaps[1:] >= 2 * tol + 1.0)]
        if exp.size < 2 or pk.size == 0:
            continue
        hit = np.abs(exp[:, None] - pk[None, :]).min(axis=1) <= tol
        used = np.abs(every[:, None] - pk[None, :]).min(axis=0) <= tol
        score = float(used.sum() - (~used).sum() - (~hit).sum())
        if score > best[0]:
            best = (score, float(hit.mean()), float(used.mean()))
    return best


def _tracks_by_grid(lines: Sequence[float], peaks: np.ndarray, min_w: float, max_w: float,
                    track_cost: float = 3.0, min_fit: float = 0.75) -> list[tuple[float, float]]:
    """Track spans that explain the vertical lines best, each a gridded space between two lines.

    Dynamic programming over the lines left to right: a line is a border of
    the track on its left or right, or a line outside every track (costs 1);
    a track between two lines scores its grid's fit (:func:`_grid_fit`: lines
    explained, less lines missing and peaks unexplained), plus one for its
    right border, less ``track_cost`` (so one track of four decades beats four
    tracks of one decade). Only spaces whose best grid has recall and
    precision of ``min_fit`` or more can be tracks. Decade and centre lines
    printed heavier than the borders do not split a track here.
    """
    xs = sorted(float(x) for x in lines)
    m = len(xs)
    if m < 2:
        return []
    NEG = -math.inf
    end_border = [NEG] * m   # best score with line j the right border of a track
    end_free = [NEG] * m     # best score with line j outside every track
    back: list[tuple] = [None] * m
    back_free: list[tuple] = [None] * m
    for j in range(m):
        # line j outside tracks
        if j == 0:
            end_free[j], back_free[j] = -1.0, None
        else:
            prev = max(end_border[j - 1], end_free[j - 1])
            end_free[j] = prev - 1.0
            back_free[j] = ("b" if end_border[j - 1] >= end_free[j - 1] else "f", j - 1)
        for k in range(j - 1, -1, -1):
            wd = xs[j] - xs[k]
            if wd > max_w:
                break
            if wd < min_w:
                continue
            score, rec, prec = _grid_fit(peaks, xs[k], xs[j])
            if rec < min_fit or prec < min_fit:
                continue
            # line k: a shared border (already counted) or a line made a border (-1 -> +1)
            start = max(end_border[k], (end_free[k] + 2.0) if k else 1.0)
            # inner lines k+1..j-1 not counted yet: the grid's score covers them
            total = start + score + 1.0 - track_cost
            if total > end_border[j]:
                end_border[j] = total
                back[j] = ("b" if start == end_border[k] else "f", k)
    # walk back from the best end (lines after the last track count as outside)
    best, j_end, kind = NEG, None, None
    for j in range(m):
        for val, kd in ((end_border[j], "b"), (end_free[j], "f")):
            val = val - (m - 1 - j)
            if val > best:
                best, j_end, kind = val, j, kd
    spans = []
    j = j_end
    while j is not None:
        if kind == "b":
            how, k = back[j]
            spans.append((xs[k], xs[j]))
            j, kind = k, how
            if kind == "f" and j is not None:
                # line k was free before it became this track's border: continue from its free chain
                prev = back_free[j]
                if prev is None:
                    break
                kind, j = prev
        else:
            prev = back_free[j]
            if prev is None:
                break
            kind, j = prev
    return sorted(spans)


def _border_mass_threshold(masses: Sequence[float], floor: float = 0.3, min_drop: float = 1.35) -> float:
    """The darkness mass a vertical line needs to be a border candidate.

    At least ``floor`` of the heaviest line's. Where the lines fall into a
    heavy group (borders, decade and centre lines) and a clearly lighter one
    (the grid: a 1-bit scan inks grid lines nearly as dark as borders, but
    thinner), the threshold goes up to the break between them: the largest
    ratio between neighbouring masses in descending order, when it is at
    least ``min_drop`` and leaves three or more lines above it (a log's
    tracks and depth column have at least three borders; the two outer
    borders alone, often drawn heavier, are no group).
    """
    m = sorted((float(v) for v in masses), reverse=True)
    if not m:
        return math.inf
    thr = floor * m[0]
    best, cut = min_drop, None
    for i in range(2, len(m) - 1):
        if m[i] < thr:
            break
        ratio = m[i] / m[i + 1] if m[i + 1] > 0 else math.inf
        if ratio >= best:
            best, cut = ratio, i
    if cut is not None:
        thr = max(thr, 0.5 * (m[cut] + m[cut + 1]))
    return thr


def find_tracks(gray: np.ndarray, *, labels: np.ndarray | None = None, min_width: int | None = None,
                max_skew_deg: float = 2.0) -> list[Track]:
    """The tracks (plotting areas) of a log scan, left to right.

    1. Skew: the shear that makes long vertical lines sharpest.
    2. Long vertical lines (columns dark in many rows, at most ~1 % of the
       width thick) and how dark each is above its surroundings.
    3. The heaviest lines are border candidates; the space between two
       neighbouring candidates is a track if it is wide enough (``min_width``,
       default 6 % of the image width) and holds vertical grid lines (the
       depth column between tracks holds none, only ticks and numbers). With
       ``labels`` (the segmentation) a space holding curve pixels is a
       track; without grid or labels, a space wider than 16 % of the log.
    4. Neighbouring track spaces are one track split by a heavy grid line
       (a decade line, the centre line) when they are cells of the same width
       and both hold a grid, or when the line between them is clearly lighter
       than the borders of the depth column.
    5. With ``labels``: where those tracks leave curves out, the layout that
       best explains the vertical lines as track grids is taken instead when
       it holds clearly more of them (:func:`_tracks_by_grid`); neighbouring
       tracks whose shared line curve strokes cross are one track
       (:func:`_join_crossed`); a track with two curves of one class side by
       side is two (:func:`_split_doubled`).

    Returns :class:`Track` objects whose x0/x1 are the centres of the border
    lines at mid-height (where the scale's end values are drawn), and
    ``slope`` the skew (px per row).
    """
    from scipy import ndimage

    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        raise ConfigError(f"find_tracks needs a grayscale image, got shape {gray.shape}")
    h, w = gray.shape
    thr = _dark_threshold(gray)
    slope = estimate_skew(gray <= thr, max_skew_deg)
    row_ref = (h - 1) / 2.0
    step = max(1, h // 4000)
    xpad = int(abs(slope) * h) + 2
    gr, gc = np.mgrid[0:h:step, 0:w]
    gx = (np.rint(gc - slope * (gr - row_ref)).astype(np.int64) + xpad).ravel()
    g = gray[gr, gc].ravel()
    n = w + 2 * xpad
    cnt = np.maximum(np.bincount(gx, minlength=n), 1)
    vprof = np.bincount(gx, weights=(g <= thr), minlength=n) / cnt          # share of dark rows
    dprof = np.bincount(gx, weights=255.0 - g, minlength=n) / cnt          # mean darkness
    dprof = np.maximum(dprof - ndimage.median_filter(dprof, size=41, mode="nearest"), 0.0)
    # narrow peaks above the local level (hatched intervals and busy curves are broad)
    vdet = vprof - ndimage.median_filter(vprof, size=41, mode="nearest")
    if vdet.max(initial=0) < 0.25:
        return []
    max_w = max(10, int(0.012 * w))
    lines = [(c, float(dprof[a:b + 1].sum())) for c, _, a, b in _lines_1d(vdet, 0.3 * float(vdet.max()))
             if b - a + 1 <= max_w]
    if len(lines) < 2:
        return []
    cands = [ln for ln in lines if ln[1] >= _border_mass_threshold([m for _, m in lines])]
    if len(cands) < 2:
        return []
    min_w = float(min_width if min_width is not None else max(20.0, 0.06 * w))
    # grid lines, however light: narrow peaks of the darkness profile
    peaks = np.flatnonzero((dprof[1:-1] >= dprof[:-2]) & (dprof[1:-1] > dprof[2:]) &
                           (dprof[1:-1] >= 0.06 * float(dprof.max()))) + 1
    inner = []
    for (a, _), (b, _) in zip(cands[:-1], cands[1:]):
        inner.append([float(c) for c in peaks if a + 4 < c < b - 4])
    span = cands[-1][0] - cands[0][0]
    widths = [b - a for (a, _), (b, _) in zip(cands[:-1], cands[1:])]
    gridded = [_grid_score(inner[i], cands[i][0], cands[i + 1][0]) >= 0.6 for i in range(len(widths))]
    bare = [wd for wd, g in zip(widths, gridded) if not g and wd >= min_w]
    narrow = min(bare) if len(bare) >= 2 else math.inf
    is_track = []
    for i, ((a, _), (b, _)) in enumerate(zip(cands[:-1], cands[1:])):
        if (b - a) < min_w:
            is_track.append(False)
            continue
        ink = None
        if labels is not None:
            lo, hi = int(round(a - xpad)) + 3, int(round(b - xpad)) - 3
            if hi > lo:
                ink = float(((labels[::step, max(lo, 0):max(hi, 0)] == CURVE1) |
                             (labels[::step, max(lo, 0):max(hi, 0)] == CURVE2)).any(axis=1).mean())
        if ink is not None:
            is_track.append(ink >= 0.05 or gridded[i])
        else:
            # no grid drawn (lost in a 1-bit scan, say): the depth column is the narrowest space
            is_track.append(gridded[i] or (b - a) >= 0.16 * span or (b - a) >= 1.5 * narrow)
    # a space of a track's width and pattern between two track spaces is a cell of a track
    for i in range(1, len(is_track) - 1):
        if not is_track[i] and is_track[i - 1] and is_track[i + 1]:
            wi = cands[i + 1][0] - cands[i][0]
            for j in (i - 1, i + 1):
                wj = cands[j + 1][0] - cands[j][0]
                if abs(wi - wj) <= 0.03 * wj + 2.0 and _grid_score(inner[i], cands[i][0], cands[i + 1][0]) > 0.2:
                    is_track[i] = True
    # ... and so is one at the end of a run of equal gridded cells (the last decade of a
    # log track, which the curves never reached)
    def same(a: float, b: float) -> bool:
        return abs(a - b) <= 0.03 * max(a, b) + 2.0

    for i in range(len(is_track)):
        if is_track[i] or widths[i] < min_w or _grid_score(inner[i], cands[i][0], cands[i + 1][0]) <= 0.2:
            continue
        for j, k in ((i - 1, i - 2), (i + 1, i + 2)):
            if 0 <= k < len(is_track) and 0 <= j < len(is_track) and is_track[j] and is_track[k] \
                    and same(widths[i], widths[j]) and same(widths[j], widths[k]):
                is_track[i] = True
                break
    # a run of three or more equal cells between two heavier lines, curves in at least one of
    # them, is one track whose division lines print as dark as borders (a 1-bit scan of a
    # linear track without finer vertical grid)
    joined: set[int] = set()
    runs = []
    for i in range(len(widths)):
        for j in range(i + 2, len(widths)):
            if not same(widths[j], widths[i]):
                break
            inner_m = max(cands[k][1] for k in range(i + 1, j + 1))
            if inner_m < 0.8 * min(cands[i][1], cands[j + 1][1]) and any(is_track[i:j + 1]) \
                    and cands[j + 1][0] - cands[i][0] >= min_w:
                runs.append((j - i, i, j))
    for _, i, j in sorted(runs, reverse=True):
        if joined.intersection(range(i, j + 2)):
            continue                       # overlaps a longer run already joined
        for k in range(i, j + 1):
            is_track[k] = True
        joined.update(range(i + 1, j + 1))
    # borders for sure: those of the depth column (a space that is no track between tracks),
    # else the outermost ones (drawn a little heavier)
    ref = [cands[i][1] for i in range(1, len(cands) - 1) if not is_track[i - 1] or not is_track[i]]
    if not ref:
        ref = [cands[0][1], cands[-1][1]]
    border_m = float(np.median(ref))
    tracks: list[Track] = []
    start = None
    for i in range(len(is_track)):
        if not is_track[i]:
            start = None
            continue
        if start is None:
            start = i
        if i + 1 < len(is_track) and is_track[i + 1]:
            a, b, c = cands[i][0], cands[i + 1][0], cands[i + 2][0]
            same_cells = abs((b - a) - (c - b)) <= 0.03 * max(b - a, c - b) + 2.0 and \
                min(_grid_score(inner[i], a, b), _grid_score(inner[i + 1], b, c)) >= 0.5
            grid_line = cands[i + 1][1] < 0.7 * border_m or same_cells or (i + 1) in joined
            if grid_line:
                continue                      # a heavy grid line: the track goes on
        x0, x1 = cands[start][0] - xpad, cands[i + 1][0] - xpad
        tracks.append(Track(float(x0), float(x1), slope, row_ref))
        start = None
    if labels is not None:
        # borders picked by darkness fail where decade lines print heavier than borders and
        # grid lines nearly as heavy (a light grey scan): if the tracks leave curves out, lay
        # the tracks out by grid instead, and take that when it holds clearly more of them
        curve = (labels[::step] == CURVE1) | (labels[::step] == CURVE2)
        cprof = np.bincount(gx, weights=curve.ravel(), minlength=n)
        total = float(cprof.sum())

        def covered(spans) -> float:
            cols = np.arange(n)
            inside = np.zeros(n, bool)
            for a, b in spans:
                inside |= (cols >= a - 3) & (cols <= b + 3)
            return float(cprof[inside].sum()) / total

        if total > 0:
            have = covered([(t.x0 + xpad, t.x1 + xpad) for t in tracks])
            if have < 0.99:
                spans = _tracks_by_grid([c for c, _ in lines], peaks.astype(np.float64), min_w, 0.9 * n)
                if spans and covered(spans) > have + 0.015:
                    tracks = [Track(float(a - xpad), float(b - xpad), slope, row_ref) for a, b in spans]
        tracks = _join_crossed(tracks, labels)
        tracks = _split_doubled(tracks, labels, [(c - xpad, m) for c, m in lines], peaks - xpad, step)
    return tracks


def _split_doubled(tracks: list[Track], labels: np.ndarray, lines: Sequence[tuple[float, float]],
                   peaks: np.ndarray, step: int = 1, min_share: float = 0.3) -> list[Track]:
    """Split a track that holds two curves of one class side by side: two tracks taken for one.

    A track has at most one curve of each class. Where, in ``min_share`` or
    more of the rows that have a curve class, that class inks both sides of
    one of the track's vertical lines (``lines``: (x, darkness mass)), and
    no stroke crosses the line, the track is two. The split is at the
    heaviest of the lines that separate best; where those lines bound a space
    with neither grid (``peaks``) nor curves, that space is a depth column
    and both its lines become borders.
    """
    h, w = labels.shape
    sub = labels[::step]
    rows = np.arange(0, h, step)
    ink = {cls: sub == cls for cls in (CURVE1, CURVE2)}
    curve = ink[CURVE1] | ink[CURVE2]
    out: list[Track] = []
    for t in tracks:
        inner = [(x, m) for x, m in lines if t.x0 + 8 < x < t.x1 - 8]
        if not inner:
            out.append(t)
            continue
        cols = np.arange(w)[None, :] - (t.slope * (rows - t.row_ref))[:, None]  # at the reference row
        best_n, best = 0, []
        for cls in (CURVE1, CURVE2):
            inside = (cols > t.x0 + 3) & (cols < t.x1 - 3) & ink[cls]
            n_has = int(inside.any(axis=1).sum())
            if n_has < 20:
                continue
            for x, m in inner:
                both = int(((inside & (cols < x - 3)).any(axis=1) & (inside & (cols > x + 3)).any(axis=1)).sum())
                if both < min_share * n_has:
                    continue
                if both > best_n * 1.1:
                    best_n, best = both, [(x, m, both)]
                elif both >= best_n * 0.9:
                    best.append((x, m, both))
        top = max((b for _, _, b in best), default=0)
        tied = sorted((x, m) for x, m, b in best if b >= 0.9 * top
                      and _crossings(labels, x, t.slope, t.row_ref) < 2)
        if not tied:
            out.append(t)
            continue
        xa, xb = tied[0][0], tied[-1][0]
        empty = not (curve & (cols > xa + 3) & (cols < xb - 3)).any()
        grid = int(((peaks > xa + 4) & (peaks < xb - 4)).sum())
        if xb - xa >= 20 and empty and grid == 0:
            out += [Track(t.x0, xa, t.slope, t.row_ref), Track(xb, t.x1, t.slope, t.row_ref)]
        else:
            x = max(tied, key=lambda v: v[1])[0]
            out += [Track(t.x0, x, t.slope, t.row_ref), Track(x, t.x1, t.slope, t.row_ref)]
    return out


def _crossings(labels: np.ndarray, x: float, slope: float, row_ref: float, reach: int = 6,
               min_rows: int = 4) -> int:
    """How many curve strokes cross the vertical line at ``x`` (drifting by ``slope``).

    A stroke crosses when one connected piece of a curve class has pixels
    ``reach`` px left and ``reach`` px right of the line, over ``min_rows``
    rows or more (a few rows across are the ends of two near-horizontal
    sweeps meeting at a border from either side), and is on one side first
    and then on the other. Curves never cross a track's border (they wrap
    around instead), so a line that strokes cross is a grid line.
    """
    from scipy import ndimage

    h, w = labels.shape
    rows = np.arange(h)
    centre = np.rint(x + slope * (rows - row_ref)).astype(np.int64)
    cols = centre[:, None] + np.arange(-reach, reach + 1)[None, :]
    valid = (cols >= 0) & (cols < w)
    band = np.where(valid, labels[rows[:, None], np.clip(cols, 0, w - 1)], 0)
    crossing = 0
    for cls in (CURVE1, CURVE2):
        lab, k = ndimage.label((band == cls) | (band == IGNORE))
        if k == 0:
            continue
        left = np.unique(lab[:, :2])
        right = np.unique(lab[:, -2:])
        both = np.intersect1d(left[left > 0], right[right > 0])
        for b in both.tolist():
            lr = np.flatnonzero((lab[:, :2] == b).any(axis=1))
            rr = np.flatnonzero((lab[:, -2:] == b).any(axis=1))
            cr = np.flatnonzero((lab == b).any(axis=1))
            tall = cr[-1] - cr[0] + 1 >= min_rows
            # a stroke passing through is on one side first, then on the other, and reaches
            # the line only in between; a piece that runs along the line past where it leaves
            # to either side is no crossing (a segmentation that takes a stretch of border
            # for curve, with the wraps leaving it)
            first, last = (lr, rr) if lr[0] <= rr[0] else (rr, lr)
            through = first[-1] <= last[0] + 3 and cr[0] >= first[0] - 3 and cr[-1] <= last[-1] + 3
            crossing += int(tall and through)
    return crossing


def _crossed(labels: np.ndarray, x: float, slope: float, row_ref: float, min_crossings: int = 3) -> bool:
    """True when ``min_crossings`` or more curve strokes cross the line at ``x``."""
    return _crossings(labels, x, slope, row_ref) >= min_crossings


def _join_crossed(tracks: list[Track], labels: np.ndarray) -> list[Track]:
    """Join neighbouring tracks that share a border the curves cross: that line is a heavy
    grid line (a decade or centre line), not a border."""
    out: list[Track] = []
    for t in tracks:
        if out and abs(t.x0 - out[-1].x1) <= 3.0 and _crossed(labels, t.x0, t.slope, t.row_ref):
            prev = out.pop()
            t = Track(prev.x0, t.x1, t.slope, t.row_ref)
        out.append(t)
    return out


# =========================================================================== tracing


@dataclass(frozen=True)
class TraceParams:
    """Knobs of the tracer (defaults suit 100-300 dpi scans)."""

    margin: float = 2.0          # px beyond a track's borders still searched (ink at the edge)
    max_gap: int = 60            # rows bridged by interpolation (dashes, dots, crossings); longer stay empty
    join_tol: float = 10.0       # px two pieces of trace may be apart and still join
    max_slope: float = 4.0       # px per row the trace may drift across a gap
    merge_gap: float = 12.0      # px between runs of one row that still belong to one stretch of trace
    max_overlap: int = 16        # rows two consecutive pieces may share (side-by-side dashes, wraps)
    gap_cost: float = 0.1        # chain score lost per empty row between two pieces
    dist_cost: float = 0.25      # chain score lost per px of misfit at a link
    break_cost: float = 12.0     # chain score lost by a jump (a piece that does not continue the last)
    fit_iters: int = 80          # iterations of the pen-path fit on near-horizontal rows (0: off)
    baseline_wrap: bool = True   # count wraps from the wrap count the trace spends most rows at
    sweeps: bool = True          # re-decide wraps across near-horizontal sweeps to a border (_resolve_sweeps)
    hidden_max: int = 3000       # rows a curve may run hidden under the other (_bridge_hidden; 0: off)
    hidden_tol: float = 10.0     # px from the other curve at both ends of such a stretch
    hidden_cover: float = 0.8    # share of the stretch's rows the other curve must ink
    offscale_rows: float = 200.0 # rows off scale that outweigh one doubtful wrap step (_settle_wraps; 0: off)
    wrap_doubt: float = 1.0      # cost of re-deciding one wrap step (_settle_wraps)
    hidden_link: float = 0.2     # misfit cost factor of a link whose gap the other curve inks (1: off)
    hidden_sweep: int = 30       # rows of a gap across which this curve may share the other's wrap (0: off)
    sweep_slope: float = 4.0     # px per row this curve must move toward that wrap at the gap
    shadow_share: float = 0.1    # a trace with its own class's ink on fewer of its rows is dropped (0: off)
    wrap_follow: int = 40        # rows of a wrap step of curve1 that curve2, jumping across it unseen, takes too
                                 # (_follow_other_wrap; 0: off)
    wrap_follow_group: int = 10  # rows between curve1's wrap changes that still make one step
    wrap_follow_margin: int = 8  # rows before and after the step where curve2's own ink is compared
    wrap_follow_jump: float = 0.03   # share of the track width curve2 must move across the step
    wrap_follow_cover: float = 0.6   # share of the direct path's columns whose own ink keeps curve2's no-wrap
    wrap_follow_pairs: bool = True   # the solid curve out and back: curve2 takes both steps or neither
                                     # where it takes one and the other is in doubt (_follow_other_wrap)


def _row_runs(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in each row: (row, first col, last col), row-major."""
    h, w = m.shape
    p = np.zeros((h, w + 2), np.int8)
    p[:, 1:-1] = m
    d = np.diff(p, axis=1)
    r0, a = np.nonzero(d == 1)
    _, b = np.nonzero(d == -1)
    return r0, a, b - 1


@dataclass
class _Pieces:
    """Connected components of one curve class in one track, summarised."""

    top: np.ndarray
    bot: np.ndarray
    nrows: np.ndarray
    a_top: np.ndarray
    b_top: np.ndarray
    a_bot: np.ndarray
    b_bot: np.ndarray
    s_top: np.ndarray            # slope (px/row) over the first rows
    s_bot: np.ndarray            # slope over the last rows
    run_row: np.ndarray          # every run: row, first, last col (band), piece
    run_a: np.ndarray
    run_b: np.ndarray
    run_piece: np.ndarray
    lab: np.ndarray              # piece id + 1 on every ink pixel of the band, 0 elsewhere


def _pieces(m: np.ndarray, join: int = 0) -> _Pieces | None:
    from scipy import ndimage

    # pieces side by side within ``join`` px (dashes of a near-horizontal stretch) are one piece
    grown = ndimage.binary_dilation(m, structure=np.ones((1, 2 * join + 1), bool)) if join > 0 else m
    lab, n = ndimage.label(grown, structure=np.ones((3, 3), bool))
    if n == 0:
        return None
    r, a, b = _row_runs(m)
    piece = lab[r, a] - 1
    order = np.lexsort((a, r, piece))
    r, a, b, piece = r[order], a[order], b[order], piece[order]
    # hull of each (piece, row)
    key = piece.astype(np.int64) * (m.shape[0] + 1) + r
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    g_piece, g_row = piece[starts], r[starts]
    g_a = np.minimum.reduceat(a, starts)
    g_b = np.maximum.reduceat(b, starts)
    g_c = (g_a + g_b) / 2.0
    first = np.flatnonzero(np.r_[True, g_piece[1:] != g_piece[:-1]])
    last = np.r_[first[1:] - 1, g_piece.size - 1]
    k = 6
    first_k = np.minimum(first + k, last)
    last_k = np.maximum(last - k, first)

    def slope(i, j):
        dr = (g_row[j] - g_row[i]).astype(np.float64)
        return np.where(dr > 0, (g_c[j] - g_c[i]) / np.maximum(dr, 1), 0.0)

    return _Pieces(top=g_row[first], bot=g_row[last], nrows=(last - first + 1),
                   a_top=g_a[first].astype(np.float64), b_top=g_b[first].astype(np.float64),
                   a_bot=g_a[last].astype(np.float64), b_bot=g_b[last].astype(np.float64),
                   s_top=slope(first, first_k), s_bot=slope(last_k, last),
                   run_row=r, run_a=a, run_b=b, run_piece=piece, lab=np.where(m, lab, 0))


def _interval_gap(a1: float, b1: float, a2: float, b2: float) -> float:
    """Horizontal distance between intervals [a1, b1] and [a2, b2] (0 when they touch)."""
    return max(0.0, a2 - b1 - 1.0, a1 - b2 - 1.0)


def _most_rows_wrap(wraps: Sequence[int], rows: Sequence[int]) -> int:
    """The wrap count the trace spends most rows at (ties: the one nearer zero).

    The track's scale was chosen so the curve is on scale most of the time, so
    that count is zero and the others are excursions from it.
    """
    rows_at: dict[int, int] = {}
    for wr, n in zip(wraps, rows):
        rows_at[int(wr)] = rows_at.get(int(wr), 0) + int(n)
    return max(sorted(rows_at), key=lambda k: (rows_at[k], -abs(k))) if rows_at else 0


def _hidden_gap(other: np.ndarray, r0: int, r1: int, a: float, b: float, cover: float = 0.8) -> bool:
    """Whether a near-horizontal stroke of the other curve inks at least ``cover``
    of the columns a..b (band columns) within three consecutive rows somewhere in
    rows r0..r1: a step of this curve drawn under the other's stroke, where a
    model labels this curve's pixels as the other's. (A sloping stretch of the
    other curve does not count: junk pieces of this class along it are no step.)"""
    c0, c1 = int(math.ceil(a)), int(math.floor(b)) + 1
    c0, c1 = max(c0, 0), min(c1, other.shape[1])
    r0, r1 = max(int(r0), 0), min(int(r1) + 1, other.shape[0])
    if c1 - c0 < 2 or r1 <= r0:
        return False
    win = other[r0:r1, c0:c1]
    if win.shape[0] >= 3:
        win = win[:-2] | win[1:-1] | win[2:]
    return float(win.mean(axis=1).max()) >= cover


def _chain(p: _Pieces, width: float, prm: TraceParams,
           edges: tuple[float, float] | None = None,
           other: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """Best chain of pieces top to bottom: [(piece, wraps, segment)], see the module docstring.

    ``edges``: the track's borders in band columns; a piece that leaves at one
    border may be continued by one entering at the other even when their rows
    overlap a lot (a wrap drawn while the trace runs near-horizontally).
    ``other``: the other curve's ink in the band; a link across a horizontal
    gap that a near-horizontal stroke of this ink covers (a step hidden under
    the other curve's stroke) costs ``prm.hidden_link`` of its misfit, and may
    reach that much farther, when at least one of the two pieces lies mostly
    off the other curve's ink (specks of this class on the other curve are
    bits of that curve, not steps of this one).
    """
    n = p.top.size
    lo_e, hi_e = edges if edges is not None else (-math.inf, math.inf)
    near = prm.join_tol
    order = np.lexsort((p.bot, p.top))
    top, bot, nrows = p.top.tolist(), p.bot.tolist(), p.nrows.tolist()
    a_top, b_top, a_bot, b_bot = p.a_top.tolist(), p.b_top.tolist(), p.a_bot.tolist(), p.b_bot.tolist()
    s_bot = p.s_bot.tolist()
    score = [0.0] * n
    prev = [-1] * n
    wrap_step = [0] * n
    is_break = [True] * n
    active: list[int] = []
    closed: list[tuple[int, int]] = []       # heap of (bot, piece) of scored pieces
    best_closed, best_closed_i = -math.inf, -1
    shifts = (-width, 0.0, width)
    free = None
    if other is not None and prm.hidden_link < 1.0 and other.any():
        # pieces lying mostly off the other curve's ink (not bits of it in this class)
        from scipy import ndimage

        near_other = ndimage.binary_dilation(other, structure=np.ones((5, 5), bool))
        own = p.lab > 0
        idx = np.arange(1, n + 1)
        tot = ndimage.sum_labels(own, p.lab, idx)
        off = ndimage.sum_labels(own & ~near_other, p.lab, idx)
        free = (off >= 0.5 * np.maximum(tot, 1)).tolist()
    for j in order.tolist():
        tj = top[j]
        # a break may follow a piece that ends up to max_overlap rows below this one's top
        # (a trace whose near-horizontal stretch the labels lost overlaps its two halves)
        while closed and closed[0][0] < tj + prm.max_overlap:
            _, i = heapq.heappop(closed)
            if score[i] > best_closed:
                best_closed, best_closed_i = score[i], i
        horizon = tj - prm.max_gap - 1
        active = [i for i in active if bot[i] >= horizon]
        best, best_i, best_k, best_brk = float(nrows[j]), -1, 0, True
        for i in active:
            if bot[i] >= bot[j]:
                continue
            g = tj - bot[i] - 1
            if g < -prm.max_overlap:
                # only a wrap: leaving at one border, entering at the other
                wrap_out = (b_bot[i] >= hi_e - near and a_top[j] <= lo_e + near) or \
                    (a_bot[i] <= lo_e + near and b_top[j] >= hi_e - near)
                if not wrap_out or g < -6 * prm.max_overlap:
                    continue
            steps = max(g, 0) + 1
            drift = s_bot[i] * steps if g > 0 else 0.0
            ai, bi = a_bot[i], b_bot[i]
            # misfit: to where the last piece was heading, or to where it ended (short pieces
            # give poor slopes), allowing a wrap to the other edge
            dist, k = min((min(_interval_gap(ai + drift, bi + drift, a_top[j] + sh, b_top[j] + sh),
                               _interval_gap(ai, bi, a_top[j] + sh, b_top[j] + sh)), kk)
                          for kk, sh in zip((-1, 0, 1), shifts))
            if free is not None and k == 0 and dist > 3.0 and (free[i] or free[j]):
                gap = (bi, a_top[j]) if bi < a_top[j] else (b_top[j], ai)
                if _hidden_gap(other, min(bot[i], tj) - 2, max(bot[i], tj) + 2, gap[0] + 1, gap[1] - 1):
                    dist *= prm.hidden_link
            if dist > prm.join_tol + prm.max_slope * (steps - 1):
                continue
            gain = bot[j] - max(bot[i], tj - 1)
            cand = score[i] + gain - prm.gap_cost * max(g, 0) - prm.dist_cost * dist
            if cand > best:
                best, best_i, best_k, best_brk = cand, i, k, False
        if best_closed_i >= 0 and bot[best_closed_i] < bot[j]:
            cand = best_closed + nrows[j] - prm.break_cost
            if cand > best:
                i = best_closed_i
                ci = (a_bot[i] + b_bot[i]) / 2.0
                cj = (a_top[j] + b_top[j]) / 2.0
                k = min((-1, 0, 1), key=lambda kk: abs(cj + kk * width - ci))
                best, best_i, best_k, best_brk = cand, i, k, True
        score[j], prev[j], wrap_step[j], is_break[j] = best, best_i, best_k, best_brk
        active.append(j)
        heapq.heappush(closed, (bot[j], j))
    j = int(np.argmax(score))
    chain = []
    while j >= 0:
        chain.append(j)
        j = prev[j]
    chain.reverse()
    out, wraps, seg = [], 0, 0
    for idx, j in enumerate(chain):
        if idx:
            wraps += wrap_step[j]
            seg += int(is_break[j])
        out.append((j, wraps, seg))
    if prm.baseline_wrap and out:
        base = _most_rows_wrap([wr for _, wr, _ in out], [nrows[j] for j, _, _ in out])
        out = [(j, wr - base, sg) for j, wr, sg in out]
    return out


def _ink_distance(ink: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(first inked row, distance to paper of every pixel from there to the last inked row); None without ink."""
    from scipy import ndimage

    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    lo, hi = int(rows.min()), int(rows.max()) + 1
    return lo, ndimage.distance_transform_edt(np.pad(ink[lo:hi], 1))[1:-1, 1:-1]


def _stroke_half_width(ink: np.ndarray, lab: np.ndarray, ids: np.ndarray, solid: bool,
                       dist: tuple[int, np.ndarray] | None = None) -> float:
    """Half the pen width: the typical ridge height of the ink's distance transform, less 1/2 px.

    On the path of a stroke of half-width hw the nearest paper pixel is
    hw + 0..1 px away, whatever the stroke's direction. A continuous trace
    uses the lower quartile of the per-row ridge (zigzags that merge legs
    only raise it); a broken one the median of its pieces' ridges (the rows
    at a dash's or dot's ends are thinner). ``dist``: :func:`_ink_distance`
    of ``ink``, if already computed.
    """
    from scipy import ndimage

    dist = dist or _ink_distance(ink)
    if dist is None:
        return 0.5
    lo, dt = dist
    hi = lo + dt.shape[0]
    rows = np.flatnonzero(ink.any(axis=1))
    if solid:
        ridge = dt[rows - lo].max(axis=1)
        level = float(np.percentile(ridge, 25))
        # where the legs of a zigzag merge into a blob the ridge rises; the shortest runs
        # across the stroke (rows or columns) bound the width
        _, ha, hb = _row_runs(ink[lo:hi])
        _, va, vb = _row_runs(ink[lo:hi].T)
        if ha.size and va.size:
            across = min(float(np.percentile(hb - ha + 1, 10)), float(np.percentile(vb - va + 1, 10)))
            level = min(level, across / 2.0 + 0.5)
    else:
        ridge = np.asarray(ndimage.maximum(dt, lab[lo:hi], ids), np.float64)
        ridge = ridge[np.isfinite(ridge) & (ridge > 0)]
        level = float(np.percentile(ridge, 35)) if ridge.size else 1.0
    return max(0.5, level - 0.5)


def _local_half_width(ink: np.ndarray, hw: float, window: int | None = None,
                      dist: tuple[int, np.ndarray] | None = None) -> np.ndarray:
    """Half the pen width near each row: ``hw`` or more where the ink there is thicker.

    The ink of one curve is not equally thick all along a log: a model's
    mask swells where the scan is noisy or blurred. Per row the ridge of the
    ink's distance transform (its largest value) is the local half-width plus
    up to 1 px; its LOCAL_WIDTH_QUANTILE over ``window`` rows, less 1/2 px,
    is the local estimate (not the maximum, as a sweep or a merged zigzag
    widens the ridge of a few rows; a model's labels swell and thin along a
    stroke, and a pen as thick as most of its rows fits them best). Never
    below the whole trace's ``hw``.
    Rows without ink take their neighbours' value (``hw`` where none).
    ``dist``: :func:`_ink_distance` of ``ink``, if already computed.
    """
    import pandas as pd

    window = int(window or LOCAL_WIDTH_ROWS)
    out = np.full(ink.shape[0], float(hw))
    dist = dist or _ink_distance(ink)
    if dist is None:
        return out
    lo, dt = dist
    hi = lo + dt.shape[0]
    ridge = pd.Series(np.where(ink[lo:hi].any(axis=1), dt.max(axis=1), np.nan))
    level = ridge.rolling(window, center=True, min_periods=max(3, window // 6)).quantile(LOCAL_WIDTH_QUANTILE)
    level = level.interpolate(limit_direction="both").to_numpy(np.float64) - 0.5
    out[lo:hi] = np.maximum(float(hw), np.nan_to_num(level, nan=float(hw)))
    return out


def _disc(radius: float) -> np.ndarray:
    k = int(math.floor(radius))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    return dy * dy + dx * dx <= radius * radius + 1e-9


def _core(ink: np.ndarray, hw: float, lab: np.ndarray) -> np.ndarray:
    """The pen path of a thick stroke: the ink eroded to about half a pixel either side of it.

    Eroding by a disc a little smaller than the stroke's half-width leaves the
    pixels near the path: a thin line whose row runs behave like a 1 px pen
    (near-horizontal legs cover one row each, round caps and the fat ends of
    dots vanish). Pieces that vanish entirely keep their ink.
    """
    from scipy import ndimage

    rho = hw - 0.7
    if rho < 0.75:
        return ink
    core = ndimage.binary_erosion(ink, structure=_disc(rho))
    kept = np.unique(lab[core])
    all_ids = np.unique(lab[ink])
    lost = np.setdiff1d(all_ids, kept)
    if lost.size:
        core |= np.isin(lab, lost) & ink
    # rows of a piece where the erosion left nothing (a thinner stretch) keep their ink
    bare = ink.any(axis=1) & ~core.any(axis=1)
    if bare.any():
        core[bare] = ink[bare]
    return core


def _column_order_disagreement(tau: np.ndarray, ybar: np.ndarray, limit: int = 400) -> float:
    """How much the path order (``tau``) and the mean ink rows (``ybar``) of columns disagree.

    Over all pairs of columns: the share of pairs in the wrong order less the
    share in the right order (ink rows closer than a pixel count as neither),
    or 0 when the right order prevails. 1: every pair reversed.
    """
    if tau.size < 2:
        return 0.0
    if tau.size > limit:
        pick = np.linspace(0, tau.size - 1, limit).round().astype(np.int64)
        tau, ybar = tau[pick], ybar[pick]
    dt = tau[:, None] - tau[None, :]
    dy = ybar[:, None] - ybar[None, :]
    pairs = int((dt != 0).sum())
    if not pairs:
        return 0.0
    sure = np.abs(dy) >= 1.0
    wrong = int(((dt * dy < 0) & sure).sum())
    right = int(((dt * dy > 0) & sure).sum())
    return max(0.0, (wrong - right) / pairs)


def _sweep_cost(inked: np.ndarray, closed: np.ndarray, ybar: np.ndarray, lo: float, width: float,
                u_b: float, u_a: float, empty_weight: float, spike: np.ndarray | None = None) -> float:
    """How badly a pen sweep from band x ``u_b`` to ``u_a`` (unwrapped) explains the ink.

    ``inked`` / ``ybar``: which columns of the track (from ``lo``) hold ink in
    the sweep's rows and their mean ink row there; ``closed``: ``inked`` with
    the gaps of a broken trace closed. Cost: inked columns the sweep never
    crosses, plus (weighted) columns it crosses without ink, plus the columns
    crossed once whose ink lies in the wrong order (the pen moves down the
    scan as it sweeps, so ink met later along the sweep lies lower), plus a
    little for the length of the sweep. ``spike``: extra columns an
    out-and-back excursion covers (no order is asked of those).
    """
    cols = lo + np.arange(inked.size, dtype=np.float64)
    a, b = min(u_b, u_a), max(u_b, u_a)
    # passes of the sweep over each column: unwrapped positions col + j * width inside [a, b]
    j_lo = np.ceil((a - cols) / width)
    j_hi = np.floor((b - cols) / width)
    passes = np.maximum(j_hi - j_lo + 1, 0)
    cover = passes > 0
    length = b - a
    if spike is not None:
        cover = cover | spike
        length += 2.0 * float(spike.sum())
    cost = float((inked & ~cover).sum()) + empty_weight * float((cover & ~closed).sum()) + 0.02 * length
    once = (passes == 1) & inked & np.isfinite(ybar)
    if spike is not None:
        once &= ~spike
    if once.any() and b > a:
        tau = (cols[once] + j_lo[once] * width - u_b) / (u_a - u_b)
        cost += float(once.sum()) * _column_order_disagreement(tau, ybar[once])
    return cost


def _edge_run(closed: np.ndarray, from_right: bool) -> np.ndarray:
    """The run of inked columns attached to one end of the track (empty if that end has no ink)."""
    out = np.zeros_like(closed)
    seq = closed[::-1] if from_right else closed
    n = int(np.argmin(seq)) if not seq.all() else seq.size
    if from_right:
        out[out.size - n:] = True
    else:
        out[:n] = True
    return out


def _side_evidence(row_ink: np.ndarray, x: float) -> float:
    """Which way from column ``x`` a row's ink reaches: +1 all to the right, -1 all to the left.

    The shares of the columns on either side that are inked are compared, so
    a full row (the whole sweep inside one row) says nothing.
    """
    n = row_ink.size
    i = int(round(x))
    left = row_ink[:max(0, min(n, i - 3))]
    right = row_ink[max(0, min(n, i + 4)):]
    fl = float(left.mean()) if left.size else 0.0
    fr = float(right.mean()) if right.size else 0.0
    return fr - fl


def _resolve_sweeps(m: np.ndarray, rows: np.ndarray, c: np.ndarray, wr: np.ndarray, track: Track,
                    col0: int, hw: float, solid: bool, prm: TraceParams,
                    piece: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-decide the wrap count across near-horizontal sweeps that reach a track border.

    Where the trace sweeps across the track in a few rows (a bed boundary
    whose reading runs off scale), the stroke leaving one border and the one
    re-entering at the other touch and form one piece, so the chain cannot
    see the wrap. For every run of wide ink rows that touches a border, the
    wrap change across it is chosen among: a straight sweep through a border
    (-1 or +1), a straight sweep inside the track (0), or an excursion out
    through a border and back (0). The choice is the one that best explains
    which columns hold ink, in which order (see :func:`_sweep_cost`), and
    which way the ink leaves the last narrow row above and reaches the first
    one below. The rows below move with it; rows inside the sweep take the
    wrap that puts them on it. ``c``: unwrapped image x per traced row;
    ``wr``: wrap counts; ``piece``: the piece of ink each traced row comes
    from. The chain's wrap across a sweep is kept unless the ink clearly says
    otherwise, but where the rows above and below the sweep are one piece
    (the sweep joined them) the chain never chose, and the ink decides alone.
    """
    from scipy import ndimage

    if rows.size < 3:
        return c, wr
    width = float(track.width)
    bw = m.shape[1]
    any_ink = m.any(axis=1)
    first = np.where(any_ink, np.argmax(m, axis=1), 0)
    last = np.where(any_ink, bw - 1 - np.argmax(m[:, ::-1], axis=1), -1)
    extent = last - first + 1
    # a sweep through a border inks a row from near one border to near the other; a quarter of
    # the track is far wider than any plain stroke, and a wiggle of the trace just after a sweep
    # (a thin bed) stays narrow, so it does not merge into the sweep and blur its ink
    wide = any_ink & (extent > max(4.0 * hw + 8.0, SWEEP_WIDTH * width))
    if not wide.any():
        return c, wr
    near = prm.join_tol + hw
    wide_rows = np.flatnonzero(wide)
    breaks = np.flatnonzero(np.diff(wide_rows) > 4)
    starts = np.r_[wide_rows[0], wide_rows[breaks + 1]]
    ends = np.r_[wide_rows[breaks], wide_rows[-1]]
    narrow = ~wide[rows]
    # each sweep between the narrow traced rows around it; sweeps with no narrow traced row
    # between them are one event
    events: list[list[int]] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        lo_e = float(track.left(s)) - col0
        hi_e = float(track.right(s)) - col0
        inked_rows = any_ink[s:e + 1]
        touches = first[s:e + 1][inked_rows].min() <= lo_e + near or \
            last[s:e + 1][inked_rows].max() >= hi_e - near
        before = np.flatnonzero(narrow & (rows < s))
        after = np.flatnonzero(narrow & (rows > e))
        if before.size == 0 or after.size == 0:
            continue
        ib, ia = int(before[-1]), int(after[0])
        if events and events[-1][2] == ib:
            events[-1][1], events[-1][3] = e, ia
            events[-1][4] |= touches
            events[-1][5] += 1
        else:
            events.append([s, e, ib, ia, touches, 1, lo_e, hi_e])
    c = c.astype(np.float64).copy()
    wr = wr.astype(np.int64).copy()
    empty_weight = 1.0 if solid else 0.5
    changed = False
    for s, e, ib, ia, touches, n_sweeps, lo_e, hi_e in events:
        rb, ra = int(rows[ib]), int(rows[ia])
        if not touches or n_sweeps > 1 or ra - rb > (e - s + 1) + 2 * prm.max_gap:
            # inside the track (no wrap to decide); sweeps out and back with no trace traced
            # between them (a straight sweep cannot explain them: the chain's choice stands);
            # or too long a gap
            continue
        x_b = c[ib] - wr[ib] * width - col0
        x_a = c[ia] - wr[ia] * width - col0
        cur = int(wr[ia] - wr[ib])
        c_lo, c_hi = int(math.ceil(lo_e)), int(math.floor(hi_e))
        if c_hi <= c_lo:
            continue
        span = slice(max(0, c_lo), min(bw, c_hi + 1))
        pad_l = max(0, c_lo) - c_lo
        n_cols = c_hi - c_lo + 1
        inked = np.zeros(n_cols, bool)
        inked[pad_l:pad_l + span.stop - span.start] = m[rb:ra + 1, span].any(axis=0)
        # the order of the ink along the sweep, from the sweep's own rows
        sw = np.zeros((e - s + 1, n_cols), bool)
        sw[:, pad_l:pad_l + span.stop - span.start] = m[s:e + 1, span]
        cnt = sw.sum(axis=0)
        ybar = np.where(cnt > 0, (sw * np.arange(sw.shape[0])[:, None]).sum(axis=0) / np.maximum(cnt, 1),
                        np.nan)
        gap = 3 if solid else int(2 * prm.merge_gap) + 1
        closed = ndimage.binary_closing(np.pad(inked, gap), structure=np.ones(gap, bool))[gap:-gap] | inked
        # which way the ink leaves x_b in the sweep's first row and reaches x_a in its last
        go = _side_evidence(sw[0], x_b - c_lo)
        come = -_side_evidence(sw[-1], x_a - c_lo)
        direction = 0.25 * width

        def turn_cost(d0: float, d1: float) -> float:
            return direction * (max(0.0, -d0 * go) + max(0.0, -d1 * come))

        args = (inked, closed, ybar, float(c_lo), width)
        costs = {}
        for d in {-1, 0, 1, cur}:
            sgn = float(np.sign(x_a + d * width - x_b)) or 1.0
            costs[d] = _sweep_cost(*args, x_b, x_a + d * width, empty_weight) + turn_cost(sgn, sgn)
        # out through a border and back (the reading runs off scale for a few rows only)
        lo_i, hi_i = int(round(min(x_b, x_a) - c_lo)), int(round(max(x_b, x_a) - c_lo))
        excursion, exc_back = 0, None          # the side of the excursion, if that explains it best
        for via_left in (True, False):
            back = _edge_run(closed, from_right=via_left)   # the ink the pen returns along
            if not back.any():
                continue
            spike = np.zeros_like(closed)
            if via_left:
                spike[:max(lo_i, 0)] = True
            else:
                spike[min(hi_i + 1, spike.size):] = True
            d0 = -1.0 if via_left else 1.0
            cost = _sweep_cost(*args, x_b, x_a, empty_weight, spike=spike | back) + 0.05 * width \
                + turn_cost(d0, -d0)
            if cost < costs[0]:
                costs[0] = cost
                excursion, exc_back = (-1 if via_left else 1), back
        best = min(costs, key=lambda d: (costs[d], abs(d)))
        chose = piece is None or piece[ib] != piece[ia]
        if chose and costs[best] > costs[cur] - max(10.0, 0.03 * width):
            best = cur                     # keep the chain's choice unless the ink clearly says otherwise
        if best != cur:
            wr[ia:] += best - cur
            c[ia:] += (best - cur) * width
            changed = True
        # rows inside the sweep: the wrap that puts them on it
        if best == 0 and excursion:
            # out through a border and back: the rows between the pen's arrival at the other
            # border and its return there, whose trace lies on the ink it returns along, are
            # one wrap out
            far = (hi_e - near) if excursion < 0 else (lo_e + near)
            seg_rows = np.arange(rb, ra + 1)
            at_far = (last[rb:ra + 1] >= far) if excursion < 0 else \
                (any_ink[rb:ra + 1] & (first[rb:ra + 1] <= far))
            if at_far.sum() >= 2:
                t0, t1 = seg_rows[at_far][0], seg_rows[at_far][-1]
                for k in range(ib + 1, ia):
                    if not t0 < rows[k] < t1:
                        continue
                    drawn = c[k] - wr[k] * width - col0
                    if (drawn <= lo_e + near) if excursion < 0 else (drawn >= hi_e - near):
                        continue                   # at the border it leaves through: not out yet
                    col = min(max(int(round(drawn - c_lo)), 0), exc_back.size - 1)
                    if exc_back[col]:
                        w_ = int(wr[ib]) + excursion
                        c[k] += (w_ - wr[k]) * width
                        wr[k] = w_
            continue
        a_u, b_u = sorted((x_b, x_a + best * width))
        for k in range(ib + 1, ia):
            drawn = c[k] - wr[k] * width - col0
            opts = [(w_, drawn + (w_ - wr[ib]) * width) for w_ in {int(wr[ib]), int(wr[ib]) + best}]
            w_, _ = min(opts, key=lambda o: max(a_u - o[1], o[1] - b_u, 0.0))
            c[k] += (w_ - wr[k]) * width
            wr[k] = w_
    if changed and prm.baseline_wrap:
        base = _most_rows_wrap(wr, np.ones(wr.size, np.int64))
        wr -= base
        c -= base * width
    return c, wr


def _trace_band(m: np.ndarray, col0: int, track: Track, prm: TraceParams,
                other: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trace one curve in one track band (rows x band columns) -> (x, xu, inked) per row.

    x, xu: NaN where there is no curve; inked: the row's position comes from
    the curve's own ink (False on rows bridged by interpolation). ``other``:
    the other curve's ink in the band (see :func:`_chain`).
    """
    from scipy import ndimage

    h = m.shape[0]
    x = np.full(h, np.nan)
    xu = np.full(h, np.nan)
    inked = np.zeros(h, bool)
    ink_rows = np.flatnonzero(m.any(axis=1))
    if ink_rows.size == 0:
        return x, xu, inked
    # pieces: connected ink, with dashes that lie side by side in a near-horizontal stretch
    # joined (a dense dotted trace counts as continuous, yet sweeps across the track in rows
    # of separate dots)
    solid = ink_rows.size >= SOLID_SHARE * (ink_rows[-1] - ink_rows[0] + 1)
    p = _pieces(m, int(prm.merge_gap // 2))
    if p is None:
        return x, xu, inked
    width = track.width
    mid = (h - 1) / 2.0
    chain = _chain(p, width, prm, (float(track.left(mid)) - col0, float(track.right(mid)) - col0), other)
    n = p.top.size
    chosen = np.zeros(n + 1, bool)
    wrap_lut = np.zeros(n + 1, np.int64)
    seg_lut = np.full(n + 1, -1, np.int64)
    ids = np.array([c[0] for c in chain]) + 1
    chosen[ids] = True
    wrap_lut[ids] = [c[1] for c in chain]
    seg_lut[ids] = [c[2] for c in chain]

    ink = chosen[p.lab]
    sel = chosen[p.run_piece + 1]
    fr, fa, fb, fp = p.run_row[sel], p.run_a[sel], p.run_b[sel], p.run_piece[sel] + 1
    dist = _ink_distance(ink)
    hw = _stroke_half_width(ink, p.lab, ids, solid, dist)
    core = _core(ink, hw, p.lab)
    r, ca, cb = _row_runs(core)
    cp = p.lab[r, ca]
    shift = wrap_lut[cp] * width + col0
    ua = ca + shift
    ub = cb + shift
    run_wr = wrap_lut[cp]
    run_seg = seg_lut[cp]
    order = np.lexsort((ua, r))
    r, ua, ub, run_wr, run_seg = r[order], ua[order], ub[order], run_wr[order], run_seg[order]
    # stretches: runs of a row closer than merge_gap
    big = float(width) * 8 + 1e6
    cummax_b = np.maximum.accumulate(ub + r * big) - r * big
    new = np.r_[True, (r[1:] != r[:-1]) | (ua[1:] > cummax_b[:-1] + prm.merge_gap)]
    sid = np.cumsum(new) - 1
    n_s = int(sid[-1]) + 1
    s_row = r[new]
    s_a = np.minimum.reduceat(ua, np.flatnonzero(new)).astype(np.float64)
    s_b = np.maximum.reduceat(ub, np.flatnonzero(new)).astype(np.float64)
    # the wrap and segment of the longest run of each stretch
    by_len = np.lexsort((ub - ua, sid))
    best_run = by_len[np.r_[np.flatnonzero(np.diff(sid[by_len])), by_len.size - 1]]
    s_wr = run_wr[best_run]
    s_seg = run_seg[best_run]
    s_piece = cp[order][best_run]

    # one stretch per row: where several remain, continue the rows above
    row_first = np.flatnonzero(np.r_[True, s_row[1:] != s_row[:-1]])
    row_count = np.diff(np.r_[row_first, n_s])
    rows = s_row[row_first]
    pick = row_first.copy()
    multi = np.flatnonzero(row_count > 1)
    if multi.size:
        centre = (s_a + s_b) / 2.0
        single_c = np.where(row_count == 1, centre[row_first], np.nan)
        for mi in multi.tolist():
            first = int(row_first[mi])
            cands = np.arange(first, first + int(row_count[mi]))
            if mi > 0 and rows[mi] - rows[mi - 1] <= 5:          # the stretch chosen just above
                ref = (s_a[pick[mi - 1]] + s_b[pick[mi - 1]]) / 2.0
            else:                                                # else the next unambiguous row
                nxt = single_c[mi + 1:mi + 6]
                ok = np.flatnonzero(~np.isnan(nxt))
                ref = nxt[ok[0]] if ok.size else centre[first]
            pick[mi] = cands[np.argmin(np.abs(centre[cands] - ref))]
    a, b = s_a[pick], s_b[pick]
    wr, seg, row_piece = s_wr[pick], s_seg[pick], s_piece[pick]
    # the full ink of the chosen stretch in each row (sub-pixel centre where the trace is steep)
    fu_a = fa + wrap_lut[fp] * width + col0
    fu_b = fb + wrap_lut[fp] * width + col0
    idx = np.clip(np.searchsorted(rows, fr), 0, rows.size - 1)
    hit = (rows[idx] == fr) & (fu_a <= b[idx] + 1 + hw) & (fu_b >= a[idx] - 1 - hw)
    A = a - hw
    B = b + hw
    if hit.any():
        A = np.full(rows.size, np.inf)
        B = np.full(rows.size, -np.inf)
        np.minimum.at(A, idx[hit], fu_a[hit].astype(np.float64))
        np.maximum.at(B, idx[hit], fu_b[hit].astype(np.float64))
        miss = ~np.isfinite(A)
        A[miss], B[miss] = a[miss] - hw, b[miss] + hw
    c = _row_centres(a, b, A, B, hw)
    if prm.fit_iters > 0:
        # near-horizontal rows: fit the pen path to the ink (see _fit_path)
        shift_r = wr * width + col0
        opt = np.zeros(h, bool)
        hw_loc = _local_half_width(ink, hw, dist=dist)
        opt[rows[(B - A + 1.0) > 2.0 * hw_loc[rows] + 3.0]] = True
        if opt.any():
            vb = np.full(h, np.nan)
            vb[rows] = c - shift_r
            lr = np.full(h, 0.5)
            lr[rows] = 0.5 * np.maximum(1.0, (B - A + 1.0) / 10.0)
            lr = ndimage.maximum_filter1d(lr, 3)
            lo = np.full(h, -np.inf)
            hi = np.full(h, np.inf)
            inset = max(0.0, hw - 1.0)
            lo[rows] = A + inset - shift_r
            hi[rows] = np.maximum(B - inset, A + inset) - shift_r
            vb = _fit_path(ink, vb, hw_loc, opt, iters=prm.fit_iters, lr=lr, solid=solid, bounds=(lo, hi))
            c = vb[rows] + shift_r
    if prm.sweeps:
        c, wr = _resolve_sweeps(m, rows, c, wr, track, col0, hw, solid, prm, row_piece)
    # ink rows
    xu[rows] = c
    x[rows] = c - wr * width
    inked[rows] = True
    # bridge short gaps within a segment by linear interpolation of xu
    if rows.size > 1:
        d = np.diff(rows)
        gaps = np.flatnonzero((d > 1) & (d <= prm.max_gap + 1) & (seg[1:] == seg[:-1]))
        if gaps.size:
            for gi in gaps.tolist():
                r0, r1 = rows[gi], rows[gi + 1]
                t = (np.arange(r0 + 1, r1) - r0) / (r1 - r0)
                xu[r0 + 1:r1] = c[gi] + t * (c[gi + 1] - c[gi])
            fill = np.isnan(x) & ~np.isnan(xu)
            fr_ = np.flatnonzero(fill)
            left = track.left(fr_)
            k = np.floor((xu[fr_] - left) / width)
            x[fr_] = xu[fr_] - k * width
    return x, xu, inked


def _drop_shadow(traced: tuple[np.ndarray, np.ndarray, np.ndarray], own: np.ndarray,
                 share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """No trace where a curve is only a shadow of the other one.

    The pixels a segmenter is unsure of (``shared``) and the overlap of a
    truth mask count as ink of both curves, so a track with none of this
    curve still gives it ink along the other curve, and a few stray pixels
    of its class then chain that ink into a long trace, which the stretches
    hidden under the other curve (:func:`_bridge_hidden`) lengthen further.
    A real curve shows its own class on a fair share of the rows it is
    finally traced on; when fewer than ``share`` of them have any (``own``:
    the band's pixels of this class only), the band has no such curve.
    """
    x, xu, inked = traced
    rows = np.isfinite(x)
    n = int(rows.sum())
    if n == 0:
        return traced
    seen = own.any(axis=1) & rows
    if seen.sum() >= share * n:
        return traced
    return np.full_like(x, np.nan), np.full_like(xu, np.nan), np.zeros_like(inked)


def _wraps(x, xu, width: float):
    """The wrap count of positions: (xu - x) is a whole number of track widths."""
    return np.round((np.asarray(xu) - np.asarray(x)) / width).astype(np.int64)


def _settle_wraps(x: np.ndarray, xu: np.ndarray, width: float, prm: TraceParams) -> np.ndarray:
    """Re-decide doubtful wrap steps so the curve is off scale only briefly: a new xu.

    Each wrap step the tracer took (and each jump over a long gap) is a
    decision that might be wrong; one missed step shifts every later value
    by a whole track width. The trace is cut at those points into blocks of
    one wrap count, and a dynamic programme adds an integer correction to
    each block: changing the correction at a step costs ``prm.wrap_doubt``,
    and every row left off scale (wrap count not zero) costs
    ``1 / prm.offscale_rows``. A step may grow by at most one (a wrap is a
    single crossing of the border); over a long gap anything goes. So short
    excursions off scale, the usual kind, are kept as traced, and a wrap
    count that stays off scale for much longer than ``prm.offscale_rows``
    rows is taken as a missed step and put back.
    """
    rows = np.flatnonzero(np.isfinite(xu) & np.isfinite(x))
    if rows.size < 2 or prm.offscale_rows <= 0:
        return xu
    wr = _wraps(x[rows], xu[rows], width)
    long_gap = np.diff(rows) > prm.max_gap + 1
    cut = np.flatnonzero((wr[1:] != wr[:-1]) | long_gap) + 1
    if cut.size == 0 and wr[0] == 0:
        return xu
    starts = np.r_[0, cut]
    ends = np.r_[cut, rows.size]
    bw = wr[starts]
    n = (ends - starts).astype(np.float64)
    free = np.r_[False, long_gap[cut - 1]]              # a block that starts after a long gap
    K = 3
    cs = np.arange(-K, K + 1)
    shift = cs[None, :] - cs[:, None]                   # [i, j]: from correction cs[i] to cs[j]
    change_cost = prm.wrap_doubt * np.abs(shift).astype(np.float64)
    lam = 1.0 / prm.offscale_rows
    nb = bw.size
    cost = lam * n[0] * ((bw[0] + cs) != 0)
    back = np.zeros((nb, cs.size), np.int64)
    for b in range(1, nb):
        trans = change_cost
        if not free[b]:
            trans = np.where(np.abs(bw[b] - bw[b - 1] + shift) > 1, np.inf, change_cost)
        tot = cost[:, None] + trans
        back[b] = np.argmin(tot, axis=0)
        cost = tot[back[b], np.arange(cs.size)] + lam * n[b] * ((bw[b] + cs) != 0)
    corr = np.zeros(nb, np.int64)
    j = int(np.argmin(cost))
    for b in range(nb - 1, -1, -1):
        corr[b] = cs[j]
        j = back[b, j]
    if not corr.any():
        return xu
    out = xu.copy()           # every row with a position, interpolated ones included, is in ``rows``
    out[rows] = xu[rows] + np.repeat(corr, ends - starts) * width
    return out


def _bridge_hidden(own: tuple[np.ndarray, np.ndarray, np.ndarray],
                   other: tuple[np.ndarray, np.ndarray, np.ndarray], track: Track,
                   prm: TraceParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Follow the other curve across a stretch where this one is hidden under it.

    Where two curves coincide, the pixels are the other curve's (a model
    labels a dash drawn over a solid line as the solid line), so this
    curve's ink stops. A gap of this curve's ink (of any length up to
    ``prm.hidden_max``) whose two ends lie within ``prm.hidden_tol`` px of
    the other curve, which is inked over most of the gap, is filled with the
    other curve's position plus the offset at the ends (interpolated), and
    the other curve's wrap-arounds in between. Returns new (x, xu, inked).
    """
    x, xu, inked = (a.copy() for a in own)
    ox, oxu, oinked = other
    rows = np.flatnonzero(inked)
    if rows.size < 2 or not oinked.any():
        return x, xu, inked
    width = track.width
    d = np.diff(rows)
    for gi in np.flatnonzero(d > 1).tolist():
        r0, r1 = int(rows[gi]), int(rows[gi + 1])
        if r1 - r0 - 1 > prm.hidden_max:
            continue
        if not (oinked[r0] and oinked[r1]):
            continue
        off0, off1 = x[r0] - ox[r0], x[r1] - ox[r1]
        if not (abs(off0) <= prm.hidden_tol and abs(off1) <= prm.hidden_tol):
            continue
        mid = np.arange(r0 + 1, r1)
        if oinked[mid].mean() < prm.hidden_cover:
            continue
        ok = np.isfinite(ox[mid]) & np.isfinite(oxu[mid])
        if not ok.all():
            continue
        t = (mid - r0) / (r1 - r0)
        _ride_other(x, xu, ox, oxu, r0, mid, width, off0 + t * (off1 - off0))
    return x, xu, inked


def _ride_other(x: np.ndarray, xu: np.ndarray, ox: np.ndarray, oxu: np.ndarray, r0: int,
                mid: np.ndarray, width: float, offset: float | np.ndarray = 0.0) -> None:
    """Fill rows ``mid`` (in place) along the other curve, ``offset`` px from it; this
    curve's wrap count changes as the other's does from row ``r0`` on."""
    x[mid] = ox[mid] + offset
    xu[mid] = x[mid] + (_wraps(x[r0], xu[r0], width) + _wraps(ox[mid], oxu[mid], width)
                        - _wraps(ox[r0], oxu[r0], width)) * width


def _follow_hidden_sweep(own: tuple[np.ndarray, np.ndarray, np.ndarray],
                         other: tuple[np.ndarray, np.ndarray, np.ndarray], other_ink: np.ndarray,
                         col0: int, track: Track, prm: TraceParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Take the other curve's wrap where this curve's sweep ran hidden under the other's.

    At a bed boundary both curves may run off scale at the same rows, each
    sweeping across the whole track; where the two sweeps coincide, a model
    labels them as the other curve, so this curve's ink has a short gap there
    and its chain links the two ends directly, without the wrap. Such a gap
    (at most ``prm.hidden_sweep`` rows) is given the other curve's wrap step
    when the other curve's wrap count changes by one inside it, this curve's
    does not, both of its ends lie on the other curve's ink (``other_ink``,
    band columns from ``col0``) and it leaves the gap or enters it moving
    toward that wrap at ``prm.sweep_slope`` px per row or faster. The gap is
    filled with the other curve's positions; later rows shift by the step.
    """
    x, xu, inked = (a.copy() for a in own)
    ox, oxu, oinked = other
    rows = np.flatnonzero(inked & np.isfinite(xu))
    if prm.hidden_sweep <= 0 or rows.size < 4 or not oinked.any():
        return x, xu, inked
    width = track.width
    bw = other_ink.shape[1]

    def touches(r: int) -> bool:
        c = int(round(x[r])) - col0
        return 0 <= c < bw and bool(other_ink[max(r - 1, 0):r + 2, max(c - 3, 0):c + 4].any())

    d = np.diff(rows)
    for gi in np.flatnonzero((d > 1) & (d <= prm.hidden_sweep + 1)).tolist():
        r0, r1 = int(rows[gi]), int(rows[gi + 1])
        # the other curve's wrap count just before and just after (a sweep's rows may flicker)
        pre = np.arange(max(r0 - 5, 0), r0 + 1)
        post = np.arange(r1, min(r1 + 6, xu.size))
        pre = pre[np.isfinite(ox[pre]) & np.isfinite(oxu[pre])]
        post = post[np.isfinite(ox[post]) & np.isfinite(oxu[post])]
        if pre.size < 2 or post.size < 2:
            continue
        step = int(np.round(np.median(_wraps(ox[post], oxu[post], width)))
                   - np.round(np.median(_wraps(ox[pre], oxu[pre], width))))
        if abs(step) != 1:
            continue
        if _wraps(x[r1], xu[r1], width) != _wraps(x[r0], xu[r0], width):
            continue
        if not (touches(r0) and touches(r1)):
            continue
        before = rows[max(gi - 3, 0):gi + 1]
        after = rows[gi + 1:gi + 5]
        s_out = (x[before[-1]] - x[before[0]]) / max(before[-1] - before[0], 1) if before.size > 1 else 0.0
        s_in = (x[after[-1]] - x[after[0]]) / max(after[-1] - after[0], 1) if after.size > 1 else 0.0
        if max(step * s_out, step * s_in) < prm.sweep_slope:
            continue
        xu[r1:] += step * width
        mid = np.arange(r0 + 1, r1)
        _ride_other(x, xu, ox, oxu, r0, mid[np.isfinite(ox[mid]) & np.isfinite(oxu[mid])], width)
    return x, xu, inked


def _follow_other_wrap(own: tuple[np.ndarray, np.ndarray, np.ndarray],
                       other: tuple[np.ndarray, np.ndarray, np.ndarray], own_ink: np.ndarray,
                       col0: int, track: Track, prm: TraceParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give the dashed curve the solid one's wrap step where it jumps across it unseen.

    At a bed boundary the two curves of a track change together: where the
    solid curve runs off scale, the dashed one almost always does too, in
    the same direction (on the 42 generated logs of the README's two
    evaluation sets, 150 of the 163 times the dashed curve jumped within 10
    rows of a wrap-around of the solid one). Its
    sweep then lies under the solid curve's sweep, which a model labels as
    the solid curve, so its own ink shows only where it leaves and where it
    lands, and the chain links those directly, without the wrap.

    For each wrap step of the other curve (its wrap count changing by one
    over changes at most ``prm.wrap_follow_group`` rows apart and
    ``prm.wrap_follow`` rows in all), this curve's last inked row more than
    ``prm.wrap_follow_margin`` rows before it and its first one as far after
    are compared: where this curve's wrap count did not change between
    them, its position moved by at least ``prm.wrap_follow_jump`` of the
    track width, and its own ink (``own_ink``, band columns from ``col0``)
    does not show a direct path between the two (fewer than
    ``prm.wrap_follow_cover`` of the columns between them inked in those
    rows), it takes the other curve's step: every later row shifts by one
    track width, and the rows between keep their positions and take the
    wrap count nearest a straight sweep from one end to the other. No
    position changes, only wrap counts (so ``xu``).

    Where the other curve goes out and back (two steps of opposite sign, one
    after the other) and this curve takes one of them, it takes the other too
    if that one is only in doubt: it stayed where it was (its reading a whole
    width higher or lower looks the same) or its own ink could be a direct
    path. Taking one alone would leave it a whole width off for the rest of
    the log (``prm.wrap_follow_pairs``).
    """
    x, xu, inked = (a.copy() for a in own)
    ox, oxu, _ = other
    width = track.width
    orow = np.flatnonzero(np.isfinite(ox) & np.isfinite(oxu))
    irow = np.flatnonzero(inked & np.isfinite(xu))
    if prm.wrap_follow <= 0 or orow.size < 2 or irow.size < 2:
        return x, xu, inked
    ow = _wraps(ox[orow], oxu[orow], width)
    ch = np.flatnonzero(ow[1:] != ow[:-1])
    if ch.size == 0:
        return x, xu, inked
    # the other curve's wrap changes, grouped where one follows another within a few rows
    # (a sweep's rows may flicker between two wrap counts)
    brk = np.flatnonzero(orow[ch[1:]] - orow[ch[:-1] + 1] > prm.wrap_follow_group)
    firsts = np.r_[ch[0], ch[brk + 1]]
    lasts = np.r_[ch[brk], ch[-1]]
    bw = own_ink.shape[1]
    margin = prm.wrap_follow_margin
    def verdict(r0: int, r1: int) -> str | None:
        """Whether this curve, last and next inked at rows r0 and r1, takes the other's step there:
        "follow", "doubt" (it stays put, or its own ink could be a direct path) or None (it has a
        reason of its own not to)."""
        if r1 - r0 > prm.wrap_follow + 2 * margin:
            return None                               # this curve is missing for too long there
        if _wraps(x[r1], xu[r1], width) != _wraps(x[r0], xu[r0], width):
            return None                               # it took a wrap step of its own
        if abs(x[r1] - x[r0]) < prm.wrap_follow_jump * width:
            return "doubt"                            # it carried on where it was, or wrapped a whole width
        lo, hi = sorted((int(round(x[r0])) - col0, int(round(x[r1])) - col0))
        lo, hi = max(lo, 0), min(hi, bw - 1)
        direct = hi - lo >= 3 and \
            own_ink[max(r0 - 2, 0):r1 + 3, lo:hi + 1].any(axis=0).mean() >= prm.wrap_follow_cover
        return "doubt" if direct else "follow"        # its own ink may show the direct sweep

    # each step of the other curve: (its sign, this curve's rows around it, the verdict); a step
    # too long, or without this curve's ink on both sides, gets none
    steps: list[tuple[int, int, int, str | None]] = []
    for k0, k1 in zip(firsts.tolist(), lasts.tolist()):
        p, q = int(orow[k0]), int(orow[k1 + 1])
        step = int(ow[k1 + 1] - ow[k0])
        i0 = int(np.searchsorted(irow, p - margin, side="left")) - 1
        i1 = int(np.searchsorted(irow, q + margin, side="right"))
        if abs(step) == 1 and q - p <= prm.wrap_follow and i0 >= 0 and i1 < irow.size:
            r0, r1 = int(irow[i0]), int(irow[i1])
            steps.append((step, r0, r1, verdict(r0, r1)))
        else:
            steps.append((step, -1, -1, None))
    # the other curve out and back (two steps of opposite sign, one after the other): taking
    # one of them alone would leave this curve a whole width off for the rest of the log, so
    # where one is taken, a doubtful other is taken too
    follow = [v == "follow" for *_, v in steps]
    if prm.wrap_follow_pairs:
        for i in range(len(steps) - 1):
            (sa, *_, va), (sb, *_, vb) = steps[i], steps[i + 1]
            if sa == -sb and {va, vb} == {"follow", "doubt"}:
                follow[i] = follow[i + 1] = True
    for (step, r0, r1, _), take in zip(steps, follow):
        if not take:
            continue
        xu[r1:] += step * width
        mid = np.arange(r0 + 1, r1)
        line = xu[r0] + (mid - r0) / (r1 - r0) * (xu[r1] - xu[r0])
        xu[mid] = x[mid] + np.round((line - x[mid]) / width) * width     # NaN rows stay NaN
    return x, xu, inked


def _row_centres(a: np.ndarray, b: np.ndarray, A: np.ndarray, B: np.ndarray, hw: float) -> np.ndarray:
    """First estimate of where the pen path crosses each row (unwrapped x).

    ``a``, ``b``: the row's core (the ink eroded to the path, see
    :func:`_core`); ``A``, ``B``: its full ink. Where the trace is steep the
    middle of the full ink is exact to a fraction of a pixel; elsewhere the
    middle of the core, which a near-horizontal leg spreads over fewer
    columns than the full ink. Near-horizontal rows are then refined by
    :func:`_fit_path`.
    """
    core_c = (a + b) / 2.0
    full_c = (A + B) / 2.0
    steep = ((B - A + 1.0) <= 2.0 * hw + 2.5) & (np.abs(full_c - core_c) <= 1.0)
    return np.where(steep, full_c, core_c)


def _fit_path(ink: np.ndarray, v0: np.ndarray, hw: float | np.ndarray, opt_mask: np.ndarray, iters: int = 80,
              lr: float | np.ndarray = 0.5, solid: bool = True,
              bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Move the path's x on the rows in ``opt_mask`` so the drawn stroke matches the ink.

    The trace is modelled as a pen of half-width ``hw`` drawn along the
    polyline through ``(v[r], r)``: a pixel is inked exactly when its centre
    lies within ``hw`` of the polyline. Along the boundary of the ink, every
    inked pixel should be within ``hw`` and every paper pixel beyond it; the
    squared violations are minimised by Adam on the chosen rows (analytic
    gradients through the nearest leg of each pixel). This recovers the
    turning points and steps of near-horizontal excursions, where the ink of
    one row mixes several legs of the path. ``hw``: one half-width, or one per
    row (:func:`_local_half_width`; each boundary pixel uses its own row's);
    ``v0``: band x per row (NaN: none);
    ``lr``: step size in px (per row, so rows of wide ink can travel far);
    ``bounds``: (lo, hi) per row that the path point cannot leave (its row's ink).
    """
    from scipy import ndimage

    H, w = ink.shape
    fin = np.isfinite(v0)
    opt_rows = np.flatnonzero(opt_mask & fin)
    if opt_rows.size == 0:
        return v0
    hw_rows = np.broadcast_to(np.asarray(hw, np.float64), (H,))
    k = int(np.ceil(hw_rows.max())) + 1
    rowsel = np.zeros(H, bool); rowsel[opt_rows] = True
    near = ndimage.binary_dilation(rowsel, iterations=k)
    # the boundary layer: ink touching paper and paper touching ink; for a broken (dashed,
    # dotted) trace only paper beside the ink in its row, not the paper in the gaps
    paper_near = np.ones((3, 3), bool) if solid else np.ones((1, 3), bool)
    cand = ndimage.binary_dilation(ink, structure=paper_near)
    inner = ndimage.binary_erosion(ink, structure=np.ones((3, 3), bool))
    cand &= ~inner
    cand &= near[:, None]
    pr, pc = np.nonzero(cand)
    if pr.size == 0:
        return v0
    is_ink = ink[pr, pc]
    hw = hw_rows[pr]                  # the pen's half-width near each boundary pixel
    pr = pr.astype(np.float64); pc = pc.astype(np.float64)
    offs = np.arange(-k, k)
    L = pr.astype(np.int64)[:, None] + offs[None, :]
    ok = (L >= 0) & (L + 1 < H)
    L = np.clip(L, 0, H - 2)
    ok &= fin[L] & fin[L + 1]
    v_init = np.where(fin, v0, 0.0)
    ok &= np.abs(v_init[L + 1] - v_init[L]) < w / 2.0        # never a leg across a wrap
    v = np.where(fin, v0, 0.0).astype(np.float64)
    eps = 0.05
    lr_rows = np.broadcast_to(np.asarray(lr, np.float64), (H,))
    m1 = np.zeros(H); m2 = np.zeros(H)
    b1, b2 = 0.9, 0.999
    sign = np.where(is_ink, 1.0, -1.0)
    for it in range(1, iters + 1):
        x0 = v[L]; dx = v[L + 1] - x0
        ry = pr[:, None] - L
        t = np.clip(((pc[:, None] - x0) * dx + ry) / (dx * dx + 1.0), 0.0, 1.0)
        ex = pc[:, None] - x0 - t * dx
        d2 = ex * ex + (ry - t) ** 2
        d2 = np.where(ok, d2, 1e9)
        j = np.argmin(d2, axis=1)
        ar = np.arange(j.size)
        dm = np.sqrt(d2[ar, j]) + 1e-9
        exj, tj, Lj = ex[ar, j], t[ar, j], L[ar, j]
        viol = np.where(is_ink, np.maximum(dm - hw + eps, 0.0), np.maximum(hw + eps - dm, 0.0))
        fp = 2.0 * viol * sign            # dloss/dd
        g_common = fp * (-exj / dm)
        grad = np.bincount(Lj, weights=g_common * (1.0 - tj), minlength=H) + \
            np.bincount(Lj + 1, weights=g_common * tj, minlength=H)
        grad[~opt_mask] = 0.0
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad * grad
        step = 0.5 * (1 + np.cos(np.pi * it / iters)) + 0.02
        upd = step * lr_rows * (m1 / (1 - b1 ** it)) / (np.sqrt(m2 / (1 - b2 ** it)) + 1e-8)
        v[opt_rows] -= upd[opt_rows]
        if bounds is not None:
            v[opt_rows] = np.clip(v[opt_rows], bounds[0][opt_rows], bounds[1][opt_rows])
    out = v0.copy()
    out[opt_rows] = v[opt_rows]
    return out


def _track_bands(tracks: Sequence[Track], width: int, prm: TraceParams) -> list[tuple[float, float]]:
    """Search margin left and right of each track, never reaching a neighbour's middle."""
    out = []
    for i, t in enumerate(tracks):
        ml = mr = prm.margin
        if i > 0:
            ml = min(ml, max(0.0, (t.x0 - tracks[i - 1].x1) / 2.0 - 0.5))
        if i < len(tracks) - 1:
            mr = min(mr, max(0.0, (tracks[i + 1].x0 - t.x1) / 2.0 - 0.5))
        out.append((ml, mr))
    return out


def trace_curves(labels: np.ndarray, tracks: Iterable[Any], params: TraceParams | None = None,
                 *, progress=None, shared: np.ndarray | None = None) -> pd.DataFrame:
    """Centre line of curve1 and curve2 in every track, one table row per image row and track.

    ``labels``: uint8 (H, W) of 0/1/2 (255 = both curves, as in truth masks).
    ``shared``: optional bool (H, W), curve pixels traced for both curves (a
    segmenter's ``SegmentResult.shared``: curve1 pixels the model thought
    might be curve2).
    ``tracks``: :class:`Track` objects or ``(x0, x1)`` pairs in whole-image
    columns. Returns a DataFrame with columns ``row, track, curve1_x,
    curve2_x, curve1_xu, curve2_xu`` (x: where the ink is; xu: unwrapped,
    ``x + wraps * track width``; NaN where the curve is absent). The tracks
    are kept in ``table.attrs["tracks"]`` (list of dicts).
    """
    prm = params or TraceParams()
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise MaskError(f"labels must be a 2-D label image, got shape {labels.shape}")
    if shared is not None:
        shared = np.asarray(shared, bool)
        if shared.shape != labels.shape:
            raise MaskError(f"the shared-pixel map is {shared.shape[1]}x{shared.shape[0]} px but the labels are "
                            f"{labels.shape[1]}x{labels.shape[0]} px")
        labels = np.where(shared & (labels != 0), np.uint8(IGNORE), labels)
    h, w = labels.shape
    tracks = sorted((as_track(t) for t in tracks), key=lambda t: t.x0)
    frames = []
    margins = _track_bands(tracks, w, prm)
    rows = np.arange(h)
    for ti, (t, (ml, mr)) in enumerate(zip(tracks, margins)):
        lo = t.left(rows) - ml
        hi = t.right(rows) + mr
        c0 = int(max(0, math.floor(lo.min())))
        c1 = int(min(w, math.ceil(hi.max()) + 1))
        cols = {"row": rows, "track": np.full(h, ti)}
        xs: dict[str, np.ndarray] = {}
        inks: dict[str, np.ndarray] = {}
        owns: dict[str, np.ndarray] = {}
        for name in CURVES:
            if c1 <= c0:   # the track lies outside the image: no curve, no ink
                xs[name] = (np.full(h, np.nan), np.full(h, np.nan), np.zeros(h, bool))
                inks[name] = owns[name] = np.zeros((h, 0), bool)
                continue
            band = labels[:, c0:c1]
            m = (band == CURVE_CLASSES[name]) | (band == IGNORE)
            other = np.isin(band, [c for c in CURVE_CLASSES.values() if c != CURVE_CLASSES[name]])
            if t.slope != 0.0 or c0 > lo.min() or c1 < hi.max():
                cc = np.arange(c0, c1)[None, :]
                inside = (cc >= lo[:, None]) & (cc <= hi[:, None])
                m &= inside
                other &= inside
            xs[name] = _trace_band(m, c0, t, prm, other)
            inks[name] = m
            owns[name] = m & (band == CURVE_CLASSES[name])
            if progress is not None:
                progress()
        if prm.hidden_max > 0:
            both = dict(xs)
            for name, other in zip(CURVES, reversed(CURVES)):
                xs[name] = _bridge_hidden(both[name], both[other], t, prm)
        if prm.hidden_sweep > 0:
            both = dict(xs)
            for name, other in zip(CURVES, reversed(CURVES)):
                xs[name] = _follow_hidden_sweep(both[name], both[other], inks[other], c0, t, prm)
        if prm.wrap_follow > 0:
            # the dashed curve only: a model labels a dash drawn over the solid line as the solid line
            xs["curve2"] = _follow_other_wrap(xs["curve2"], xs["curve1"], inks["curve2"], c0, t, prm)
        if prm.offscale_rows > 0:
            for name in CURVES:
                x_, xu_, ink_ = xs[name]
                xs[name] = (x_, _settle_wraps(x_, xu_, t.width, prm), ink_)
        if prm.shadow_share > 0:
            for name in owns:
                xs[name] = _drop_shadow(xs[name], owns[name], prm.shadow_share)
        for name in CURVES:
            cols[f"{name}_x"] = xs[name][0]
        for name in CURVES:
            cols[f"{name}_xu"] = xs[name][1]
        frames.append(pd.DataFrame(cols))
    if frames:
        table = pd.concat(frames, ignore_index=True)
    else:
        table = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in BASE_COLUMNS})
        table["row"] = table["row"].astype(np.int64)
        table["track"] = table["track"].astype(np.int64)
    table.attrs["tracks"] = [t.as_dict() for t in tracks]
    table.attrs["height"] = int(h)
    return table


# =========================================================================== calibration


@dataclass(frozen=True)
class ValueScale:
    """A track's value scale: ``left`` at the left border, ``right`` at the right, linear or log10.

    ``frac = (v - left) / (right - left)`` (linear) or
    ``(log10 v - log10 left) / (log10 right - log10 left)`` (log); a fraction
    beyond 0..1 is a wrapped-around value (the drawn x is ``frac mod 1``).
    """

    left: float
    right: float
    scale: str = "linear"

    def __post_init__(self) -> None:
        if self.scale not in ("linear", "log"):
            raise ConfigError(f"value scale must be 'linear' or 'log', got {self.scale!r}")
        if not (math.isfinite(self.left) and math.isfinite(self.right)) or self.left == self.right:
            raise ConfigError(f"value scale needs two different finite values; got left={self.left:g}, "
                              f"right={self.right:g}")
        if self.scale == "log" and (self.left <= 0 or self.right <= 0):
            raise ConfigError(f"a logarithmic scale needs positive left and right values; got "
                              f"{self.left:g} and {self.right:g}")

    def to_value(self, frac) -> np.ndarray:
        f = np.asarray(frac, np.float64)
        if self.scale == "log":
            lo, hi = math.log10(self.left), math.log10(self.right)
            return np.power(10.0, lo + f * (hi - lo))
        return self.left + f * (self.right - self.left)

    def to_frac(self, value) -> np.ndarray:
        v = np.asarray(value, np.float64)
        if self.scale == "log":
            lo, hi = math.log10(self.left), math.log10(self.right)
            with np.errstate(divide="ignore", invalid="ignore"):
                return (np.log10(v) - lo) / (hi - lo)
        return (v - self.left) / (self.right - self.left)


@dataclass(frozen=True)
class DepthFit:
    """depth(row) = ``top + per_row * row``, with how well the given points fitted."""

    top: float                    # depth at row 0
    per_row: float                # depth units per image row
    unit: str = "ft"
    residual: float = 0.0         # rms misfit of the given points, depth units
    max_residual: float = 0.0
    n_points: int = 0
    method: str = "points"        # "points" (least squares) or "grid" (grid lines + one anchor)

    def depth(self, rows) -> np.ndarray:
        return self.top + self.per_row * np.asarray(rows, np.float64)

    def row(self, depth) -> np.ndarray:
        return (np.asarray(depth, np.float64) - self.top) / self.per_row

    def describe(self) -> str:
        return (f"depth = {self.top:.4g} + {self.per_row:.6g} * row {self.unit} ({self.method}, "
                f"{self.n_points} points, rms residual {self.residual:.3g} {self.unit})")


def _check_unit(unit: str) -> str:
    if unit not in DEPTH_UNITS:
        raise ConfigError(f"depth unit must be one of {', '.join(DEPTH_UNITS)}; got {unit!r}")
    return unit


def fit_depth(points: Sequence[tuple[float, float]], unit: str = "ft") -> DepthFit:
    """Least-squares straight line depth = top + per_row * row through (row, depth) points.

    Needs two or more points on different rows; reports the rms and largest
    residual (in depth units) so a mistyped point shows.
    """
    _check_unit(unit)
    pts = np.asarray([(float(r), float(d)) for r, d in points], np.float64).reshape(-1, 2)
    if len(pts) < 2:
        raise ConfigError("depth calibration needs at least two ROW:DEPTH points "
                          "(or one point and --depth-grid SPACING)")
    if not np.isfinite(pts).all():
        raise ConfigError("depth points must be finite numbers")
    if np.ptp(pts[:, 0]) == 0:
        raise ConfigError("depth points must lie on at least two different rows")
    a = np.c_[np.ones(len(pts)), pts[:, 0]]
    (top, per_row), *_ = np.linalg.lstsq(a, pts[:, 1], rcond=None)
    if per_row == 0:
        raise ConfigError("depth points give the same depth on every row")
    res = pts[:, 1] - (top + per_row * pts[:, 0])
    return DepthFit(float(top), float(per_row), unit, float(np.sqrt(np.mean(res ** 2))),
                    float(np.abs(res).max()), len(pts), "points")


def horizontal_lines(gray: np.ndarray, tracks: Sequence[Any] | None = None,
                     dark_threshold: float | None = None) -> np.ndarray:
    """Rows (float centres) of the horizontal grid lines that cross the tracks."""
    gray = np.asarray(gray)
    h, w = gray.shape
    thr = _dark_threshold(gray) if dark_threshold is None else float(dark_threshold)
    tracks = [as_track(t) for t in tracks] if tracks else [Track(0.0, float(w - 1))]
    prof = np.zeros(h)
    total = 0.0
    for t in tracks:
        c0, c1 = int(max(0, math.ceil(t.x0))), int(min(w, math.floor(t.x1) + 1))
        if c1 - c0 < 3:
            continue
        rr, cc = np.nonzero(gray[:, c0:c1] <= thr)
        # a line perpendicular to the (skewed) borders: row + slope * (x - x_mid) is constant
        r = np.rint(rr + t.slope * (cc + c0 - (c0 + c1) / 2.0)).astype(np.int64)
        ok = (r >= 0) & (r < h)
        prof += np.bincount(r[ok], minlength=h)[:h]
        total += c1 - c0
    if total == 0:
        return np.zeros(0)
    prof /= total
    on = prof >= 0.5
    pad = np.concatenate([[False], on, [False]]).astype(np.int8)
    d = np.diff(pad)
    a, b = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0] - 1
    centres = [float(np.average(np.arange(s, e + 1), weights=prof[s:e + 1])) for s, e in zip(a, b)]
    return np.asarray(centres)


def depth_from_grid(gray: np.ndarray, spacing: float, anchor: tuple[float, float], *,
                    tracks: Sequence[Any] | None = None, unit: str = "ft") -> DepthFit:
    """Depth scale from the horizontal grid lines and their spacing, tied to one known row.

    ``spacing`` is the depth between neighbouring grid lines (the finest set);
    ``anchor`` is ``(row, depth)``. The line period in rows is fitted by least
    squares over all lines found (each line numbered by its rounded distance
    from the anchor-nearest line); the residual is the rms misfit of the lines
    in depth units.
    """
    _check_unit(unit)
    if not (spacing and math.isfinite(spacing) and spacing > 0):
        raise ConfigError(f"--depth-grid must be a positive depth spacing, got {spacing!r}")
    lines = horizontal_lines(gray, tracks)
    if lines.size < 3:
        raise ConfigError(f"found {lines.size} horizontal grid lines; need at least 3 to use "
                          f"--depth-grid (give two --depth-points instead)")
    diffs = np.diff(lines)
    med = float(np.median(diffs))
    regular = diffs[np.abs(diffs - med) <= 0.3 * med]       # missing lines give double gaps
    period = float(regular.mean()) if regular.size else med
    if period < 2:
        raise ConfigError("the horizontal grid lines are too close together to calibrate depth")
    # refine: number the lines and fit row = c + period * n
    for _ in range(2):
        n = np.rint((lines - lines[0]) / period)
        keep = np.abs(lines - lines[0] - n * period) < 0.25 * period
        if keep.sum() < 3:
            break
        a = np.c_[np.ones(int(keep.sum())), n[keep]]
        (c, period), *_ = np.linalg.lstsq(a, lines[keep], rcond=None)
        period = float(period)
    n = np.rint((lines - lines[0]) / period)
    res_rows = lines - (lines[0] + n * period)
    res_rows -= np.median(res_rows)
    per_row = float(spacing) / period
    row0, depth0 = float(anchor[0]), float(anchor[1])
    top = depth0 - per_row * row0
    res = np.abs(res_rows[np.abs(res_rows) < 0.25 * period]) * per_row
    return DepthFit(top, per_row, unit, float(np.sqrt(np.mean(res ** 2))) if res.size else 0.0,
                    float(res.max()) if res.size else 0.0, int(lines.size), "grid")


@dataclass(frozen=True)
class CurveName:
    """What a curve is called in LAS and CSV."""

    mnemonic: str
    unit: str = ""
    description: str = ""


def parse_curve_name(text: str | None) -> CurveName:
    """``MNEM`` or ``MNEM:UNIT`` -> :class:`CurveName` (an empty text: no name, the default is used).

    A LAS mnemonic is one word: spaces, colons and dots inside it are refused.
    """
    mnem, _, unit = str(text or "").strip().partition(":")
    mnem, unit = mnem.strip(), unit.strip()
    if not mnem and unit:
        raise ConfigError(f"curve name {text!r} has a unit but no mnemonic; write MNEM:UNIT")
    if any(ch.isspace() or ch in ".:" for ch in mnem):
        raise ConfigError(f"curve mnemonic {mnem!r} must be one word without spaces, dots or colons")
    return CurveName(mnem, unit)


def default_name(track: int, curve: int) -> CurveName:
    """T1C1, T1C2, T2C1, ...: track and curve numbers, 1-based."""
    return CurveName(f"T{track + 1}C{curve + 1}", "",
                     f"track {track + 1} {'solid' if curve == 0 else 'dashed/dotted'} curve")


@dataclass(frozen=True)
class Calibration:
    """Everything needed to turn pixel positions into depth and values.

    ``scales`` and ``names`` are per track, left to right; a single scale is
    used for every track. Depth comes from ``depth`` (a :class:`DepthFit`), or
    from ``depth_points`` (fitted when used) or ``grid_spacing`` with one
    anchor point in ``depth_points`` (needs the scan).
    """

    depth: DepthFit | None = None
    depth_points: tuple[tuple[float, float], ...] = ()
    grid_spacing: float | None = None
    depth_unit: str = "ft"
    step: float | None = None
    scales: tuple[ValueScale | None, ...] = ()
    names: tuple[tuple[CurveName, CurveName], ...] = ()
    well: tuple[tuple[str, str], ...] = ()

    @property
    def has_depth(self) -> bool:
        return self.depth is not None or len(self.depth_points) >= 2 or \
            (self.grid_spacing is not None and len(self.depth_points) >= 1)

    def resolve_depth(self, gray: np.ndarray | None = None, tracks: Sequence[Any] | None = None
                      ) -> DepthFit | None:
        if self.depth is not None:
            return self.depth
        if self.grid_spacing is not None:
            if not self.depth_points:
                raise ConfigError("--depth-grid needs one known depth: add --depth-points ROW:DEPTH")
            if gray is None:
                raise ConfigError("depth from the grid lines needs the scan image")
            return depth_from_grid(gray, self.grid_spacing, self.depth_points[0], tracks=tracks,
                                   unit=self.depth_unit)
        if len(self.depth_points) >= 2:
            return fit_depth(self.depth_points, self.depth_unit)
        if len(self.depth_points) == 1:
            raise ConfigError("one depth point is not enough: give two or more ROW:DEPTH points, "
                              "or add --depth-grid SPACING")
        return None

    def scale_for(self, track: int, n_tracks: int) -> ValueScale | None:
        if not self.scales:
            return None
        if len(self.scales) == 1:
            return self.scales[0]
        if len(self.scales) != n_tracks:
            raise ConfigError(f"{len(self.scales)} value scales given for {n_tracks} tracks; give one per "
                              f"track (or one for all), or fix the tracks with --tracks")
        return self.scales[track]

    def name_for(self, track: int, curve: int, n_tracks: int) -> CurveName:
        if self.names:
            if len(self.names) != n_tracks and len(self.names) != 1:
                raise ConfigError(f"curve names given for {len(self.names)} tracks but the scan has "
                                  f"{n_tracks}; give one NAME1,NAME2 per track")
            names = self.names[track] if len(self.names) == n_tracks else self.names[0]
            if curve < len(names) and names[curve] is not None and names[curve].mnemonic:
                return names[curve]
        return default_name(track, curve)


def curve_names(cal: Calibration | None, n_tracks: int) -> list[tuple[CurveName, CurveName]]:
    """Unique LAS mnemonics for every (track, curve), numbered when repeated."""
    cal = cal or Calibration()
    names = [[cal.name_for(t, c, n_tracks) for c in range(2)] for t in range(n_tracks)]
    seen: dict[str, int] = {}
    out = []
    for pair in names:
        fixed = []
        for nm in pair:
            key = nm.mnemonic.upper()
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                nm = CurveName(f"{nm.mnemonic}_{seen[key]}", nm.unit, nm.description)
            fixed.append(nm)
        out.append((fixed[0], fixed[1]))
    return out


def apply_calibration(table: pd.DataFrame, tracks: Sequence[Track], depth: DepthFit | None,
                      cal: Calibration | None) -> pd.DataFrame:
    """Add ``depth`` and ``curveN_value`` columns to a traced table (a new table)."""
    out = table.copy()
    if depth is not None:
        out["depth"] = depth.depth(out["row"].to_numpy())
    if cal is not None and cal.scales:
        n = len(tracks)
        for name in CURVES:
            vals = np.full(len(out), np.nan)
            for ti, t in enumerate(tracks):
                sc = cal.scale_for(ti, n)
                if sc is None:
                    continue
                sel = (out["track"] == ti).to_numpy()
                frac = t.frac(out.loc[sel, "row"].to_numpy(), out.loc[sel, f"{name}_xu"].to_numpy())
                vals[sel] = sc.to_value(frac)
            out[f"{name}_value"] = vals
    out.attrs = dict(table.attrs)
    return out


# =========================================================================== the digitised log


@dataclass
class DigitizedLog:
    """The curves of one scan: ``table`` (one row per image row and track), tracks and notes."""

    table: pd.DataFrame
    tracks: list[Track]
    info: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    depth: DepthFit | None = None

    @property
    def calibrated(self) -> bool:
        return self.depth is not None

    def names(self) -> list[tuple[CurveName, CurveName]]:
        return curve_names(self.calibration, len(self.tracks))

    def curves(self, step: float | None = None) -> pd.DataFrame:
        """The curves resampled to a regular depth step: DEPT plus one column per curve."""
        return resample(self, step)


def nice_step(per_row: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at least one row's depth."""
    d = abs(float(per_row))
    if not d > 0:
        return 1.0
    k = math.floor(math.log10(d))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        s = m * 10.0 ** k
        if s >= d * 0.999:
            return float(f"{s:.6g}")
    return 10.0 ** (k + 1)


def _sample_rows(frac: np.ndarray, rows_f: np.ndarray) -> np.ndarray:
    """Linear interpolation of a per-row series at fractional rows; NaN unless both neighbours exist."""
    h = frac.size
    r0 = np.floor(rows_f).astype(np.int64)
    t = rows_f - r0
    out = np.full(rows_f.size, np.nan)
    ok = (r0 >= 0) & (r0 < h)
    r1 = np.minimum(r0 + 1, h - 1)
    a = np.where(ok, frac[np.clip(r0, 0, h - 1)], np.nan)
    b = np.where(ok, frac[np.clip(r1, 0, h - 1)], np.nan)
    exact = ok & (t < 1e-9)
    out[exact] = a[exact]
    both = ok & ~exact & np.isfinite(a) & np.isfinite(b)
    out[both] = a[both] + t[both] * (b[both] - a[both])
    return out


def resample(log: DigitizedLog, step: float | None = None) -> pd.DataFrame:
    """Curves at a regular depth step (``step`` or the calibration's, else a nice step near one row).

    Interpolates each curve's unwrapped track fraction between neighbouring
    rows (never across an empty row), then maps it to the value scale; curves
    without a scale stay as track fractions.
    """
    if log.depth is None:
        raise ConfigError("resampling by depth needs a depth calibration (--depth-points or --depth-grid)")
    dfit = log.depth
    height = int(log.table.attrs.get("height", int(log.table["row"].max()) + 1 if len(log.table) else 0))
    step = step or (log.calibration.step if log.calibration else None) or nice_step(dfit.per_row)
    if not step > 0:
        raise ConfigError(f"--step must be positive, got {step}")
    d_a, d_b = sorted((float(dfit.depth(0)), float(dfit.depth(max(0, height - 1)))))
    start = math.ceil(d_a / step - 1e-9) * step
    n = int(math.floor((d_b - start) / step + 1e-9)) + 1 if d_b >= start else 0
    depths = start + step * np.arange(max(0, n))
    depths = np.round(depths, 10)
    rows_f = dfit.row(depths)
    cols: dict[str, np.ndarray] = {"DEPT": depths}
    names = log.names()
    n_tr = len(log.tracks)
    for ti, t in enumerate(log.tracks):
        sub = log.table[log.table["track"] == ti].sort_values("row")
        full_rows = np.arange(height)
        for ci, cname in enumerate(CURVES):
            frac = np.full(height, np.nan)
            r = sub["row"].to_numpy()
            frac[r] = t.frac(r, sub[f"{cname}_xu"].to_numpy())
            f = _sample_rows(frac, rows_f)
            sc = log.calibration.scale_for(ti, n_tr) if log.calibration else None
            vals = sc.to_value(f) if sc is not None else f
            cols[names[ti][ci].mnemonic] = vals
        del full_rows
    return pd.DataFrame(cols)


def digitize_labels(labels: np.ndarray, gray: np.ndarray | None = None, tracks: Sequence[Any] | None = None,
                    calibration: Calibration | None = None, params: TraceParams | None = None,
                    shared: np.ndarray | None = None) -> DigitizedLog:
    """Labels (and the scan, to find tracks or depth grid lines) -> :class:`DigitizedLog`.

    ``tracks`` None finds them in ``gray`` (:func:`find_tracks`); a
    ``calibration`` adds depth and value columns and enables LAS output;
    ``shared``: pixels traced for both curves (see :func:`trace_curves`).
    """
    labels = np.asarray(labels)
    if gray is not None and np.asarray(gray).shape[:2] != labels.shape[:2]:
        raise MaskError(f"the mask is {labels.shape[1]}x{labels.shape[0]} px but the image is "
                        f"{gray.shape[1]}x{gray.shape[0]} px; they must be the same size")
    if tracks is None or (isinstance(tracks, str) and tracks.strip().lower() == "auto"):
        if gray is None:
            raise ConfigError("finding tracks needs the scan image; give tracks as X0:X1 pixel ranges")
        found = find_tracks(gray, labels=labels)
        if not found:
            raise ConfigError("no tracks found (no heavy vertical borders); give them with "
                              "--tracks X0:X1,X0:X1")
        track_list = found
        how = "auto"
    else:
        if isinstance(tracks, str):
            tracks = parse_tracks(tracks)
        track_list = sorted((as_track(t) for t in tracks), key=lambda t: t.x0)
        how = "given"
        w = labels.shape[1]
        for t in track_list:
            if t.x1 <= 0 or t.x0 >= w - 1:
                raise ConfigError(f"track {t.x0:g}:{t.x1:g} lies outside the image (0..{w - 1})")
    table = trace_curves(labels, track_list, params, shared=shared)
    info: dict[str, Any] = {"tracks_found_by": how, "n_tracks": len(track_list),
                            "tracks": [t.as_dict() for t in track_list]}
    depth = None
    if calibration is not None:
        if calibration.names or calibration.scales:
            curve_names(calibration, len(track_list))        # check counts early
            for ti in range(len(track_list)):
                calibration.scale_for(ti, len(track_list))
        depth = calibration.resolve_depth(gray, track_list)
        table = apply_calibration(table, track_list, depth, calibration)
        if depth is not None:
            info["depth"] = {"top": depth.top, "per_row": depth.per_row, "unit": depth.unit,
                             "residual": depth.residual, "max_residual": depth.max_residual,
                             "n_points": depth.n_points, "method": depth.method}
    for name in CURVES:
        found = table[f"{name}_x"].notna()
        info[f"{name}_rows"] = int(found.sum())
    return DigitizedLog(table=table, tracks=track_list, info=info, calibration=calibration, depth=depth)


def csv_columns(table: pd.DataFrame) -> list[str]:
    """The CSV's columns, in order: base, then depth and values when present."""
    cols = list(BASE_COLUMNS)
    cols += [c for c in DEPTH_COLUMNS + VALUE_COLUMNS if c in table.columns]
    return cols


def write_csv(log: DigitizedLog | pd.DataFrame, path: str | Path) -> Path:
    """The per-row table as CSV (x in pixels, 3 decimals; empty where a curve is absent), atomically."""
    from veer.io import atomic_write

    table = log.table if isinstance(log, DigitizedLog) else log
    path = Path(path)
    with atomic_write(path) as tmp:
        table[csv_columns(table)].to_csv(tmp, index=False, float_format="%.6g", na_rep="")
    return path


def to_las(log: DigitizedLog, step: float | None = None, well: Mapping[str, str] | None = None):
    """A lasio LASFile: depth-resampled curves, well header, NULL -999.25."""
    import lasio

    if log.depth is None:
        raise ConfigError("LAS output needs a depth calibration (--depth-points or --depth-grid)")
    df = resample(log, step)
    las = lasio.LASFile()
    header = dict(log.calibration.well) if log.calibration else {}
    header.update(well or {})
    for key, value in header.items():
        key = str(key).upper()
        if key in las.well:
            las.well[key].value = str(value)
        else:
            las.well[key] = lasio.HeaderItem(key, "", str(value), "")
    las.well["NULL"].value = LAS_NULL
    las.params["VEER"] = lasio.HeaderItem("VEER", "", "digitised by veer", "software")
    if log.depth.residual or log.depth.n_points:
        las.params["DRES"] = lasio.HeaderItem("DRES", DEPTH_UNITS[log.depth.unit],
                                              f"{log.depth.residual:.4g}", "depth calibration rms residual")
    las.append_curve("DEPT", df["DEPT"].to_numpy(), unit=DEPTH_UNITS[log.depth.unit], descr="depth")
    names = log.names()
    n_tr = len(log.tracks)
    for ti in range(n_tr):
        sc = log.calibration.scale_for(ti, n_tr) if log.calibration else None
        for ci in range(2):
            nm = names[ti][ci]
            unit = nm.unit if sc is not None else "frac"
            descr = nm.description or default_name(ti, ci).description
            las.append_curve(nm.mnemonic, df[nm.mnemonic].to_numpy(), unit=unit, descr=descr)
    return las


def write_las(log: DigitizedLog, path: str | Path, step: float | None = None,
              well: Mapping[str, str] | None = None) -> Path:
    """LAS 2.0 via lasio, atomically."""
    las = to_las(log, step, well)
    path = Path(path)
    from veer.io import atomic_write

    with atomic_write(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            las.write(fh, version=2.0, wrap=False, fmt="%.6g")
    return path


# =========================================================================== scoring against truth


def _table_tracks(table: pd.DataFrame, tracks: Sequence[Any] | None) -> list[Track]:
    if tracks is not None:
        return [as_track(t) for t in tracks]
    stored = table.attrs.get("tracks")
    if stored:
        return [as_track(t) for t in stored]
    # unknown geometry: the span of each track's curves
    out = []
    for ti in sorted(table["track"].unique()):
        sub = table[table["track"] == ti]
        xs = pd.concat([sub["curve1_x"], sub["curve2_x"]]).dropna()
        if len(xs):
            out.append(Track(float(xs.min()), float(xs.max()) + 1.0))
    return out


def match_tracks(truth_tracks: np.ndarray, found: Sequence[Track]) -> dict[int, int]:
    """truth track -> found track, greedily by overlap (intersection over union of x ranges >= 0.3)."""
    pairs = []
    for i, (a0, a1) in enumerate(np.asarray(truth_tracks, np.float64).reshape(-1, 2)):
        for j, t in enumerate(found):
            inter = min(a1, t.x1) - max(a0, t.x0)
            union = max(a1, t.x1) - min(a0, t.x0)
            if inter > 0 and union > 0:
                pairs.append((inter / union, i, j))
    out: dict[int, int] = {}
    used: set[int] = set()
    for iou, i, j in sorted(pairs, reverse=True):
        if iou < 0.3 or i in out or j in used:
            continue
        out[i] = j
        used.add(j)
    return out


def _truth_scale(meta: Mapping, ti: int) -> ValueScale | None:
    try:
        t = meta["tracks"][ti]
        return ValueScale(float(t["left"]), float(t["right"]), str(t.get("scale", "linear")))
    except (KeyError, IndexError, TypeError, ConfigError, ValueError):
        return None


def _per_row(table: pd.DataFrame, ti: int, column: str, height: int) -> np.ndarray:
    out = np.full(height, np.nan)
    if column not in table.columns:
        return out
    sub = table[table["track"] == ti]
    r = sub["row"].to_numpy()
    ok = (r >= 0) & (r < height)
    out[r[ok]] = sub[column].to_numpy(np.float64)[ok]
    return out


# where a curve's true row is, by what the truth mask shows at its true centre (score_curves),
# in words; a kind under ROW_KIND_MIN_SHARE of a curve's rows is too rare to show (a solid line's
# few rows off its own ink are noise)
ROW_KIND_WORDS = {"own_ink": "on its own ink", "ink_gap": "in gaps of its ink", "under_other": "with the other curve"}
ROW_KINDS = tuple(ROW_KIND_WORDS)
ROW_KIND_MIN_SHARE = 0.005


def _row_kinds(mask: np.ndarray, cls: int, rows: np.ndarray, tx: np.ndarray, ox: np.ndarray,
               tol_px: float, within_px: int = 2) -> np.ndarray:
    """Index into :data:`ROW_KINDS` for each row ``rows`` (true centres ``tx``, the other
    curve's ``ox``) of a curve of class ``cls`` in the truth ``mask``."""
    cols = np.clip(np.rint(tx)[:, None].astype(np.int64) + np.arange(-within_px, within_px + 1)[None, :],
                   0, mask.shape[1] - 1)
    around = mask[rows[:, None], cols]
    own = (around == cls).any(axis=1)
    with np.errstate(invalid="ignore"):
        other = (np.abs(ox - tx) <= tol_px) | (around == IGNORE).any(axis=1)
    return np.where(other, 2, np.where(own, 0, 1))


def row_kinds_shown(curve: Mapping) -> list[tuple[str, float, float | None]]:
    """(kind, share of the curve's true rows, share of them within 3 px) for each of
    :data:`ROW_KINDS` in one curve's scores (score_curves or pool_scores) that holds at
    least ``ROW_KIND_MIN_SHARE`` of its rows; [] for scores without the split."""
    total = curve.get("n_truth_rows") or 0
    out = []
    for kind in ROW_KINDS:
        n = curve.get(f"n_rows_{kind}") or 0
        if total and n and n >= ROW_KIND_MIN_SHARE * total:
            within = curve.get(f"within3_{kind}")
            out.append((kind, n / total, None if within is None else float(within)))
    return out


def score_curves(truth: Any, table: pd.DataFrame | DigitizedLog, *, tracks: Sequence[Any] | None = None,
                 tol_px: float = 3.0, wrap_window: int = 10, track_tol_px: float = 6.0) -> dict:
    """How close the traced curves are to a synthetic log's true centre lines.

    ``truth``: :class:`veer.synth.Truth` (or anything with ``centerline``,
    ``value``, ``tracks``, ``meta``). Found tracks (from ``tracks``, the
    table's ``attrs["tracks"]`` or a DigitizedLog) are matched to truth
    tracks by overlap. Per curve class, pooled over tracks:

    * ``median_px`` / ``mean_px`` / ``p95_px``: absolute x error on rows where
      both truth and trace have the curve;
    * ``within3``: share of truth rows traced within ``tol_px`` (a missed row
      counts as outside); ``within3_found``: the same among traced rows;
    * ``missed``: share of truth rows with nothing traced; ``spurious``: share
      of traced rows where the truth has no curve;
    * ``wraps``, ``wraps_correct``, ``wrap_share``: truth wrap-around events
      (the wrap count changes) and the share whose unwrapped position right
      after the event matches the truth (median |frac error| < 0.25 over the
      next ``wrap_window`` rows);
    * ``wrap_steps_correct``, ``wrap_step_share``: the events whose step the
      trace gets right: its error over its first ``wrap_window`` traced rows
      after the event is within 0.25 of its error over its last ones before
      (each looked for up to ``6 * wrap_window`` rows away). A step missed
      earlier, or a trace whose most-rows wrap count is not the truth's zero
      (a curve off scale on most of the log), fails ``wrap_share`` for every
      later event but not this;
    * ``mae`` and ``r2``: in the track's physical units (the table's values if
      calibrated, else the trace mapped through the truth's value scale).

    Where the rows are (when ``truth`` has its ``mask``): each truth row of a
    curve is put in one of :data:`ROW_KINDS` by what the truth mask shows
    around its true centre (``within_px`` px either side): ``own_ink``, the
    curve's own class; ``under_other``, the other curve's true centre within
    ``tol_px`` or overlap pixels (255) there; ``ink_gap``, neither (the gaps of
    a dashed or dotted line, and a line too thin or faint to be marked).
    ``n_rows_<kind>`` and ``n_within_<kind>`` count them and those traced
    within ``tol_px``, ``within3_<kind>`` is the share.

    Tracks: ``tracks_right`` counts truth tracks whose matched track has both
    borders within ``track_tol_px``; ``all_tracks_right``: every track so, and
    no extra one.

    Counts (``n_*``) are included so scores of many logs can be pooled
    (:func:`pool_scores`).
    """
    if isinstance(table, DigitizedLog):
        tracks = tracks if tracks is not None else table.tracks
        table = table.table
    cl = np.asarray(truth.centerline, np.float64)
    tv = np.asarray(truth.value, np.float64)
    meta = getattr(truth, "meta", {}) or {}
    n_truth, _, height = cl.shape
    found = _table_tracks(table, tracks)
    match = match_tracks(truth.tracks, found)
    tt = np.asarray(truth.tracks, np.float64).reshape(-1, 2)
    right = sum(1 for i, j in match.items()
                if max(abs(found[j].x0 - tt[i, 0]), abs(found[j].x1 - tt[i, 1])) <= track_tol_px)
    out: dict[str, Any] = {"tracks_truth": int(n_truth), "tracks_found": len(found),
                           "tracks_matched": len(match), "tracks_right": int(right),
                           "track_tol_px": float(track_tol_px),
                           "all_tracks_right": bool(right == n_truth and len(found) == n_truth)}
    truth_mask = getattr(truth, "mask", None)
    if truth_mask is not None:
        truth_mask = np.asarray(truth_mask)
        if truth_mask.ndim != 2 or truth_mask.shape[0] < height:
            truth_mask = None                       # no usable mask: no split of the rows
    for ci, name in enumerate(CURVES):
        errs, t_vals, f_vals = [], [], []
        n_truth_rows = n_found_rows = n_missed = n_spurious = n_within = 0
        kind_rows = np.zeros(len(ROW_KINDS), np.int64)
        kind_within = np.zeros(len(ROW_KINDS), np.int64)
        n_wraps = n_wraps_ok = n_steps_ok = 0
        for ti in range(n_truth):
            tx = cl[ti, ci]
            exists = np.isfinite(tx)
            if ti in match:
                fj = match[ti]
                fx = _per_row(table, fj, f"{name}_x", height)
                fxu = _per_row(table, fj, f"{name}_xu", height)
                fval = _per_row(table, fj, f"{name}_value", height)
                ftrack = found[fj]
            else:
                fx = fxu = fval = np.full(height, np.nan)
                ftrack = None
            got = np.isfinite(fx)
            both = exists & got
            e = np.abs(fx[both] - tx[both])
            errs.append(e)
            close = np.zeros(height, bool)         # truth rows traced within tol_px
            close[both] = e <= tol_px
            n_truth_rows += int(exists.sum())
            n_found_rows += int(got.sum())
            n_missed += int((exists & ~got).sum())
            n_spurious += int((got & ~exists).sum())
            n_within += int(close.sum())
            if truth_mask is not None:
                rr = np.flatnonzero(exists)
                kind = _row_kinds(truth_mask, CURVE_CLASSES[name], rr, tx[rr], cl[ti, 1 - ci][rr], tol_px)
                kind_rows += np.bincount(kind, minlength=len(ROW_KINDS))
                kind_within += np.bincount(kind[close[rr]], minlength=len(ROW_KINDS))
            scale = _truth_scale(meta, ti)
            rows = np.arange(height)
            ffrac = ftrack.frac(rows, fxu) if ftrack is not None else np.full(height, np.nan)
            if scale is not None and not np.isfinite(fval).any():
                fval = scale.to_value(ffrac)
            vb = np.isfinite(tv[ti, ci]) & np.isfinite(fval)
            t_vals.append(tv[ti, ci][vb])
            f_vals.append(fval[vb])
            if scale is not None:
                tfrac = scale.to_frac(tv[ti, ci])
                wr = np.floor(tfrac)
                valid = np.flatnonzero(np.isfinite(wr))
                if valid.size > 1:
                    ev = valid[1:][wr[valid[1:]] != wr[valid[:-1]]]
                    off = ffrac - tfrac
                    for r in ev.tolist():
                        n_wraps += 1
                        after = off[r:min(height, r + wrap_window)]
                        after = after[np.isfinite(after)]
                        # the step: the trace's first rows after the event against its last ones
                        # before (a dash gap or a stretch a model missed may come between)
                        later = off[r:min(height, r + 6 * wrap_window)]
                        later = later[np.isfinite(later)][:wrap_window]
                        before = off[max(0, r - 6 * wrap_window):r]
                        before = before[np.isfinite(before)][-wrap_window:]
                        if after.size and abs(float(np.median(after))) < 0.25:
                            n_wraps_ok += 1
                        if later.size and before.size and \
                                abs(float(np.median(later)) - float(np.median(before))) < 0.25:
                            n_steps_ok += 1
        e = np.concatenate(errs) if errs else np.zeros(0)
        tvs = np.concatenate(t_vals) if t_vals else np.zeros(0)
        fvs = np.concatenate(f_vals) if f_vals else np.zeros(0)
        res: dict[str, Any] = {
            "n_truth_rows": n_truth_rows, "n_found_rows": n_found_rows, "n_both_rows": int(e.size),
            "n_within": n_within, "n_missed": n_missed, "n_spurious": n_spurious,
            "median_px": float(np.median(e)) if e.size else None,
            "mean_px": float(np.mean(e)) if e.size else None,
            "p95_px": float(np.percentile(e, 95)) if e.size else None,
            "within3": n_within / n_truth_rows if n_truth_rows else None,
            "within3_found": n_within / e.size if e.size else None,
            "missed": n_missed / n_truth_rows if n_truth_rows else None,
            "spurious": n_spurious / n_found_rows if n_found_rows else 0.0,
            "wraps": n_wraps, "wraps_correct": n_wraps_ok,
            "wrap_share": n_wraps_ok / n_wraps if n_wraps else None,
            "wrap_steps_correct": n_steps_ok,
            "wrap_step_share": n_steps_ok / n_wraps if n_wraps else None,
            "n_value_rows": int(tvs.size),
        }
        if truth_mask is not None:
            for k, kind_name in enumerate(ROW_KINDS):
                res[f"n_rows_{kind_name}"] = int(kind_rows[k])
                res[f"n_within_{kind_name}"] = int(kind_within[k])
                res[f"within3_{kind_name}"] = float(kind_within[k] / kind_rows[k]) if kind_rows[k] else None
        if tvs.size:
            res["mae"] = float(np.mean(np.abs(fvs - tvs)))
            ss_tot = float(np.sum((tvs - tvs.mean()) ** 2))
            res["r2"] = 1.0 - float(np.sum((fvs - tvs) ** 2)) / ss_tot if ss_tot > 0 else None
        else:
            res["mae"] = res["r2"] = None
        out[name] = res
    if "depth" in table.columns and isinstance(meta.get("depth"), Mapping):
        d = meta["depth"]
        try:
            rows = table["row"].to_numpy(np.float64)
            true_depth = float(d["top_depth"]) + (rows - float(d["top_row"])) / float(d["rows_per_unit"])
            out["depth_mae"] = float(np.nanmean(np.abs(table["depth"].to_numpy(np.float64) - true_depth)))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            pass
    return out


def pool_scores(scores: Sequence[Mapping]) -> dict:
    """Pool :func:`score_curves` results of many logs: shares from summed counts, medians of medians."""
    out: dict[str, Any] = {"logs": len(scores),
                           "logs_tracks_right": sum(1 for s in scores if s.get("all_tracks_right")),
                           "track_tol_px": next((s["track_tol_px"] for s in scores if "track_tol_px" in s), None)}
    for name in CURVES:
        rows = [s[name] for s in scores if name in s]
        tot = {k: sum(int(r.get(k, 0) or 0) for r in rows)
               for k in ("n_truth_rows", "n_found_rows", "n_both_rows", "n_within", "n_missed",
                         "n_spurious", "wraps", "wraps_correct", "wrap_steps_correct", "n_value_rows")}
        med = [r["median_px"] for r in rows if r.get("median_px") is not None]
        maes = [(r["mae"], r["n_value_rows"]) for r in rows if r.get("mae") is not None]
        r2 = [r["r2"] for r in rows if r.get("r2") is not None]
        out[name] = {
            **tot,
            "median_px": float(np.median(med)) if med else None,
            "worst_median_px": float(np.max(med)) if med else None,
            "within3": tot["n_within"] / tot["n_truth_rows"] if tot["n_truth_rows"] else None,
            "missed": tot["n_missed"] / tot["n_truth_rows"] if tot["n_truth_rows"] else None,
            "spurious": tot["n_spurious"] / tot["n_found_rows"] if tot["n_found_rows"] else 0.0,
            "wrap_share": tot["wraps_correct"] / tot["wraps"] if tot["wraps"] else None,
            "wrap_step_share": tot["wrap_steps_correct"] / tot["wraps"] if tot["wraps"] else None,
            "mae": float(sum(m * n for m, n in maes) / max(1, sum(n for _, n in maes))) if maes else None,
            # per log: one wrong wrap on a 4-decade log track multiplies values by 10^4, so the
            # pooled MAE is one bad log's; the median over logs says what a typical log gets
            "mae_median": float(np.median([m for m, _ in maes])) if maes else None,
            "r2_median": float(np.median(r2)) if r2 else None,
            # the middle 95 % over logs resampled with replacement (veer.metrics.bootstrap_share)
            "within3_interval": bootstrap_share([r.get("n_within", 0) or 0 for r in rows],
                                                [r.get("n_truth_rows", 0) or 0 for r in rows]),
            "wrap_share_interval": bootstrap_share([r.get("wraps_correct", 0) or 0 for r in rows],
                                                   [r.get("wraps", 0) or 0 for r in rows]),
        }
        if rows and all(f"n_rows_{k}" in r for r in rows for k in ROW_KINDS):
            for k in ROW_KINDS:
                n_rows = sum(int(r[f"n_rows_{k}"]) for r in rows)
                n_in = sum(int(r[f"n_within_{k}"]) for r in rows)
                out[name].update({f"n_rows_{k}": n_rows, f"n_within_{k}": n_in,
                                  f"within3_{k}": n_in / n_rows if n_rows else None})
    return out


# =========================================================================== CLI


def _split_values(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in str(v).split(",") if p.strip()]
    return out


def _floats(values: Sequence[str] | None, option: str) -> list[float]:
    out = []
    for v in _split_values(values):
        try:
            out.append(float(v))
        except ValueError:
            raise ConfigError(f"{option}: {v!r} is not a number") from None
    return out


def parse_depth_points(text: str | Sequence[str] | None) -> tuple[tuple[float, float], ...]:
    """``"ROW:DEPTH,ROW:DEPTH"`` -> ((row, depth), ...)."""
    if not text:
        return ()
    parts = _split_values([text] if isinstance(text, str) else text)
    pts = []
    for part in parts:
        try:
            r, d = (float(v) for v in part.split(":"))
        except ValueError:
            raise ConfigError(f"--depth-points: write each point as ROW:DEPTH (e.g. 120:1500,2900:1640); "
                              f"got {part!r}") from None
        pts.append((r, d))
    return tuple(pts)


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """Depth, value-scale, naming and well-header options (shared with ``veer batch``)."""
    g = parser.add_argument_group("calibration (enables depth, values and LAS output)")
    g.add_argument("--depth-points", default=None, metavar="ROW:DEPTH,...",
                   help="rows with known depth; two or more: least-squares fit (residual reported)")
    g.add_argument("--depth-grid", type=float, default=None, metavar="SPACING",
                   help="depth between neighbouring horizontal grid lines; with one --depth-points anchor")
    g.add_argument("--depth-unit", choices=sorted(DEPTH_UNITS), default="ft", help="depth unit (default ft)")
    g.add_argument("--step", type=float, default=None,
                   help="LAS depth step (default: a round step close to one image row)")
    g.add_argument("--scale", nargs="+", default=None, metavar="linear|log",
                   help="value scale per track, left to right (one value: all tracks)")
    g.add_argument("--left", nargs="+", default=None, metavar="V",
                   help="value at each track's left border (per track, or one for all)")
    g.add_argument("--right", nargs="+", default=None, metavar="V",
                   help="value at each track's right border (per track, or one for all)")
    g.add_argument("--curves", nargs="+", default=None, metavar="MNEM[:UNIT],MNEM[:UNIT]",
                   help="LAS names of curve1,curve2 per track, e.g. GR:GAPI,CALI:IN ILD:OHMM,ILM:OHMM")
    g.add_argument("--well", default=None, help="well name (LAS WELL)")
    g.add_argument("--company", default=None, help="operator (LAS COMP)")
    g.add_argument("--field", default=None, help="field (LAS FLD)")
    g.add_argument("--uwi", default=None, help="unique well identifier (LAS UWI)")
    g.add_argument("--location", default=None, help="location (LAS LOC)")
    g.add_argument("--header", action="append", default=None, metavar="KEY=VALUE",
                   help="any other LAS well header item (repeatable)")


def calibration_from_args(args: argparse.Namespace) -> Calibration | None:
    """The :class:`Calibration` the options describe, or None when none was given."""
    pts = parse_depth_points(getattr(args, "depth_points", None))
    unit = _check_unit(getattr(args, "depth_unit", "ft") or "ft")
    spacing = getattr(args, "depth_grid", None)
    step = getattr(args, "step", None)
    if step is not None and not step > 0:
        raise ConfigError(f"--step must be positive, got {step:g}")
    kinds = [s.lower() for s in _split_values(getattr(args, "scale", None))]
    lefts = _floats(getattr(args, "left", None), "--left")
    rights = _floats(getattr(args, "right", None), "--right")
    scales: list[ValueScale] = []
    if lefts or rights:
        if len(lefts) != len(rights):
            raise ConfigError(f"--left gives {len(lefts)} value(s) and --right {len(rights)}; "
                              f"give one pair per track")
        if kinds and len(kinds) not in (1, len(lefts)):
            raise ConfigError(f"--scale gives {len(kinds)} value(s) for {len(lefts)} tracks")
        for i, (lo, hi) in enumerate(zip(lefts, rights)):
            kind = (kinds[i] if len(kinds) > 1 else kinds[0]) if kinds else "linear"
            scales.append(ValueScale(lo, hi, kind))
    elif kinds:
        raise ConfigError("--scale needs --left and --right values for each track")
    names = []
    for per_track in getattr(args, "curves", None) or []:
        pair = []
        for item in str(per_track).split(","):
            if not item.partition(":")[0].strip():
                raise ConfigError(f"--curves: empty curve name in {per_track!r}")
            pair.append(parse_curve_name(item))
        while len(pair) < 2:
            pair.append(CurveName(""))
        names.append((pair[0], pair[1]))
    well = []
    for key, opt in (("WELL", "well"), ("COMP", "company"), ("FLD", "field"), ("UWI", "uwi"), ("LOC", "location")):
        v = getattr(args, opt, None)
        if v:
            well.append((key, str(v)))
    for item in getattr(args, "header", None) or []:
        k, sep, v = str(item).partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"--header: write KEY=VALUE, got {item!r}")
        well.append((k.strip().upper(), v.strip()))
    if not (pts or spacing is not None or scales or names or well or step):
        return None
    cal = Calibration(depth_points=pts, grid_spacing=spacing, depth_unit=unit, step=step,
                      scales=tuple(scales), names=tuple(names), well=tuple(well))
    if len(pts) == 1 and spacing is None:
        raise ConfigError("one --depth-points point is not enough: give two or more, or add --depth-grid SPACING")
    if len(pts) >= 2 and spacing is None:
        fit_depth(pts, unit)                 # fail early on bad points
    return cal


def _scales_arg(text: str):
    from veer.infer import _scales_arg as parse

    return parse(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from veer.infer import VIEW_CHOICES

    parser.add_argument("images", nargs="+", metavar="IMAGE", help="scan image(s)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mode", choices=("joint", "separate"), default="joint",
                        help="segmentation pipeline when no --mask is given (default joint)")
    parser.add_argument("--mask", nargs="+", default=None, metavar="MASK",
                        help="label PNG(s) (0/1/2) to use instead of segmenting, one per image in order")
    parser.add_argument("--tracks", default="auto", metavar="auto|X0:X1,...",
                        help="track pixel column ranges, or auto (from the heavy borders; default)")
    parser.add_argument("--device", default="auto", help="device for segmentation (auto, cpu, cuda)")
    parser.add_argument("--scales", type=_scales_arg, default=None, metavar="S[,S...]",
                        help="segment each tile at these scales too, averaged (e.g. 1,1.3: better labels, "
                             "so better curves, for 2.7x the segmentation time; default 1)")
    parser.add_argument("--scale-views", type=int, choices=VIEW_CHOICES, default=None,
                        help="network passes per tile at the scales other than 1 (default 2, as at 1); "
                             "1: the enlarged tile once, without its mirror (1.85x the network work of "
                             "the default with --scales 1,1.3, against 2.7x)")
    parser.add_argument("--max-gap", type=int, default=TraceParams.max_gap,
                        help=f"longest gap in rows bridged by interpolation (default {TraceParams.max_gap})")
    add_calibration_arguments(parser)


def digitize_file(image: str | Path, out_dir: str | Path, *, mask: str | Path | None = None,
                  mode: str = "joint", tracks: Sequence[Any] | None = None,
                  calibration: Calibration | None = None, device: str = "auto",
                  params: TraceParams | None = None, scales: Any = None,
                  scale_views: int | None = None) -> dict[str, Path]:
    """Digitise one scan (segmenting it, or with its mask) and write its CSV (and LAS).

    ``scales``: the segmenter's scales per tile (:func:`veer.infer.scales_for`);
    ``scale_views``: its views at the scales other than 1 (default 2, as at 1)."""
    from veer.classes import read_mask
    from veer.io import read_scan, safe_stem

    scan = read_scan(image)
    shared = None
    if mask is not None:
        labels = read_mask(mask, scan.gray.shape, name=str(mask))
    else:
        from veer.infer import get_segmenter

        result = get_segmenter(mode, device=device, scales=scales, scale_views=scale_views).segment(scan.gray)
        labels, shared = result.labels, getattr(result, "shared", None)
    try:
        log = digitize_labels(labels, gray=scan.gray, tracks=tracks, calibration=calibration, params=params,
                              shared=shared)
    except ConfigError as exc:
        raise ConfigError(f"{image}: {exc}") from None
    stem = safe_stem(Path(str(image)).name)
    out_dir = Path(out_dir)
    written = {"csv": write_csv(log, out_dir / f"{stem}.curves.csv")}
    if log.calibrated:
        written["las"] = write_las(log, out_dir / f"{stem}.las")
    return written


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    images = list(args.images)
    masks = list(args.mask) if args.mask else None
    if masks is not None and len(masks) != len(images):
        raise ConfigError(f"{len(masks)} mask(s) for {len(images)} image(s); give one --mask per image, in order")
    tracks = parse_tracks(args.tracks)
    cal = calibration_from_args(args)
    if args.max_gap < 0:
        raise ConfigError("--max-gap must be 0 or more")
    params = TraceParams(max_gap=int(args.max_gap))
    failed = 0
    bar = tqdm(images, desc="digitize", unit="scan", disable=True if len(images) < 2 else None, file=sys.stderr)
    for i, image in enumerate(bar):
        try:
            written = digitize_file(image, args.out, mask=masks[i] if masks else None, mode=args.mode,
                                    tracks=tracks, calibration=cal, device=args.device, params=params,
                                    scales=args.scales, scale_views=args.scale_views)
        except VeerError as exc:
            failed += 1
            msg = str(exc)
            if str(image) not in msg and (masks is None or str(masks[i]) not in msg):
                msg = f"{image}: {msg}"
            tqdm.write(f"veer digitize: error: {msg}", file=sys.stderr)
            continue
        tqdm.write(" ".join(str(p) for p in written.values()), file=sys.stdout)
    return 1 if failed else 0
