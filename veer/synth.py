"""Synthetic raster well logs with exact truth.

Real scans with pixel truth do not exist, so this generator decides how good
every model can be. It renders paper logs the way a scanner sees them and
keeps the truth that produced them:

* paper: white, cream or grey tones, uneven brightness, grain, stains, folds;
* layout: a depth column (ticks, printed depths), one to three tracks between
  heavy borders, linear or logarithmic grids, light and heavy depth lines, an
  optional printed header block, hatched intervals, handwritten notes, stamps
  (all background, class 0);
* curves: per track one solid trace (class 1) and usually one dashed or
  dotted trace (class 2) with beds, trends, wiggle, spikes, excursions,
  crossings and wrap-around at the track edges;
* scan: skew, ink bleed and fading, blur, noise, speckle, JPEG, 1-bit
  binarisation (saved as CCITT G4 TIFF at 200 dpi), grey or colour.

How it works
    ``_make_plan`` decides everything about one log (layout, grids, text,
    curve values per row) without touching pixels. ``_render_window`` draws
    any rectangle of that log: background print in page coordinates, rotated
    onto the scan (skew) by one affine warp, curves drawn directly in scan
    coordinates as anti-aliased strokes (the exact distance of each pixel
    centre to the pen path), so the truth mask (stroke coverage >= 0.5) and the
    centre lines match the image exactly. Whole logs are rendered in bands of
    rows (bounded memory); training tiles render just a tile-sized window of a
    virtual log drawn from the same distribution (:func:`sample_tile`).

Truth files beside each scan (see :func:`save_log`)
    ``<stem>.<png|jpg|tif>`` the scan, ``<stem>.mask.png`` labels 0/1/2 and
    255 where the two curves of a track overlap, ``<stem>.curves.npz``
    (``centerline``, ``value``, ``tracks``) and ``<stem>.json`` (meta).
"""

from __future__ import annotations

import argparse
import functools
import io as _io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from veer.classes import CURVE1, CURVE2, IGNORE, read_mask, write_mask
from veer.errors import ConfigError, VeerError
from veer.io import atomic_write, rgb_to_gray

DPI = 200
MIN_SIDE = 256
MAX_HEIGHT = 40_000
MAX_WIDTH = 4_000
BAND_ROWS = 1024          # rows rendered at a time by generate_log
SCAN_EXTS = ("png", "jpg", "jpeg", "tif", "tiff")


# --------------------------------------------------------------------------------------
# styles


@dataclass(frozen=True)
class Style:
    """A named preset: fixes some knobs of the generator, the rest stay random."""

    name: str
    description: str
    weight: float                      # share in the default random mix
    scan: str | None = None            # "gray" | "color" | "bilevel"
    ext: str | None = None             # "png" | "jpg" | "tif"
    degrade: str | None = None         # "light" | "moderate" | "heavy" | "faded"
    header: bool | None = None
    log_track: bool | None = None
    wrap: bool | None = None


STYLES: dict[str, Style] = {s.name: s for s in (
    Style("clean", "grey scan, light wear, PNG", 1.0, scan="gray", ext="png", degrade="light"),
    Style("noisy", "grey scan with blur, noise, speckle and bleed", 1.0, scan="gray", ext="png",
          degrade="heavy"),
    Style("faded", "faded, uneven ink on aged paper", 0.8, scan="gray", degrade="faded"),
    Style("jpeg_gray", "grey scan saved as JPEG", 1.2, scan="gray", ext="jpg"),
    Style("bilevel_g4", "1-bit archive scan, CCITT G4 TIFF at 200 dpi", 1.4, scan="bilevel",
          ext="tif"),
    Style("color", "colour scan, coloured inks and grid, PNG", 0.8, scan="color", ext="png"),
    Style("color_jpeg", "colour scan saved as JPEG", 0.6, scan="color", ext="jpg"),
    Style("header", "log with a printed header block above it", 0.6, header=True),
    Style("log_scale", "at least one logarithmic track", 0.8, log_track=True),
    Style("wrap", "curves that wrap around the track edges", 0.8, wrap=True),
)}


def _pick(rng: np.random.Generator, options, weights=None):
    """One of ``options`` (optionally weighted); cheap enough for per-tile use."""
    if weights is None:
        return options[int(rng.random() * len(options))]
    x = rng.random() * float(sum(weights))
    acc = 0.0
    for opt, w in zip(options, weights):
        acc += w
        if x < acc:
            return opt
    return options[-1]


# --------------------------------------------------------------------------------------
# public data


@dataclass
class SynthLog:
    """A rendered log and its exact truth (see the module docstring)."""

    image: np.ndarray          # uint8 (H, W) grey or (H, W, 3) colour, exactly as saved
    mask: np.ndarray           # uint8 (H, W) 0/1/2, 255 where the two curves overlap
    centerline: np.ndarray     # float32 (n_tracks, 2, H) drawn centre x per row, NaN where absent
    value: np.ndarray          # float32 (n_tracks, 2, H) physical value (unwrapped), NaN where absent
    tracks: np.ndarray         # float32 (n_tracks, 2) x0, x1 of each plotting area at mid-height
    meta: dict
    encoded: bytes | None = field(default=None, repr=False)  # the saved file's bytes (JPEG)

    @property
    def gray(self) -> np.ndarray:
        return rgb_to_gray(self.image) if self.image.ndim == 3 else self.image

    @property
    def ext(self) -> str:
        return str(self.meta.get("ext", "png"))


@dataclass
class Truth:
    """The truth saved beside a scan, as read back by :func:`load_truth`."""

    mask: np.ndarray
    centerline: np.ndarray
    value: np.ndarray
    tracks: np.ndarray
    meta: dict


# --------------------------------------------------------------------------------------
# the look of one log: paper, inks, scan degradations


@dataclass
class _Look:
    style: str
    scan: str                  # gray | color | bilevel
    ext: str
    channels: int
    degrade: str
    header: bool
    log_track: bool
    wrap: bool
    paper: np.ndarray          # (C,) paper colour 0..1
    light: list                # low-frequency brightness components (fy, fx, phase, amp)
    lamp: float                # left-right illumination slope
    grain: float
    fibre: float
    mottle: float
    fade_min: float            # lowest ink strength of the fading field
    curve_fade_floor: float    # the pens never fade below this
    fade: list                 # fading field components
    dropout: float             # ink texture (missing ink) strength
    bleed: float
    bleed_sigma: float
    blur: float
    noise: float
    speckle: float             # dark specks per megapixel
    holes: float               # white dropouts per megapixel
    jpeg_quality: int
    threshold: float           # bilevel threshold (fraction of paper level)
    gamma: float
    grid_ink: np.ndarray       # (C,) transmittance of the grid ink
    grid_dark: float           # darkness of light grid lines
    print_ink: np.ndarray      # borders, text, ticks
    curve_inks: list           # per curve slot (C,) transmittance
    stains: float              # stains per megapixel
    fold_period: float
    fold_phase: float
    fold_strength: float


_COLOR_INKS = {
    "black": (0.10, 0.10, 0.12), "blue": (0.12, 0.22, 0.62), "red": (0.78, 0.12, 0.10),
    "green": (0.10, 0.48, 0.20), "purple": (0.45, 0.15, 0.55), "brown": (0.45, 0.25, 0.10),
}
_GRID_COLORS = {
    "black": (0.25, 0.25, 0.25), "orange": (0.95, 0.55, 0.25), "green": (0.35, 0.65, 0.40),
    "blue": (0.35, 0.50, 0.80), "red": (0.90, 0.35, 0.35), "brown": (0.65, 0.45, 0.30),
}


def _sinus_components(rng, n, period_lo, period_hi, amp):
    comps = []
    for _ in range(n):
        period = math.exp(rng.uniform(math.log(period_lo), math.log(period_hi)))
        ang = rng.uniform(0, 2 * math.pi)
        comps.append((math.sin(ang) / period, math.cos(ang) / period, rng.uniform(0, 2 * math.pi),
                      amp * rng.uniform(0.3, 1.0)))
    return comps


def _make_look(rng: np.random.Generator, style_name: str) -> _Look:
    st = STYLES[style_name]
    scan = st.scan or _pick(rng, ["gray", "bilevel", "color"], [0.55, 0.27, 0.18])
    if st.ext:
        ext = st.ext
    elif scan == "bilevel":
        ext = "tif"
    else:
        ext = _pick(rng, ["png", "jpg"], [0.5, 0.5])
    degrade = st.degrade or _pick(rng, ["light", "moderate", "heavy", "faded"], [0.35, 0.4, 0.15, 0.1])
    C = 3 if scan == "color" else 1
    u = rng.uniform

    # paper tone
    if C == 3:
        tone = _pick(rng, ["white", "cream", "grey", "yellowed"], [0.3, 0.35, 0.15, 0.2])
        base = {"white": (0.97, 0.97, 0.95), "cream": (0.97, 0.93, 0.82),
                "grey": (0.86, 0.86, 0.84), "yellowed": (0.93, 0.86, 0.68)}[tone]
        paper = np.array(base, np.float32) * u(0.9, 1.03) + rng.normal(0, 0.015, 3).astype(np.float32)
    else:
        level = _pick(rng, [u(0.9, 0.99), u(0.8, 0.92), u(0.68, 0.82)], [0.55, 0.3, 0.15])
        paper = np.array([level], np.float32)
    if degrade == "faded":
        paper = paper * u(0.85, 0.97)
    paper = np.clip(paper, 0.5, 1.0).astype(np.float32)

    lvl = {"light": 0, "moderate": 1, "heavy": 2, "faded": 1}[degrade]
    light = _sinus_components(rng, 3, 400, 4000, [0.02, 0.05, 0.09][lvl])
    fade_min = {"light": u(0.85, 1.0), "moderate": u(0.6, 0.95), "heavy": u(0.5, 0.9),
                "faded": u(0.25, 0.55)}[degrade]
    fade = _sinus_components(rng, 3, 150, 2500, 1.0)

    # inks: curves share the same palette for both classes (colour is not the class cue)
    if C == 3:
        names = list(_COLOR_INKS)
        curve_inks = [np.array(_COLOR_INKS[_pick(rng, names, [4, 3, 3, 1.5, 1, 1])], np.float32)
                      for _ in range(6)]
        grid_name = _pick(rng, list(_GRID_COLORS), [3, 2, 1.2, 1.2, 1, 1])
        grid_ink = np.array(_GRID_COLORS[grid_name], np.float32)
        print_ink = np.array(_COLOR_INKS["black"], np.float32) + np.float32(u(0, 0.1))
    else:
        curve_inks = [np.array([u(0.0, 0.25)], np.float32) for _ in range(6)]
        grid_ink = np.array([u(0.0, 0.3)], np.float32)
        print_ink = np.array([u(0.0, 0.15)], np.float32)
    # darkness of light grid lines: usually lighter than curves, sometimes as dark
    grid_dark = _pick(rng, [u(0.3, 0.6), u(0.6, 0.85), u(0.85, 1.0)],
                      [0.15, 0.45, 0.4] if scan == "bilevel" else [0.45, 0.35, 0.2])

    blur = {"light": u(0.0, 0.5), "moderate": u(0.3, 0.9), "heavy": u(0.6, 1.4), "faded": u(0.3, 1.0)}[degrade]
    noise = {"light": u(0.003, 0.012), "moderate": u(0.008, 0.03), "heavy": u(0.03, 0.07),
             "faded": u(0.008, 0.03)}[degrade]
    threshold = u(0.55, 0.78)
    curve_floor = min(1.0, (1.0 - threshold) / 0.75 + 0.15) if scan == "bilevel" else u(0.55, 0.75)
    return _Look(
        style=style_name, scan=scan, ext=ext, channels=C, degrade=degrade,
        header=bool(st.header) if st.header is not None else bool(rng.random() < 0.25),
        log_track=bool(st.log_track) if st.log_track is not None else bool(rng.random() < 0.45),
        wrap=bool(st.wrap) if st.wrap is not None else bool(rng.random() < 0.2),
        paper=paper, light=light, lamp=u(-0.04, 0.04) * (lvl + 1) / 2,
        grain=[u(0.004, 0.012), u(0.008, 0.02), u(0.015, 0.035), u(0.01, 0.025)][lvl if degrade != "faded" else 3],
        fibre=u(0.004, 0.012) * (1 + lvl), mottle=u(0.0, 0.012) * (1 + lvl),
        fade_min=fade_min, fade=fade, curve_fade_floor=curve_floor,
        dropout={"light": u(0, 0.1), "moderate": u(0, 0.3), "heavy": u(0.1, 0.4), "faded": u(0.3, 0.7)}[degrade],
        bleed=_pick(rng, [0.0, u(0.1, 0.5), u(0.4, 0.9)], [0.4, 0.4, 0.2]) * (0.5 if lvl == 0 else 1.0),
        bleed_sigma=u(0.6, 1.4), blur=blur, noise=noise,
        speckle=[u(0, 5), u(5, 40), u(30, 150), u(5, 40)][lvl if degrade != "faded" else 3],
        holes=[u(0, 2), u(0, 10), u(5, 40), u(5, 40)][lvl if degrade != "faded" else 3],
        jpeg_quality=int(rng.integers(25, 90)), threshold=threshold,
        gamma=u(0.85, 1.2), grid_ink=grid_ink, grid_dark=grid_dark, print_ink=print_ink,
        curve_inks=curve_inks,
        stains=[u(0, 0.3), u(0, 1.0), u(0.5, 2.0), u(0.3, 1.5)][lvl if degrade != "faded" else 3],
        fold_period=u(1900, 2300), fold_phase=u(0, 1), fold_strength=u(0.0, 1.0) * (0.5 + 0.5 * lvl),
    )


# --------------------------------------------------------------------------------------
# plan: everything about one log except pixels

# curve families: (mnemonic1, mnemonic2, unit, left, right); both curves share the track scale
_LINEAR_FAMILIES = [
    ("GR", "CGR", "API", 0.0, 150.0), ("GR", "SGR", "API", 0.0, 200.0), ("GR", "GRD", "GAPI", 0.0, 100.0),
    ("NPHI", "DPHI", "V/V", 0.45, -0.15), ("NPHI", "PHIE", "PU", 45.0, -15.0),
    ("DT", "DTL", "US/F", 140.0, 40.0), ("CALI", "BS", "IN", 6.0, 16.0),
    ("RHOB", "RHOZ", "G/C3", 1.95, 2.95), ("SP", "SPBR", "MV", -80.0, 20.0),
    ("SN", "LN", "OHMM", 0.0, 20.0), ("MINV", "MNOR", "OHMM", 0.0, 10.0), ("PEF", "PE", "B/E", 0.0, 10.0),
]
_LOG_FAMILIES = [("ILD", "ILM"), ("LLD", "LLS"), ("RT", "RXO"), ("ILD", "SFLU"), ("AT90", "AT10"),
                 ("RD", "RS"), ("MSFL", "LLS")]
_LOG_LEFTS = (0.2, 0.2, 1.0, 2.0, 0.1, 0.5)


@dataclass
class _Curve:
    cls: int
    mnemonic: str
    style: str                 # solid | dashed | dotted
    width: float
    dash: float
    gap: float
    ink: np.ndarray
    ys: np.ndarray             # sample rows (page coordinates), increasing
    frac: np.ndarray           # unwrapped position in track widths at ys
    phase: float
    # filled by _curve_geometry
    segs: np.ndarray | None = None   # (n, 4) y0, x0, y1, x1 in scan coordinates, pen down
    seg_lo: np.ndarray | None = None  # min row of each segment (for window selection)
    seg_hi: np.ndarray | None = None
    wraps: int = 0


@dataclass
class _Track:
    x0: float
    x1: float
    scale: str                 # linear | log
    left: float
    right: float
    unit: str
    decades: int
    vlines: np.ndarray         # (n, 3) x, width, darkness
    curves: list


@dataclass
class _Text:
    y: float
    x: float
    text: str
    size: int
    bold: bool
    dark: float
    layer: str = "print"
    stretch: float = 1.0


@dataclass
class _Plan:
    look: _Look
    H: int
    W: int
    r_lo: int                  # page rows the plan describes (curves, items)
    r_hi: int
    header_rows: int
    log_top: int
    log_bottom: int
    tracks: list
    depth_col: tuple           # (x0, x1) or None
    borders: list              # vertical borders (x, width, dark)
    hborders: list             # horizontal borders (y, width, dark, x0, x1)
    depth: dict                # unit, top_depth, rows_per_unit, line_every (units), med, heavy, num_every
    hline_style: tuple         # (width, dark) for light, medium, heavy
    grid_in_depth: bool
    tick_len: float
    texts: list
    rects: list                # axis-aligned lines (y0, x0, y1, x1, width, dark, layer)
    hatches: list              # (y0, y1, x0, x1, kind, spacing, width, dark)
    strokes: list              # background free-hand strokes: (segs, width, dark, layer)
    stamps: list               # (y, x, patch, dark)
    stains: list               # (cy, cx, ry, rx, strength, shape coeffs)
    theta: float               # skew (radians)
    rc: float                  # rotation centre (row, col)
    cc: float
    note_ink: np.ndarray = None
    stamp_ink: np.ndarray = None


def _layout_columns(rng, W: int, n_tracks: int):
    u = rng.uniform
    ml, mr = W * u(0.01, 0.06), W * u(0.01, 0.06)
    inner = W - ml - mr
    depth_w = float(np.clip(inner * u(0.07, 0.13), 40, 200))
    if n_tracks == 1:
        order = _pick(rng, [["T", "D"], ["D", "T"]])
    elif n_tracks == 2:
        order = _pick(rng, [["T", "D", "T"], ["D", "T", "T"]], [0.7, 0.3])
    else:
        order = _pick(rng, [["T", "D", "T", "T"], ["D", "T", "T", "T"]], [0.85, 0.15])
    weights = np.array([u(0.8, 1.25) for _ in range(n_tracks)])
    widths = (inner - depth_w) * weights / weights.sum()
    cols, x, ti = [], ml, 0
    for kind in order:
        w = depth_w if kind == "D" else widths[ti]
        if kind == "T":
            ti += 1
        cols.append((kind, x, x + w))
        x += w
    return cols


def _vgrid(rng, x0, x1, scale, decades, look):
    """Vertical grid lines inside a track: (n, 3) x, width, darkness."""
    u = rng.uniform
    wl, dl = u(0.7, 1.6), look.grid_dark
    wh, dh = wl + u(0.4, 1.8), min(1.0, look.grid_dark + u(0.05, 0.3))
    lines = []
    if scale == "log":
        for j in range(decades):
            for k in range(1, 10):
                f = (j + math.log10(k)) / decades
                if k == 1:
                    if j > 0:
                        lines.append((f, wh, dh))
                else:
                    lines.append((f, wl, dl))
    else:
        n = int(_pick(rng, [4, 5, 10, 10, 10, 20]))
        if n == 20 and (x1 - x0) < 300:
            n = 10
        heavy = 5 if n in (10, 20) and rng.random() < 0.7 else 0
        centre = rng.random() < 0.3
        for k in range(1, n):
            f = k / n
            is_heavy = (heavy and k % heavy == 0) or (centre and 2 * k == n)
            lines.append((f, wh if is_heavy else wl, dh if is_heavy else dl))
    arr = np.array(lines, np.float32).reshape(-1, 3)
    arr[:, 0] = x0 + arr[:, 0] * (x1 - x0)
    return arr


def _geology(rng, r_lo: float, r_hi: float):
    """Beds over rows [r_lo, r_hi): boundaries, transition half-widths, latent values (n_beds, 4)."""
    mean = math.exp(rng.uniform(math.log(12), math.log(150)))
    bounds = [r_lo - rng.uniform(0, mean) - 2]
    while bounds[-1] < r_hi + 2:
        bounds.append(bounds[-1] + max(3.0, rng.gamma(1.3, mean / 1.3)))
    b = np.array(bounds)
    n = len(b) + 1
    # lithology mixture: shale, sand, carbonate, plus a smooth random walk
    lith = rng.choice(3, n, p=[0.45, 0.35, 0.2])
    centres = np.array([[0.8, 0.3, 0.6], [0.25, 0.7, 0.3], [0.1, 0.2, 0.9]])
    lat = centres[lith] + rng.normal(0, 0.12, (n, 3))
    walk = np.cumsum(rng.normal(0, 0.08, n))
    walk -= walk.mean()
    lat = np.concatenate([lat, walk[:, None]], axis=1)
    thick = np.diff(b, prepend=b[0] - mean)
    half = np.minimum(rng.choice([0.0, 0.5, 1.5, 4.0, 8.0], len(b), p=[0.3, 0.25, 0.2, 0.15, 0.1]),
                      0.4 * np.minimum(thick, np.append(thick[1:], thick[-1])))
    return b, half, lat


def _bed_values(y: np.ndarray, b: np.ndarray, half: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-bed values v (len(b)+1) evaluated at rows y, with ramps at the boundaries."""
    k = np.searchsorted(b, y)                       # bed index: b[k-1] <= y < b[k]
    kb = np.clip(k, 1, len(b) - 1)
    # nearest boundary: b[kb-1] or b[kb]
    use_upper = np.abs(y - b[kb - 1]) < np.abs(y - b[np.clip(kb, 0, len(b) - 1)])
    j = np.where(use_upper, kb - 1, kb)             # boundary index
    j = np.clip(j, 0, len(b) - 1)
    t = (y - b[j]) / np.maximum(half[j], 1e-6)
    w = np.clip(0.5 + 0.5 * t, 0.0, 1.0)
    w = np.where(half[j] <= 1e-6, (y >= b[j]).astype(float), w)
    return v[j] + (v[j + 1] - v[j]) * w


@functools.lru_cache(maxsize=512)
def _gauss_kernel(sigma10: int) -> np.ndarray:
    sigma = sigma10 / 10.0
    r = max(1, int(3 * sigma + 0.5))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


def _smooth_noise(rng, n: int, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise of unit variance (n samples)."""
    if sigma <= 0.3:
        return rng.standard_normal(n)
    k = _gauss_kernel(int(round(sigma * 10)))
    x = np.convolve(rng.standard_normal(n + len(k) - 1), k, mode="valid")
    return x / (np.sqrt(np.sum(k * k)))


def _curve_fracs(rng, ys, geo, n_curves, wrap: bool, step: float):
    """Unwrapped fractional positions of the curves of one track at rows ys."""
    b, half, lat = geo
    n = len(ys)
    out = []
    base = rng.uniform(0.2, 0.6)
    amp = rng.uniform(0.2, 0.55) * (1 if rng.random() < 0.5 else -1)
    proj = rng.dirichlet([1, 1, 1, 0.5])
    k = np.clip(np.searchsorted(b, ys), 1, len(b) - 1)
    tpos = np.clip((ys - b[k - 1]) / np.maximum(b[k] - b[k - 1], 1.0), 0, 1)
    hot = None
    if wrap:
        # a few thick beds whose reading runs past the track edge (backup-style wrap-around);
        # both curves of the track go off scale there together
        nb = np.arange(len(b) + 1)
        in_range = (nb >= np.searchsorted(b, ys[0])) & (nb <= np.searchsorted(b, ys[-1]))
        cand = in_range & (np.diff(b, prepend=b[0], append=b[-1]) >= 25)
        per_row = rng.uniform(0.4, 3.0) / 1000.0
        p_hot = min(1.0, per_row * (ys[-1] - ys[0] + 1) / max(1, int(cand.sum())))
        hot = cand & (rng.random(len(b) + 1) < p_hot)
        if not hot.any() and cand.any():
            hot[rng.choice(np.nonzero(cand)[0])] = True
        up = rng.random() < 0.7
    first = None
    for ci in range(n_curves):
        if ci == 0:
            p, bs, am = proj, base, amp
        else:
            p = np.abs(proj + rng.normal(0, 0.25, 4))
            p /= p.sum()
            bs = base + rng.normal(0, 0.08)
            am = amp * rng.uniform(0.6, 1.3)
        bed = lat @ p + rng.normal(0, 0.06, len(lat))      # each curve's own per-bed response
        level = bs + am * (bed - 0.45)                       # per-bed level in track widths
        f = _bed_values(ys, b, half, level)
        # gradual changes inside some beds (fining-upward sands, cleaning-upward shales)
        grad = np.where(rng.random(len(b) + 1) < 0.4, rng.normal(0, 0.12, len(b) + 1), 0.0)
        f += grad[k] * (tpos - 0.5) * abs(am) * 2
        # smooth trend
        for fy, _, ph, a in _sinus_components(rng, 2, 500, 6000, rng.uniform(0.01, 0.08)):
            f += a * np.sin(2 * np.pi * ys * fy + ph)
        # fine wiggle (a few pixels) and a little medium-scale noise
        f += rng.uniform(0.001, 0.008) * _smooth_noise(rng, n, rng.uniform(0.5, 2.0) / step)
        f += rng.uniform(0.0, 0.018) * _smooth_noise(rng, n, rng.uniform(4, 15) / step)
        # spikes: one or two samples far off -> near-horizontal excursions
        n_sp = rng.poisson(n * step / rng.uniform(600, 4000))
        for a in rng.integers(0, n, n_sp):
            ln = int(rng.integers(1, 3))
            f[a:a + ln] += (1 if rng.random() < 0.5 else -1) * rng.uniform(0.05, 0.2) * (1 + 2 * (rng.random() < 0.25))
        # off-scale readings are pinned at the track edge (touching the border)
        np.clip(f, 0.0, 1.0, out=f)
        if ci == 1 and first is not None and rng.random() < 0.5:
            # make the pair cross often: pull towards the first curve
            f = first + (f - first) * rng.uniform(0.45, 0.9)
        if ci == 0:
            first = f.copy()
        if hot is not None:
            target = (rng.uniform(1.12, 1.75, len(level)) if up else rng.uniform(-0.75, -0.12, len(level)))
            f = f + _bed_values(ys, b, half, np.where(hot, target - np.clip(level, 0, 1), 0.0))
        out.append(f.astype(np.float64))
    return out


def _frac_to_value(frac, track: _Track):
    if track.scale == "log":
        lo, hi = math.log10(track.left), math.log10(track.right)
        return np.power(10.0, lo + frac * (hi - lo))
    return track.left + frac * (track.right - track.left)


def _rotate(plan: _Plan, y, x):
    """Page coordinates -> scan coordinates (skew about (rc, cc))."""
    if plan.theta == 0.0:
        return y, x
    s, c = math.sin(plan.theta), math.cos(plan.theta)
    dy, dx = y - plan.rc, x - plan.cc
    return plan.rc + dx * s + dy * c, plan.cc + dx * c - dy * s


def _curve_geometry(plan: _Plan, track: _Track, cv: _Curve) -> None:
    """Pen path of a curve in scan coordinates: wrap split, dash split, rotation."""
    ys, fr = cv.ys, cv.frac.copy()
    fr[np.abs(fr - np.round(fr)) < 1e-7] += 2e-7
    n = len(ys)
    k = np.floor(fr).astype(np.int64)
    dk = np.diff(k)
    cnt = np.abs(dk)
    total = int(cnt.sum())
    cv.wraps = total
    tw = track.x1 - track.x0
    if total:
        pair = np.repeat(np.arange(n - 1), cnt)
        starts = np.cumsum(cnt) - cnt
        offs = np.arange(total) - np.repeat(starts, cnt)
        up = dk[pair] > 0
        m = np.where(up, k[pair] + 1 + offs, k[pair] - offs)
        f = (m - fr[pair]) / (fr[pair + 1] - fr[pair])
        yc = ys[pair] + f * (ys[pair + 1] - ys[pair])
        key = np.concatenate([np.arange(n, dtype=float), pair + f, pair + f])
        sub = np.concatenate([np.full(n, 2), np.zeros(total, int), np.ones(total, int)])
        yy = np.concatenate([ys, yc, yc])
        loc = np.concatenate([fr - k, np.where(up, 1.0, 0.0), np.where(up, 0.0, 1.0)])
        is_start = np.concatenate([np.zeros(n, bool), np.zeros(total, bool), np.ones(total, bool)])
        order = np.lexsort((sub, key))
        yy, loc, is_start = yy[order], loc[order], is_start[order]
        piece = np.cumsum(is_start)
    else:
        yy, loc, piece = ys.astype(float), fr - k, np.zeros(n, int)
    xx = track.x0 + loc * tw
    down = piece[1:] == piece[:-1]
    y0, x0, y1, x1 = yy[:-1][down], xx[:-1][down], yy[1:][down], xx[1:][down]
    if cv.style != "solid":
        y0, x0, y1, x1 = _dash_split(y0, x0, y1, x1, cv.dash, cv.gap + cv.width, cv.phase)
    ry0, rx0 = _rotate(plan, y0, x0)
    ry1, rx1 = _rotate(plan, y1, x1)
    cv.segs = np.stack([ry0, rx0, ry1, rx1], axis=1).astype(np.float64)
    cv.seg_lo = np.minimum(ry0, ry1)
    cv.seg_hi = np.maximum(ry0, ry1)


def _dash_split(y0, x0, y1, x1, dash: float, gap: float, phase: float):
    """Keep the parts of a polyline (segments in order) that fall on the dashes.

    The pattern runs along the arc length: pen down for ``dash`` px of centre
    line, up for ``gap`` px (``gap`` already includes the round caps).
    """
    L = np.hypot(y1 - y0, x1 - x0)
    keep = L > 0
    y0, x0, y1, x1, L = y0[keep], x0[keep], y1[keep], x1[keep], L[keep]
    S1 = np.cumsum(L)
    S0 = S1 - L
    P = dash + gap
    n_lo = np.ceil((S0 - phase - dash) / P).astype(np.int64)
    n_hi = np.floor((S1 - phase) / P).astype(np.int64)
    cnt = np.maximum(0, n_hi - n_lo + 1)
    total = int(cnt.sum())
    seg = np.repeat(np.arange(len(L)), cnt)
    nn = n_lo[seg] + np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    a = np.maximum(S0[seg], nn * P + phase)
    b = np.minimum(S1[seg], nn * P + phase + dash)
    ok = b >= a
    seg, a, b = seg[ok], a[ok], b[ok]
    ta = (a - S0[seg]) / L[seg]
    tb = (b - S0[seg]) / L[seg]
    dy, dx = y1[seg] - y0[seg], x1[seg] - x0[seg]
    return y0[seg] + ta * dy, x0[seg] + ta * dx, y0[seg] + tb * dy, x0[seg] + tb * dx


def _make_plan(rng: np.random.Generator, look: _Look, H: int, W: int,
               r_lo: int, r_hi: int, *, rc: float | None = None, cc: float | None = None,
               pick_cols=None, force_wrap=None) -> _Plan:
    """Decide one log of H x W px; curve data and items only for page rows [r_lo, r_hi).

    ``pick_cols(cols)``: told the page's columns, returns the column range the
    curves are needed for; ``force_wrap(track_index)``: True makes that
    track's curves run off scale in a few beds (wrap-around).
    """
    u = rng.uniform
    # header block
    header_rows = 0
    if look.header:
        header_rows = int(np.clip(H * u(0.06, 0.3), 160, 900)) if H >= 800 else 0
    log_top = header_rows
    log_bottom = H - 1
    n_tracks = int(_pick(rng, [1, 2, 3], [0.05, 0.4, 0.55] if W >= 1100 else
                         [0.2, 0.45, 0.35] if W >= 800 else [0.4, 0.5, 0.1]))
    cols = _layout_columns(rng, W, n_tracks)
    cols_needed = pick_cols(cols) if pick_cols is not None else None

    # depth scale
    unit = _pick(rng, ["ft", "m"], [0.7, 0.3])
    line_px = u(6, 26)                             # spacing of light depth lines, px
    line_every = float(_pick(rng, [1, 2, 5] if unit == "ft" else [0.5, 1, 2], [0.4, 0.45, 0.15]))
    rows_per_unit = line_px / line_every
    med = int(_pick(rng, [5, 5, 0]))
    heavy = int(_pick(rng, [10, 10, 25, 5] if med else [5, 10], [0.5, 0.2, 0.1, 0.2] if med else None))
    if med and heavy % med:
        med = 0
    num_every = heavy * int(_pick(rng, [1, 1, 2]))
    top_depth = float(rng.integers(1, 400) * 25 * (1 if unit == "ft" else 0.3))
    top_depth = round(top_depth / line_every) * line_every
    depth = {"unit": unit, "top_depth": top_depth, "rows_per_unit": rows_per_unit,
             "line_every": line_every, "med": med, "heavy": heavy, "num_every": num_every,
             "num_size": int(np.clip(rows_per_unit * line_every * heavy * u(0.15, 0.35), 12, 30))}
    hline_style = ((u(0.7, 1.5), look.grid_dark), (u(1.2, 2.4), min(1.0, look.grid_dark + 0.15)),
                   (u(1.8, 3.8), min(1.0, look.grid_dark + u(0.1, 0.4))))

    # skew: up to ~1 degree, less on long strips (drift <= ~25 px over the height)
    theta = 0.0
    if rng.random() < 0.65:
        lim = min(math.radians(1.0), math.atan(25.0 / max(H, 1)))
        theta = float(u(-1, 1) * lim)

    plan = _Plan(look=look, H=H, W=W, r_lo=r_lo, r_hi=r_hi, header_rows=header_rows,
                 log_top=log_top, log_bottom=log_bottom, tracks=[], depth_col=None, borders=[],
                 hborders=[], depth=depth, hline_style=hline_style,
                 grid_in_depth=bool(rng.random() < 0.25), tick_len=u(4, 16), texts=[], rects=[],
                 hatches=[], strokes=[], stamps=[], stains=[], theta=theta,
                 rc=H / 2 if rc is None else rc, cc=W / 2 if cc is None else cc)
    if look.channels == 3:
        plan.note_ink = np.array(_COLOR_INKS[_pick(rng, ["blue", "black", "red"], [3, 2, 1])], np.float32)
        plan.stamp_ink = np.array(_COLOR_INKS[_pick(rng, ["red", "purple", "blue"])], np.float32)
    else:
        plan.note_ink = np.array([u(0.05, 0.4)], np.float32)
        plan.stamp_ink = np.array([u(0.2, 0.5)], np.float32)

    # borders
    bw, bd = u(1.8, 4.5), min(1.0, u(0.85, 1.0))
    edges = sorted({c[1] for c in cols} | {c[2] for c in cols})
    for i, x in enumerate(edges):
        outer = i in (0, len(edges) - 1)
        plan.borders.append((x, bw + (u(0, 1.5) if outer else 0.0), bd))
    if header_rows:
        plan.hborders.append((float(log_top), bw, bd, edges[0], edges[-1]))

    # geology shared by all curves of the log
    step = float(_pick(rng, [1, 2, 3, 4], [0.3, 0.35, 0.2, 0.15]))
    geo = _geology(rng, max(r_lo, log_top) - 8, r_hi + 8)
    slot = 0
    wrap_track = int(rng.integers(n_tracks))
    for kind, cx0, cx1 in cols:
        if kind == "D":
            plan.depth_col = (cx0, cx1)
            continue
        ti = len(plan.tracks)
        is_log = (look.log_track and (ti > 0 or n_tracks == 1 or rng.random() < 0.3)) or \
            (not look.log_track and ti > 0 and rng.random() < 0.15)
        if is_log and (cx1 - cx0) < 150:
            is_log = False
        if is_log:
            decades = int(_pick(rng, [2, 3, 4], [0.3, 0.4, 0.3]))
            m1, m2 = _pick(rng, _LOG_FAMILIES)
            left = float(_pick(rng, _LOG_LEFTS))
            tr = _Track(cx0, cx1, "log", left, left * 10 ** decades, "OHMM", decades,
                        np.zeros((0, 3), np.float32), [])
        else:
            m1, m2, unit_, left, right = _pick(rng, _LINEAR_FAMILIES)
            tr = _Track(cx0, cx1, "linear", left, right, unit_, 0, np.zeros((0, 3), np.float32), [])
        tr.vlines = _vgrid(rng, cx0, cx1, tr.scale, tr.decades, look)
        has2 = rng.random() < 0.8
        n_c = 2 if has2 else 1
        want = cols_needed is None or (cx1 + 40 >= cols_needed[0] and cx0 - 40 <= cols_needed[1])
        wrap = (look.wrap and (ti == wrap_track or rng.random() < 0.5)) or (not look.wrap and rng.random() < 0.06)
        if force_wrap is not None and force_wrap(ti):
            wrap = True
        # rows where the curves exist
        c_top = log_top + (0 if rng.random() < 0.6 else u(0, 400))
        c_bot = log_bottom - (0 if rng.random() < 0.7 else u(0, 400))
        a = max(c_top, r_lo - 4)
        b_ = min(c_bot, r_hi + 4)
        for ci in range(n_c):
            cls = CURVE1 if ci == 0 else CURVE2
            if cls == CURVE1:
                sty = "solid"
                width = float(_pick(rng, [u(1.0, 2.0), u(2.0, 3.5), u(3.5, 6.0)], [0.35, 0.45, 0.2]))
                dash = gap = 0.0
            else:
                sty = _pick(rng, ["dashed", "dotted"], [0.6, 0.4])
                if sty == "dashed":
                    width = float(_pick(rng, [u(1.0, 2.0), u(2.0, 3.5), u(3.5, 6.0)], [0.35, 0.45, 0.2]))
                    dash = float(_pick(rng, [u(6, 12), u(12, 30)], [0.5, 0.5]))
                    gap = u(2, 15)
                else:
                    width = float(_pick(rng, [u(2.0, 3.0), u(3.0, 6.0)], [0.6, 0.4]))
                    dash = u(0.0, 2.5)
                    gap = u(2, 10)
            if look.scan == "bilevel":
                width = max(width, 1.4)     # a thinner pen line breaks up in a 1-bit scan
            ink = look.curve_inks[slot % len(look.curve_inks)]
            slot += 1
            cv = _Curve(cls, m1 if ci == 0 else m2, sty, width, dash, gap, ink,
                        np.zeros(0), np.zeros(0), u(0, 40))
            tr.curves.append(cv)
        if want and b_ > a + 1:
            ys = np.arange(math.floor(a / step) * step, b_ + step, step, dtype=np.float64)
            ys = ys[(ys >= a - step) & (ys <= b_ + step)]
            ys = np.clip(ys, c_top, c_bot)
            ys = np.unique(ys)
            if len(ys) >= 2:
                fr = _curve_fracs(rng, ys, geo, n_c, wrap, step)
                for ci, cv in enumerate(tr.curves):
                    ys_c, fr_c = ys, fr[ci]
                    if ci == 1 and rng.random() < 0.15:      # second curve logged over a shorter interval
                        cut = ys_c >= c_top + u(0, (c_bot - c_top) * 0.5)
                        ys_c, fr_c = ys_c[cut], fr_c[cut]
                    cv.ys, cv.frac = ys_c, fr_c
        plan.tracks.append(tr)

    _place_items(rng, plan)
    return plan


def _finalize_curves(plan: _Plan, c_lo: float = -math.inf, c_hi: float = math.inf) -> None:
    """Build the pen paths (scan coordinates) of the curves of tracks near columns [c_lo, c_hi]."""
    for tr in plan.tracks:
        if tr.x1 + 40 < c_lo or tr.x0 - 40 > c_hi:
            continue
        for cv in tr.curves:
            if len(cv.ys) >= 2:
                _curve_geometry(plan, tr, cv)


# --------------------------------------------------------------------------------------
# printed and hand-made items


_WORDS = ("COMPANY WELL FIELD COUNTY STATE LOCATION RUN DATE DEPTH DRILLER LOGGER BIT SIZE "
          "CASING MUD TYPE DENSITY VISCOSITY RM RMF RMC TEMP MAX REC ELEV KB DF GL PERMANENT "
          "DATUM SECTION TOWNSHIP RANGE API SERIAL NO WITNESSED BY RECORDED UNIT TRUCK "
          "SCALE CHANGES REMARKS FILE INTERVAL TOP BOTTOM SOURCE").split()
_TITLES = ("INDUCTION ELECTRICAL LOG", "GAMMA RAY NEUTRON", "DUAL INDUCTION FOCUSED LOG",
           "COMPENSATED DENSITY LOG", "SONIC LOG", "ELECTRICAL LOG", "MICROLOG",
           "DUAL LATEROLOG", "BOREHOLE COMPENSATED SONIC", "COMPENSATED NEUTRON FORMATION DENSITY")
_FIRMS = ("NORTHERN WIRELINE", "ATLAS LOGGING CO.", "PRAIRIE WELL SURVEYS", "CONTINENTAL LOGGING",
          "GULF WIRELINE SERVICES", "MIDLAND SURVEYS INC.", "BASIN LOGGING", "ROCKY MT. WIRELINE")
_NOTES = ("check", "rerun", "casing", "top", "pay", "wet", "good", "see below", "gas", "oil", "tight",
          "repeat", "shoe", "perfs", "core", "sand", "shale", "lime", "water", "test", "lost circ", "tie in")


def _rand_value(rng) -> str:
    kind = rng.integers(0, 5)
    if kind == 0:
        return f"{rng.integers(100, 15000)}"
    if kind == 1:
        return f"{rng.uniform(0.01, 20):.2f}"
    if kind == 2:
        return f"{rng.integers(1, 13)}-{rng.integers(1, 29)}-{rng.integers(50, 99)}"
    if kind == 3:
        return " ".join(_pick(rng, _WORDS) for _ in range(int(rng.integers(1, 3))))
    return f"{rng.integers(1, 40)} @ {rng.integers(50, 250)} F"


def _place_items(rng, plan: _Plan) -> None:
    u = rng.uniform
    look, W, H = plan.look, plan.W, plan.H
    edges = sorted({b[0] for b in plan.borders})
    lx0, lx1 = edges[0], edges[-1]
    lo, hi = plan.r_lo, plan.r_hi

    def wanted(y0, y1):
        return y1 >= lo - 50 and y0 <= hi + 50

    # header block
    if plan.header_rows and lo < plan.header_rows + 50:
        hr = plan.header_rows
        bw = u(1.5, 3.5)
        top = u(10, 40)
        plan.rects += [(top, lx0, top, lx1, bw, 1.0, "print"), (top, lx0, hr, lx0, bw, 1.0, "print"),
                       (top, lx1, hr, lx1, bw, 1.0, "print")]
        y = top + u(12, 30)
        size = int(u(26, 44))
        plan.texts.append(_Text(y, lx0 + u(20, 80), _pick(rng, _FIRMS), size, True, 1.0, stretch=u(0.9, 1.3)))
        y += size * 1.4
        size2 = int(u(18, 30))
        plan.texts.append(_Text(y, lx0 + u(20, 200), _pick(rng, _TITLES), size2, bool(rng.random() < 0.5), 1.0))
        y += size2 * 1.6
        # key-value lines and a boxed table
        fsize = int(u(11, 17))
        table_top = y
        n_cols = int(rng.integers(2, 5))
        row_h = fsize * u(1.6, 2.2)
        avail = hr - u(60, 140) - table_top
        n_rows = int(max(0, avail // row_h))
        if n_rows > 0:
            xs = np.sort(np.concatenate([[lx0 + 10, lx1 - 10],
                                         lx0 + 10 + (lx1 - lx0 - 20) * np.sort(rng.uniform(0.15, 0.85, n_cols - 1))]))
            lw = u(0.8, 1.6)
            for r in range(n_rows + 1):
                yy = table_top + r * row_h
                plan.rects.append((yy, xs[0], yy, xs[-1], lw, 0.9, "print"))
            for x in xs:
                plan.rects.append((table_top, x, table_top + n_rows * row_h, x, lw, 0.9, "print"))
            for r in range(n_rows):
                for c in range(n_cols):
                    if rng.random() < 0.85:
                        txt = _pick(rng, _WORDS) + " " + _rand_value(rng)
                        fit = int((xs[c + 1] - xs[c] - 14) / (fsize * 0.62))
                        txt = txt[:max(0, fit)].rstrip()
                        if txt:
                            plan.texts.append(_Text(table_top + r * row_h + (row_h - fsize) / 2,
                                                    xs[c] + u(3, 8), txt, fsize, False, 0.95))
        # track headings: curve names and scales just above the log
        head_top = hr - u(45, 90)
        plan.rects.append((head_top, lx0, head_top, lx1, bw * 0.7, 1.0, "print"))
        for tr in plan.tracks:
            for ci, cv in enumerate(tr.curves):
                yy = head_top + 6 + ci * (hr - head_top) / 2.2
                s = int(u(10, 15))
                name = f"{cv.mnemonic} ({tr.unit})"
                plan.texts.append(_Text(yy, (tr.x0 + tr.x1) / 2 - len(name) * s * 0.3, name, s, False, 1.0))
                fmt = (lambda v: f"{v:g}")
                plan.texts.append(_Text(yy, tr.x0 + 4, fmt(tr.left), s, False, 1.0))
                plan.texts.append(_Text(yy, tr.x1 - 4 - len(fmt(tr.right)) * s * 0.6, fmt(tr.right), s, False, 1.0))
                if rng.random() < 0.6:
                    # legend sample of the line style (printed, background)
                    ly = yy + s * 1.4
                    lx = tr.x0 + (tr.x1 - tr.x0) * 0.3
                    segs = np.array([[ly, lx, ly, lx + (tr.x1 - tr.x0) * 0.4]])
                    if cv.style != "solid":
                        segs = np.stack(_dash_split(segs[:, 0], segs[:, 1], segs[:, 2], segs[:, 3],
                                                    cv.dash, cv.gap + cv.width, 0.0), axis=1)
                    plan.strokes.append((segs, cv.width, 0.95, "print"))

    # depth numbers
    d = plan.depth
    k = d["rows_per_unit"]
    step_units = d["line_every"] * d["num_every"]
    if plan.depth_col is not None:
        dx0, dx1 = plan.depth_col
        m0 = math.floor((d["top_depth"] + (max(lo, plan.log_top) - 60 - plan.log_top) / k) / step_units)
        m1 = math.ceil((d["top_depth"] + (hi + 60 - plan.log_top) / k) / step_units)
        n_dig = len(f"{d['top_depth'] + (plan.log_bottom - plan.log_top) / k:.0f}")
        size = int(min(d["num_size"], max(9, (dx1 - dx0 - 6) / (0.6 * n_dig))))
        for m in range(m0, m1 + 1):
            depth = m * step_units
            y = plan.log_top + (depth - d["top_depth"]) * k
            if y < plan.log_top + 2 or y > plan.log_bottom:
                continue
            txt = f"{depth:g}"
            tw = len(txt) * size * 0.55
            plan.texts.append(_Text(y - size * 0.55, (dx0 + dx1) / 2 - tw / 2, txt, size, False, 1.0))

    area = (hi - lo) * W / 1e6
    # hatched intervals
    for _ in range(rng.poisson(area * 0.6)):
        y0 = u(lo, hi)
        y1 = y0 + u(15, 250)
        if y0 < plan.log_top:
            continue
        if plan.depth_col is not None and rng.random() < 0.4:
            x0, x1 = plan.depth_col
            x0, x1 = x0 + (x1 - x0) * u(0, 0.3), x1 - (x1 - x0) * u(0, 0.3)
        else:
            tr = plan.tracks[int(rng.integers(len(plan.tracks)))]
            tw = tr.x1 - tr.x0
            x0 = tr.x0 + tw * u(0, 0.7)
            x1 = min(tr.x1, x0 + tw * u(0.08, 0.4))
        plan.hatches.append((y0, y1, x0, x1, _pick(rng, ["diag", "back", "cross", "dots"], [3, 2, 1, 1]),
                             u(4, 12), u(0.7, 1.6), u(0.4, 0.95)))
    # handwritten notes
    for _ in range(rng.poisson(area * 0.5)):
        y = u(lo, hi)
        x = u(0, W - 60)
        plan.strokes += _handwriting(rng, y, x, _pick(rng, _NOTES))
    # stamps
    for _ in range(rng.poisson(area * 0.12 + (0.6 if plan.header_rows and lo < plan.header_rows else 0))):
        y = u(lo, hi) if not plan.header_rows else u(0, max(plan.header_rows, 200))
        if not wanted(y, y + 200):
            continue
        plan.stamps.append((y, u(0, W - 150), _stamp_patch(rng), u(0.5, 0.95)))
    # stains
    for _ in range(rng.poisson(area * look.stains)):
        r = math.exp(u(math.log(15), math.log(250)))
        plan.stains.append((u(lo - r, hi + r), u(-r, W + r), r * u(0.6, 1.4), r * u(0.6, 1.4),
                            u(0.03, 0.15), rng.normal(0, 0.12, 6), rng.uniform(0, 2 * np.pi, 6)))


# cursive letter shapes: control points (x in letter widths, y in x-heights, up is positive)
_LETTERS = {
    "e": [(0, .1), (.6, .45), (.8, .7), (.5, .95), (.2, .7), (.3, .3), (.7, .05), (1, .15)],
    "o": [(0, .3), (.3, .9), (.7, .95), (.95, .55), (.7, .05), (.3, .05), (.1, .4), (.4, .9), (1, .7)],
    "l": [(0, .1), (.5, 1.2), (.7, 2.0), (.45, 2.1), (.3, 1.6), (.4, .3), (.7, 0), (1, .2)],
    "n": [(0, 0), (.1, .9), (.15, 0), (.35, .8), (.6, .9), (.75, .5), (.8, 0), (1, .2)],
    "i": [(0, .1), (.4, .9), (.5, .1), (1, .3)],
    "a": [(.9, .7), (.5, .95), (.1, .6), (.3, 0), (.75, .3), (.85, .9), (.8, .1), (1, .15)],
    "g": [(.9, .7), (.5, .95), (.1, .6), (.3, .1), (.8, .5), (.85, .9), (.8, -.6), (.4, -.9), (.2, -.5), (1, .2)],
    "t": [(0, .1), (.45, 1.4), (.5, .1), (1, .3)],
    "r": [(0, .1), (.3, .9), (.5, .7), (.8, .9), (1, .2)],
    "s": [(0, .1), (.5, .95), (.3, .5), (.8, .3), (.4, 0), (1, .2)],
}


def _handwriting(rng, y: float, x: float, word: str):
    """Pen strokes of a short cursive-looking note (background)."""
    u = rng.uniform
    h = u(7, 16)                                  # x-height, px
    slant = u(0.1, 0.45)
    pts, extra = [], []
    ox = 0.0
    for ch in word.lower():
        if ch == " ":
            ox += u(0.6, 1.2)
            pts.append(None)
            continue
        shape = _LETTERS.get(ch) or _LETTERS[_pick(rng, list(_LETTERS))]
        wl = u(0.5, 0.9)
        hs = u(0.8, 1.2)
        for px, py in shape:
            pts.append((ox + px * wl, py * hs))
        if ch == "i":
            extra.append([(ox + 0.55 * wl, 1.6), (ox + 0.6 * wl, 1.7)])
        if ch == "t":
            extra.append([(ox + 0.1 * wl, 0.95), (ox + 0.9 * wl, 1.0)])
        ox += wl
    strokes, cur = [], []
    for p_ in pts + [None]:
        if p_ is None:
            if len(cur) >= 2:
                strokes.append(cur)
            cur = []
        else:
            cur.append(p_)
    strokes += extra
    width, dark = u(1.1, 2.6), u(0.6, 1.0)
    out = []
    wobble = rng.normal(0, 0.04, 2)
    for st in strokes:
        cp = np.array(st, float)
        # dense resampling and smoothing turn control points into a pen path
        t = np.linspace(0, len(cp) - 1, max(8, len(cp) * 8))
        px = np.interp(t, np.arange(len(cp)), cp[:, 0])
        py = np.interp(t, np.arange(len(cp)), cp[:, 1])
        if len(cp) > 3:
            px = ndimage.gaussian_filter1d(px, 3.0, mode="nearest")
            py = ndimage.gaussian_filter1d(py, 3.0, mode="nearest")
        X = x + (px + slant * py) * h * 0.9 + wobble[0] * px * h
        Y = y - py * h + wobble[1] * px * h
        out.append((np.stack([Y[:-1], X[:-1], Y[1:], X[1:]], axis=1), width, dark, "note"))
    if rng.random() < 0.3:   # underline
        yy = y + h * 0.6
        out.append((np.array([[yy, x - 4, yy + u(-3, 3), x + ox * h * 0.9 + 6]]), width, dark, "note"))
    return out


@functools.lru_cache(maxsize=64)
def _font(size: int):
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _text_patch(text: str, size: int, bold: bool, stretch: float = 1.0) -> np.ndarray:
    """Coverage (0..1) of printed text, cropped to its ink."""
    from PIL import Image, ImageDraw
    font = _font(int(size))
    sw = 1 if bold else 0
    l, t, r, b = font.getbbox(text, stroke_width=sw)
    img = Image.new("L", (max(1, r - l + 2), max(1, b - t + 2)), 0)
    ImageDraw.Draw(img).text((1 - l, 1 - t), text, fill=255, font=font, stroke_width=sw, stroke_fill=255)
    if abs(stretch - 1.0) > 0.02:
        img = img.resize((max(1, int(img.width * stretch)), img.height), Image.BILINEAR)
    arr = np.asarray(img, np.float32) / 255.0
    arr.setflags(write=False)
    return arr


def _stamp_patch(rng) -> np.ndarray:
    """A rubber stamp: double box with a few words, slightly rotated, uneven ink."""
    from PIL import Image, ImageDraw
    u = rng.uniform
    lines = [_pick(rng, ["RECEIVED", "COPY", "FILED", "CONFIDENTIAL", "LOG LIBRARY", "ORIGINAL"]),
             f"{rng.integers(1, 29)} {_pick(rng, ['JAN', 'MAR', 'JUN', 'SEP', 'NOV'])} 19{rng.integers(55, 99)}"]
    size = int(u(14, 24))
    font = _font(size)
    wmax = max(font.getbbox(s)[2] for s in lines)
    w, h = int(wmax + 30), int(size * 1.5 * len(lines) + 24)
    img = Image.new("L", (w, h), 0)
    dr = ImageDraw.Draw(img)
    lw = int(u(2, 4))
    if rng.random() < 0.7:
        dr.rectangle([1, 1, w - 2, h - 2], outline=255, width=lw)
        dr.rectangle([5 + lw, 5 + lw, w - 6 - lw, h - 6 - lw], outline=255, width=1)
    else:
        dr.ellipse([1, 1, w - 2, h - 2], outline=255, width=lw)
    for i, s in enumerate(lines):
        dr.text((15, 12 + i * size * 1.5), s, fill=255, font=font)
    img = img.rotate(u(-12, 12), resample=Image.BILINEAR, expand=True)
    arr = np.asarray(img, np.float32) / 255.0
    tex = ndimage.gaussian_filter(rng.random(arr.shape).astype(np.float32), 1.5)
    tex = (tex - tex.min()) / max(1e-6, float(tex.max() - tex.min()))
    return arr * np.clip(0.4 + 1.2 * tex, 0, 1)


# --------------------------------------------------------------------------------------
# rasterisers


def _stroke(out: np.ndarray, oy: float, ox: float, segs: np.ndarray, width: float,
            scale: float = 1.0) -> None:
    """Draw segments (n, 4: y0, x0, y1, x1) as round-capped strokes into ``out``.

    ``out[r, c]`` is the window pixel whose centre sits at (oy + r, ox + c).
    Coverage = clip(width/2 + 0.5 - distance, 0, 1), combined by maximum (a
    pen path covering a pixel twice does not darken it twice).
    """
    if len(segs) == 0:
        return
    h, w = out.shape
    hw = width / 2.0
    pad = hw + 1.0
    y0, x0, y1, x1 = (segs[:, i] - (oy if i % 2 == 0 else ox) for i in range(4))
    rlo = np.maximum(np.floor(np.minimum(y0, y1) - pad), 0).astype(np.int64)
    rhi = np.minimum(np.ceil(np.maximum(y0, y1) + pad), h - 1).astype(np.int64)
    clo = np.maximum(np.floor(np.minimum(x0, x1) - pad), 0).astype(np.int64)
    chi = np.minimum(np.ceil(np.maximum(x0, x1) + pad), w - 1).astype(np.int64)
    bh, bw = rhi - rlo + 1, chi - clo + 1
    ok = (bh > 0) & (bw > 0)
    if not ok.any():
        return
    idx = np.nonzero(ok)[0]
    bh, bw, rlo, clo = bh[idx], bw[idx], rlo[idx], clo[idx]
    cnt = bh * bw
    total = int(cnt.sum())
    seg = np.repeat(idx, cnt)
    local = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    bwr = np.repeat(bw, cnt)
    rr = np.repeat(rlo, cnt) + local // bwr
    cc = np.repeat(clo, cnt) + local % bwr
    ay, ax = y0[seg], x0[seg]
    dy, dx = y1[seg] - ay, x1[seg] - ax
    py, px = rr - ay, cc - ax
    L2 = dy * dy + dx * dx
    t = np.where(L2 > 0, (py * dy + px * dx) / np.where(L2 > 0, L2, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    d = np.hypot(py - t * dy, px - t * dx)
    cov = np.clip(hw + 0.5 - d, 0.0, 1.0).astype(np.float32)
    keep = cov > 0
    if scale != 1.0:
        cov *= np.float32(scale)
    np.maximum.at(out.reshape(-1), (rr * w + cc)[keep], cov[keep])


def _line_profile(pos: np.ndarray, widths: np.ndarray, dark: np.ndarray, start: float, step: float,
                  n: int) -> np.ndarray:
    """Max over lines of anti-aliased coverage x darkness on the 1-D grid start + i * step."""
    out = np.zeros(n, np.float32)
    if len(pos) == 0 or n == 0:
        return out
    half = widths / 2.0 + 0.5
    i0 = np.clip(np.ceil((pos - half - start) / step), 0, n).astype(np.int64)
    i1 = np.clip(np.floor((pos + half - start) / step), -1, n - 1).astype(np.int64)
    cnt = np.maximum(0, i1 - i0 + 1)
    total = int(cnt.sum())
    if total == 0:
        return out
    li = np.repeat(np.arange(len(pos)), cnt)
    idx = np.repeat(i0, cnt) + np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    cov = np.clip(half[li] - np.abs(start + idx * step - pos[li]), 0.0, 1.0) * dark[li]
    np.maximum.at(out, idx, cov.astype(np.float32))
    return out


def _depth_lines(plan: _Plan, y0: float, y1: float):
    """Depth lines with page rows in [y0, y1]: rows, widths, darkness, kind (0 light, 1 med, 2 heavy)."""
    d = plan.depth
    k, L = d["rows_per_unit"], d["line_every"]
    a = max(y0, plan.log_top)
    b = min(y1, plan.log_bottom)
    if b < a:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, int)
    m0 = math.ceil((d["top_depth"] + (a - plan.log_top) / k) / L)
    m1 = math.floor((d["top_depth"] + (b - plan.log_top) / k) / L)
    m = np.arange(m0, m1 + 1)
    rows = plan.log_top + (m * L - d["top_depth"]) * k
    kind = np.zeros(len(m), int)
    if d["med"]:
        kind[m % d["med"] == 0] = 1
    kind[m % d["heavy"] == 0] = 2
    st = plan.hline_style
    widths = np.array([st[i][0] for i in range(3)])[kind]
    dark = np.array([st[i][1] for i in range(3)])[kind]
    return rows, widths, dark, kind


class _Frame:
    """A window of the scan and the page coordinates of its pixels.

    Skew rotates the page about (rc, cc); everything printed is drawn straight
    into scan coordinates (no resampling), so print and pen lines stay equally
    crisp. Without skew the page coordinates are the pixel indices and all
    profiles stay separable (1-D), which is the fast path.
    """

    def __init__(self, plan: _Plan, r0: int, r1: int, c0: int, c1: int):
        self.plan = plan
        self.r0, self.r1, self.c0, self.c1 = r0, r1, c0, c1
        self.h, self.w = r1 - r0, c1 - c0
        self.skew = plan.theta != 0.0
        self.s, self.c = math.sin(plan.theta), math.cos(plan.theta)
        rows = np.arange(r0, r1, dtype=np.float64)
        cols = np.arange(c0, c1, dtype=np.float64)
        if self.skew:
            rc, cc, s, c = plan.rc, plan.cc, self.s, self.c
            self.ys = ((rc + (rows - rc) * c)[:, None] - ((cols - cc) * s)[None, :]).astype(np.float32)
            self.xs = ((cc + (rows - rc) * s)[:, None] + ((cols - cc) * c)[None, :]).astype(np.float32)
        else:
            self.ys = rows.astype(np.float32)[:, None]
            self.xs = cols.astype(np.float32)[None, :]
        ys_c = [self._page(r, q)[0] for r in (r0, r1) for q in (c0, c1)]
        xs_c = [self._page(r, q)[1] for r in (r0, r1) for q in (c0, c1)]
        self.y_lo, self.y_hi = min(ys_c) - 1, max(ys_c) + 1
        self.x_lo, self.x_hi = min(xs_c) - 1, max(xs_c) + 1

    def _page(self, r, q):
        p = self.plan
        return (p.rc + (r - p.rc) * self.c - (q - p.cc) * self.s,
                p.cc + (r - p.rc) * self.s + (q - p.cc) * self.c)

    def rows_for(self, y_lo: float, y_hi: float) -> slice:
        """Window rows that can show page rows [y_lo, y_hi]."""
        p = self.plan
        ext = [(p.rc + (y - p.rc + (q - p.cc) * self.s) / self.c) for y in (y_lo, y_hi) for q in (self.c0, self.c1)]
        a = max(0, int(math.floor(min(ext))) - 1 - self.r0)
        b = min(self.h, int(math.ceil(max(ext))) + 2 - self.r0)
        return slice(a, max(a, b))

    def cols_for(self, x_lo: float, x_hi: float) -> slice:
        """Window columns that can show page columns [x_lo, x_hi]."""
        p = self.plan
        ext = [(p.cc + (x - p.cc - (r - p.rc) * self.s) / self.c) for x in (x_lo, x_hi) for r in (self.r0, self.r1)]
        a = max(0, int(math.floor(min(ext))) - 1 - self.c0)
        b = min(self.w, int(math.ceil(max(ext))) + 2 - self.c0)
        return slice(a, max(a, b))

    def Y(self, rs: slice, cs: slice) -> np.ndarray:
        return self.ys[rs, cs] if self.skew else self.ys[rs, :]

    def X(self, rs: slice, cs: slice) -> np.ndarray:
        return self.xs[rs, cs] if self.skew else self.xs[:, cs]


def _profile(pos, widths, dark, coords: np.ndarray) -> np.ndarray:
    """Anti-aliased line coverage x darkness at page coordinates of any shape."""
    pos, widths, dark = (np.asarray(v, np.float64).reshape(-1) for v in (pos, widths, dark))
    if coords.size == 0 or len(pos) == 0:
        return np.zeros(coords.shape, np.float32)
    lo, hi = float(coords.min()), float(coords.max())
    keep = (pos + widths / 2 + 1 >= lo) & (pos - widths / 2 - 1 <= hi)
    pos, widths, dark = pos[keep], widths[keep], dark[keep]
    if len(pos) == 0:
        return np.zeros(coords.shape, np.float32)
    if coords.ndim == 1 or min(coords.shape) == 1:    # separable: pixel indices, evaluate exactly
        return _line_profile(pos, widths, dark, float(coords.reshape(-1)[0]), 1.0,
                             coords.size).reshape(coords.shape)
    # 2-D (skewed): tabulate at 1/8 px and look up
    lut = _line_profile(pos, widths, dark, lo - 0.25, 0.125, int((hi - lo + 0.75) * 8) + 2)
    idx = ((coords - (lo - 0.25)) * 8.0 + 0.5).astype(np.int32)
    np.clip(idx, 0, len(lut) - 1, out=idx)
    return lut[idx]


def _put(layer: np.ndarray, rs: slice, cs: slice, val: np.ndarray) -> None:
    sub = layer[rs, cs]
    if sub.size:
        np.maximum(sub, np.broadcast_to(val, sub.shape), out=sub)


def _render_background(plan: _Plan, r0: int, r1: int, c0: int, c1: int) -> dict:
    """Printed and hand-made background, drawn in scan coordinates: darkness layers (h, w)."""
    fr = _Frame(plan, r0, r1, c0, c1)
    h, w = fr.h, fr.w
    grid = np.zeros((h, w), np.float32)
    prn = np.zeros((h, w), np.float32)
    layers = {"grid": grid, "print": prn}
    lt, lb = plan.log_top, plan.log_bottom
    if fr.y_hi >= lt and fr.y_lo <= lb:
        rs = fr.rows_for(max(lt, fr.y_lo), min(lb, fr.y_hi))
        hrows, hw_, hd, hk = _depth_lines(plan, max(lt, fr.y_lo) - 5, min(lb, fr.y_hi) + 5)
        for tr in plan.tracks:
            if tr.x1 < fr.x_lo or tr.x0 > fr.x_hi:
                continue
            cs = fr.cols_for(tr.x0, tr.x1)
            Y, X = fr.Y(rs, cs), fr.X(rs, cs)
            v = tr.vlines
            d = np.maximum(_profile(hrows, hw_, hd, Y), _profile(v[:, 0], v[:, 1], v[:, 2], X))
            inside = (X >= tr.x0) & (X <= tr.x1) & (Y >= lt) & (Y <= lb)
            _put(grid, rs, cs, d * inside)
        if plan.depth_col is not None and len(hrows):
            dx0, dx1 = plan.depth_col
            if dx1 >= fr.x_lo and dx0 <= fr.x_hi:
                cs = fr.cols_for(dx0, dx1)
                Y, X = fr.Y(rs, cs), fr.X(rs, cs)
                inside = (X >= dx0) & (X <= dx1) & (Y >= lt) & (Y <= lb)
                if plan.grid_in_depth:
                    heavy = hk == 2
                    _put(grid, rs, cs, _profile(hrows[heavy], hw_[heavy], hd[heavy], Y) * inside)
                # ticks at both edges, longer at medium and heavy lines
                for kind, scale in ((0, 1.0), (1, 1.6), (2, 2.4)):
                    sel = hk == kind
                    if not sel.any():
                        continue
                    py = _profile(hrows[sel], hw_[sel], hd[sel], Y)
                    tl = plan.tick_len * scale
                    near = (np.abs(X - dx0) <= tl) | (np.abs(X - dx1) <= tl)
                    _put(prn, rs, cs, py * (near & inside))
        # vertical borders over the log
        for x, bw, bd in plan.borders:
            if x + bw + 2 < fr.x_lo or x - bw - 2 > fr.x_hi:
                continue
            cs = fr.cols_for(x - bw / 2 - 1.5, x + bw / 2 + 1.5)
            Y, X = fr.Y(rs, cs), fr.X(rs, cs)
            _put(prn, rs, cs, _profile([x], [bw], [bd], X) * ((Y >= lt) & (Y <= lb)))
    for y, bw, bd, x0, x1 in plan.hborders:
        if y + bw + 2 < fr.y_lo or y - bw - 2 > fr.y_hi:
            continue
        rs, cs = fr.rows_for(y - bw / 2 - 1.5, y + bw / 2 + 1.5), fr.cols_for(x0, x1)
        Y, X = fr.Y(rs, cs), fr.X(rs, cs)
        _put(prn, rs, cs, _profile([y], [bw], [bd], Y) * ((X >= x0) & (X <= x1)))
    for (ya, xa, yb, xb, lw, dk, layer) in plan.rects:
        if max(ya, yb) + lw < fr.y_lo or min(ya, yb) - lw > fr.y_hi or \
                max(xa, xb) + lw < fr.x_lo or min(xa, xb) - lw > fr.x_hi:
            continue
        (ya, yb), (xa, xb) = zip(_rotate(plan, ya, xa), _rotate(plan, yb, xb))
        _stroke(layers[layer], r0, c0, np.array([[ya, xa, yb, xb]]), lw, dk)
    for hatch in plan.hatches:
        _hatch(grid, fr, *hatch)
    for t in plan.texts:
        if t.y > fr.y_hi or t.y + t.size * 1.5 < fr.y_lo or t.x > fr.x_hi or \
                t.x + len(t.text) * t.size * t.stretch < fr.x_lo:
            continue
        patch = _text_patch(t.text, t.size, t.bold, round(t.stretch, 2))
        ty, tx = _rotate(plan, t.y, t.x)
        _paste(layers.setdefault(t.layer, np.zeros((h, w), np.float32)), r0, c0, ty, tx, patch, t.dark)
    for segs, width, dk, layer in plan.strokes:
        if len(segs) == 0:
            continue
        if segs[:, [0, 2]].max() + width < fr.y_lo or segs[:, [0, 2]].min() - width > fr.y_hi or \
                segs[:, [1, 3]].max() + width < fr.x_lo or segs[:, [1, 3]].min() - width > fr.x_hi:
            continue
        ry0, rx0 = _rotate(plan, segs[:, 0], segs[:, 1])
        ry1, rx1 = _rotate(plan, segs[:, 2], segs[:, 3])
        if layer not in layers:
            layers[layer] = np.zeros((h, w), np.float32)
        _stroke(layers[layer], r0, c0, np.stack([ry0, rx0, ry1, rx1], axis=1), width, dk)
    for y, x, patch, dk in plan.stamps:
        if y + patch.shape[0] < fr.y_lo or y > fr.y_hi or x + patch.shape[1] < fr.x_lo or x > fr.x_hi:
            continue
        ty, tx = _rotate(plan, y, x)
        _paste(layers.setdefault("stamp", np.zeros((h, w), np.float32)), r0, c0, ty, tx, patch, dk)
    return layers


def _paste(layer: np.ndarray, r0: int, c0: int, y: float, x: float, patch: np.ndarray, dark: float) -> None:
    h, w = layer.shape
    y, x = int(round(y)) - r0, int(round(x)) - c0
    ph, pw = patch.shape
    ya, xa = max(0, y), max(0, x)
    yb, xb = min(h, y + ph), min(w, x + pw)
    if yb <= ya or xb <= xa:
        return
    sub = patch[ya - y:yb - y, xa - x:xb - x] * np.float32(dark)
    np.maximum(layer[ya:yb, xa:xb], sub, out=layer[ya:yb, xa:xb])


def _hatch(layer, fr: _Frame, y0, y1, x0, x1, kind, sp, lw, dk) -> None:
    """A hatched (or stippled) box over page rows [y0, y1], columns [x0, x1]."""
    if y1 < fr.y_lo or y0 > fr.y_hi or x1 < fr.x_lo or x0 > fr.x_hi:
        return
    rs, cs = fr.rows_for(y0, y1), fr.cols_for(x0, x1)
    rr, cc = fr.Y(rs, cs), fr.X(rs, cs)
    if rr.size == 0 or cc.size == 0:
        return
    if kind == "dots":
        gy = (rr % sp) - sp / 2
        gx = ((cc + (rr // sp) * sp / 2) % sp) - sp / 2
        d = np.sqrt(gy * gy + gx * gx)
        cov = np.clip(lw * 0.8 + 0.5 - d, 0, 1)
    else:
        def lines(sign):
            u_ = (cc + sign * rr) % sp
            d_ = np.minimum(u_, sp - u_) / math.sqrt(2)
            return np.clip(lw / 2 + 0.5 - d_, 0, 1)
        cov = lines(1) if kind == "diag" else lines(-1) if kind == "back" else np.maximum(lines(1), lines(-1))
    yin = (rr >= y0) & (rr <= y1)
    xin = (cc >= x0) & (cc <= x1)
    # the interval is boxed
    edge = (((np.abs(rr - y0) < 0.7) | (np.abs(rr - y1) < 0.7)) & xin) | \
        (((np.abs(cc - x0) < 0.7) | (np.abs(cc - x1) < 0.7)) & yin)
    _put(layer, rs, cs, (np.maximum(cov * (yin & xin), edge) * np.float32(dk)).astype(np.float32))


# --------------------------------------------------------------------------------------
# textures and paper


_TEX_H, _TEX_W = 1024, 2048


@functools.lru_cache(maxsize=8)
def _texture(kind: str) -> np.ndarray:
    """A fixed 1024 x 2048 noise texture (unit variance, tiles seamlessly), built once per process."""
    rng = np.random.default_rng({"grain": 11, "fibre": 12, "mottle": 13, "blotch": 14, "sensor": 15}[kind])
    x = rng.standard_normal((_TEX_H, _TEX_W)).astype(np.float32)
    sigma = {"grain": 0.0, "fibre": (0.8, 1.6), "mottle": 12.0, "blotch": 4.0, "sensor": 0.0}[kind]
    if sigma:
        x = ndimage.gaussian_filter(x, sigma, mode="wrap", truncate=3.0)
    x = (x - x.mean()) / x.std()
    x.setflags(write=False)
    return x


def _tex_crop(rng, kind: str, h: int, w: int) -> np.ndarray:
    """A random h x w window of a texture (a view when it fits)."""
    tex = _texture(kind)
    oy = int(rng.integers(0, _TEX_H - h + 1)) if h <= _TEX_H else int(rng.integers(0, _TEX_H))
    ox = int(rng.integers(0, _TEX_W - w + 1)) if w <= _TEX_W else int(rng.integers(0, _TEX_W))
    if h + oy <= _TEX_H and w + ox <= _TEX_W:
        return tex[oy:oy + h, ox:ox + w]
    return tex[np.ix_((np.arange(h) + oy) % _TEX_H, (np.arange(w) + ox) % _TEX_W)]


def _field(comps, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """sum_k a_k sin(2 pi (fy r + fx c) + phi) evaluated separably on a grid."""
    if not comps:
        return np.zeros((len(rows), len(cols)), np.float32)
    fy, fx, ph, a = (np.array(v, np.float64) for v in zip(*comps))
    A = 2 * np.pi * np.outer(rows, fy) + ph                 # (h, k)
    B = 2 * np.pi * np.outer(fx, cols)                       # (k, w)
    left = np.concatenate([a * np.sin(A), a * np.cos(A)], axis=1).astype(np.float32)
    right = np.concatenate([np.cos(B), np.sin(B)], axis=0).astype(np.float32)
    return left @ right


def _paper(plan: _Plan, rng, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Paper tone of a window: (h, w) grey or (h, w, 3) colour, 0..1."""
    look = plan.look
    h, w = r1 - r0, c1 - c0
    rows = np.arange(r0, r1, dtype=np.float64)
    cols = np.arange(c0, c1, dtype=np.float64)
    bright = _field(look.light, rows, cols)
    col_term = 1.0 + look.lamp * (cols / max(plan.W, 1) - 0.5)
    # fold lines: a crease every fan-fold page
    row_term = np.zeros(h)
    if look.fold_strength > 0.05:
        P = look.fold_period
        for k in range(math.floor((r0 - 30) / P - look.fold_phase), math.ceil((r1 + 30) / P - look.fold_phase) + 1):
            d = rows - (k + look.fold_phase) * P
            row_term += (-0.12 * np.exp(-(d / 1.2) ** 2) + 0.05 * np.exp(-((d - 6) / 8) ** 2)
                         - 0.04 * np.exp(-((d + 6) / 8) ** 2)) * look.fold_strength
    bright += (row_term[:, None] + col_term[None, :]).astype(np.float32)
    bright += np.float32(look.grain) * _tex_crop(rng, "grain", h, w)
    bright += np.float32(look.fibre) * _tex_crop(rng, "fibre", h, w)
    if look.mottle > 0.002:
        bright += np.float32(look.mottle) * _tex_crop(rng, "mottle", h, w)
    if look.channels == 1:
        img = bright * np.float32(look.paper[0])
    else:
        img = bright[:, :, None] * look.paper[None, None, :]
    for cy, cx, ry, rx, st, amps, phs in plan.stains:
        if cy + ry * 1.5 < r0 or cy - ry * 1.5 > r1 or cx + rx * 1.5 < c0 or cx - rx * 1.5 > c1:
            continue
        ya, yb = max(r0, int(cy - ry * 1.5)), min(r1, int(cy + ry * 1.5) + 1)
        xa, xb = max(c0, int(cx - rx * 1.5)), min(c1, int(cx + rx * 1.5) + 1)
        yy = (np.arange(ya, yb)[:, None] - cy) / ry
        xx = (np.arange(xa, xb)[None, :] - cx) / rx
        rho = np.sqrt(yy * yy + xx * xx)
        ang = np.arctan2(yy, xx)
        edge = 1.0 + sum(a * np.sin((i + 2) * ang + p) for i, (a, p) in enumerate(zip(amps, phs)))
        t = rho / edge
        inside = np.clip((1.0 - t) * 6, 0, 1)
        rim = np.exp(-((t - 0.97) / 0.05) ** 2)
        dark = (st * (0.6 * inside + 0.8 * rim)).astype(np.float32)
        sub = img[ya - r0:yb - r0, xa - c0:xb - c0]
        if look.channels == 1:
            sub *= 1.0 - dark
        else:   # tea-coloured: more blue absorbed
            sub *= 1.0 - dark[:, :, None] * np.array([0.9, 1.0, 1.35], np.float32)[None, None, :]
    return img


# --------------------------------------------------------------------------------------
# render a window of the scan


def _render_window(plan: _Plan, rng, r0: int, r1: int, c0: int, c1: int):
    """Render scan rows [r0, r1) x cols [c0, c1).

    Returns the image as float 0..1, (h, w) grey or (h, w, 3) colour, and the
    coverage (h, w) of the class-1 and class-2 pen strokes.
    """
    look = plan.look
    h, w = r1 - r0, c1 - c0
    C = look.channels
    shape = (h, w) if C == 1 else (h, w, 3)

    def ink_of(v):      # transmittance of an ink -> its absorbance (scalar or (3,))
        return np.float32(1.0 - v[0]) if C == 1 else (1.0 - v).astype(np.float32)

    def ex(a):          # (h, w) coverage -> broadcastable against the image
        return a if C == 1 else a[:, :, None]

    layers = _render_background(plan, r0, r1, c0, c1)
    inks = {"grid": look.grid_ink, "print": look.print_ink, "note": plan.note_ink, "stamp": plan.stamp_ink}

    # pens, in scan coordinates: transmittance of the curve ink
    cov = {CURVE1: np.zeros((h, w), np.float32), CURVE2: np.zeros((h, w), np.float32)}
    trans_c = np.ones(shape, np.float32)
    for tr in plan.tracks:
        for cv in tr.curves:
            if cv.segs is None or len(cv.segs) == 0:
                continue
            pad = cv.width + 2
            sel = (cv.seg_hi >= r0 - pad) & (cv.seg_lo <= r1 + pad)
            if not sel.any():
                continue
            segs = cv.segs[sel]
            xs = segs[:, [1, 3]]
            ca = max(c0, int(math.floor(xs.min() - pad)))
            cb = min(c1, int(math.ceil(xs.max() + pad)) + 1)
            if cb <= ca:
                continue
            one = np.zeros((h, cb - ca), np.float32)
            _stroke(one, r0, ca, segs, cv.width)
            sl = slice(ca - c0, cb - c0)
            np.maximum(cov[cv.cls][:, sl], one, out=cov[cv.cls][:, sl])
            trans_c[:, sl] *= 1.0 - ex(one) * ink_of(cv.ink)

    # print: transmittance of all printed / written layers
    trans_b = None
    for k, v in layers.items():
        if v.any():
            t = 1.0 - ex(v) * ink_of(inks[k])
            trans_b = t if trans_b is None else trans_b * t
    dark_b = np.zeros(shape, np.float32) if trans_b is None else 1.0 - trans_b
    dark_c = 1.0 - trans_c
    # fading and missing ink; the pens fade less than the print (a trace never fades
    # below what the scan can still show)
    if look.fade_min < 0.99:
        rows = np.arange(r0, r1, dtype=np.float64)
        cols = np.arange(c0, c1, dtype=np.float64)
        f = 0.5 + 0.5 * np.tanh(_field(look.fade, rows, cols) * 0.8)
        f = look.fade_min + (1 - look.fade_min) * f
        dark_b *= ex(f)
        dark_c *= ex(np.maximum(f, look.curve_fade_floor))
    if look.dropout > 0.01:
        # ink missing in patches: a smooth ramp of a blotchy texture, never a full hole
        tex = np.clip(_tex_crop(rng, "blotch", h, w) * 0.6 + 0.4 * _tex_crop(rng, "fibre", h, w) - 0.3, 0, 1.5)
        tex *= np.float32(look.dropout / 1.5)
        dark_b *= ex(1.0 - tex)
        dark_c *= ex(1.0 - 0.5 * tex)
    img = _paper(plan, rng, r0, r1, c0, c1)
    if look.bleed > 0.01:
        # ink spreading into the paper: a soft halo around every stroke
        dark = 1.0 - (1.0 - dark_b) * (1.0 - dark_c)
        halo = ndimage.gaussian_filter(dark, (look.bleed_sigma, look.bleed_sigma) + ((0,) if C == 3 else ()),
                                       truncate=3.0)
        img *= 1.0 - np.minimum(1.0, dark + look.bleed * halo)
    else:
        img *= (1.0 - dark_b) * (1.0 - dark_c)
    return img, cov[CURVE1], cov[CURVE2]


def _scan(plan: _Plan, rng, img: np.ndarray) -> np.ndarray:
    """Scanner: blur, noise, speckle; float image -> float image in 0..1."""
    look = plan.look
    h, w = img.shape[:2]
    if look.blur > 0.15:
        sig = (look.blur, look.blur) + ((0,) if img.ndim == 3 else ())
        img = ndimage.gaussian_filter(img, sig, truncate=3.0)
    n = _tex_crop(rng, "sensor", h, w) * np.float32(look.noise)
    img += n if img.ndim == 2 else n[:, :, None]
    area = h * w / 1e6
    paper = look.paper if img.ndim == 3 else look.paper[0]
    for count, val in ((rng.poisson(area * look.speckle), 0.15), (rng.poisson(area * look.holes), None)):
        if count:
            ys = rng.integers(0, h, count)
            xs = rng.integers(0, w, count)
            v = val if val is not None else paper
            img[ys, xs] = v
            big = rng.random(count) < 0.3
            img[np.minimum(ys[big] + 1, h - 1), xs[big]] = v
            img[ys[big], np.minimum(xs[big] + 1, w - 1)] = v
    np.clip(img, 0.0, 1.0, out=img)
    return img


def _to_uint8(plan: _Plan, img: np.ndarray) -> np.ndarray:
    look = plan.look
    if look.scan == "bilevel":
        g = img.mean(axis=2) if img.ndim == 3 else img
        return np.where(g >= look.threshold * float(look.paper.mean()), 255, 0).astype(np.uint8)
    out = (img * 255.0 + 0.5).astype(np.uint8)
    if abs(look.gamma - 1.0) > 0.02:
        out = _gamma_lut(round(look.gamma, 3))[out]
    return out


@functools.lru_cache(maxsize=256)
def _gamma_lut(gamma: float) -> np.ndarray:
    return np.round(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)


def _labels(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    a, b = c1 >= 0.5, c2 >= 0.5
    m = np.zeros(c1.shape, np.uint8)
    m[a] = CURVE1
    m[b] = CURVE2
    m[a & b] = IGNORE
    return m


def _jpeg(arr: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    from PIL import Image
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality), optimize=False)
    data = buf.getvalue()
    with Image.open(_io.BytesIO(data)) as im:
        out = np.asarray(im.convert("RGB" if arr.ndim == 3 else "L"), np.uint8)
    return out, data


# --------------------------------------------------------------------------------------
# public API


def _check_size(height, width) -> None:
    for name, v, hi in (("height", height, MAX_HEIGHT), ("width", width, MAX_WIDTH)):
        if v is not None and not (MIN_SIDE <= int(v) <= hi):
            raise ConfigError(f"{name} must be between {MIN_SIDE} and {hi} px, got {v}")


def _check_style(style) -> None:
    if style is not None and style not in STYLES:
        raise ConfigError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")


def _random_style(rng) -> str:
    names = list(STYLES)
    return _pick(rng, names, [STYLES[n].weight for n in names])


def _log_size(rng) -> tuple[int, int]:
    H = int(math.exp(rng.uniform(math.log(1500), math.log(5000))))
    W = int(rng.uniform(600, 1700))
    return H, W


def generate_log(seed: int, *, height: int | None = None, width: int | None = None,
                 style: str | None = None, progress=None) -> SynthLog:
    """Render one whole synthetic log with its truth (deterministic for a seed).

    ``height``/``width`` default to a random moderate size; whole logs up to
    about 1700 x 18000 px render in bands of rows, so memory stays bounded.
    ``style`` is a key of :data:`STYLES` (default: a random mix).
    """
    _check_size(height, width)
    _check_style(style)
    rng = np.random.default_rng([int(seed), 101])
    H0, W0 = _log_size(rng)
    H = int(height) if height is not None else H0
    W = int(width) if width is not None else W0
    style_name = style or _random_style(rng)
    look = _make_look(rng, style_name)
    plan = _make_plan(rng, look, H, W, 0, H)
    _finalize_curves(plan)
    C = look.channels
    image = np.empty((H, W, C) if C == 3 else (H, W), np.uint8)
    mask = np.empty((H, W), np.uint8)
    margin = 8
    n_bands = max(1, math.ceil(H / BAND_ROWS))
    for bi in range(n_bands):
        b0, b1 = bi * BAND_ROWS, min(H, (bi + 1) * BAND_ROWS)
        brng = np.random.default_rng([int(seed), 202, bi])
        ra, rb = max(0, b0 - margin), min(H, b1 + margin)
        img, c1, c2 = _render_window(plan, brng, ra, rb, 0, W)
        img = _scan(plan, brng, img)
        u8 = _to_uint8(plan, img)
        image[b0:b1] = u8[b0 - ra:b0 - ra + (b1 - b0)]
        mask[b0:b1] = _labels(c1, c2)[b0 - ra:b0 - ra + (b1 - b0)]
        if progress is not None:
            progress(bi + 1, n_bands)
    encoded = None
    if look.ext == "jpg":
        image, encoded = _jpeg(image, look.jpeg_quality)
    centerline, value = _truth_lines(plan)
    tracks = np.array([[_rotate(plan, plan.rc, tr.x0)[1], _rotate(plan, plan.rc, tr.x1)[1]]
                       for tr in plan.tracks], np.float32).reshape(-1, 2)
    meta = _meta(plan, int(seed))
    return SynthLog(image=image, mask=mask, centerline=centerline, value=value, tracks=tracks,
                    meta=meta, encoded=encoded)


def _truth_lines(plan: _Plan):
    H = plan.H
    n = len(plan.tracks)
    cl = np.full((n, 2, H), np.nan, np.float32)
    val = np.full((n, 2, H), np.nan, np.float32)
    r = np.arange(H, dtype=np.float64)
    s, c = math.sin(plan.theta), math.cos(plan.theta)
    for ti, tr in enumerate(plan.tracks):
        tw = tr.x1 - tr.x0
        for cv in tr.curves:
            if len(cv.ys) < 2:
                continue
            fr_n = cv.frac.copy()
            fr_n[np.abs(fr_n - np.round(fr_n)) < 1e-7] += 2e-7

            def x_at(y):
                f = np.interp(y, cv.ys, fr_n)
                return tr.x0 + (f - np.floor(f)) * tw, f
            y = r.copy()
            for _ in range(4 if plan.theta else 1):
                xs, _ = x_at(y)
                if plan.theta:
                    y = plan.rc + (r - plan.rc - (xs - plan.cc) * s) / c
            xs, f = x_at(y)
            xo = plan.cc + (xs - plan.cc) * c - (y - plan.rc) * s
            ok = (y >= cv.ys[0] - 1e-6) & (y <= cv.ys[-1] + 1e-6)
            k = cv.cls - 1
            cl[ti, k, ok] = xo[ok]
            val[ti, k, ok] = _frac_to_value(f[ok], tr)
    return cl, val


def _meta(plan: _Plan, seed: int) -> dict:
    look = plan.look
    c = math.cos(plan.theta)
    tracks = []
    for tr in plan.tracks:
        x0 = _rotate(plan, plan.rc, tr.x0)[1]
        x1 = _rotate(plan, plan.rc, tr.x1)[1]
        tracks.append({
            "x0": round(float(x0), 3), "x1": round(float(x1), 3), "scale": tr.scale,
            "left": float(tr.left), "right": float(tr.right), "unit": tr.unit,
            "decades": int(tr.decades),
            "curves": [{"class": int(cv.cls), "mnemonic": cv.mnemonic, "unit": tr.unit, "style": cv.style,
                        "width_px": round(float(cv.width), 2), "dash_px": round(float(cv.dash), 2),
                        "gap_px": round(float(cv.gap), 2), "wraps": int(cv.wraps),
                        "top_row": (round(float(cv.ys[0]), 2) if len(cv.ys) else None),
                        "bottom_row": (round(float(cv.ys[-1]), 2) if len(cv.ys) else None)}
                       for cv in tr.curves],
        })
    d = plan.depth
    top_row = plan.rc + (plan.log_top - plan.rc) * c
    return {
        "generator": "veer.synth", "seed": seed, "style": look.style, "scan": look.scan, "ext": look.ext,
        "degrade": look.degrade, "height": plan.H, "width": plan.W,
        "skew_deg": round(math.degrees(plan.theta), 5), "dpi": DPI, "header_rows": int(plan.header_rows),
        "jpeg_quality": look.jpeg_quality if look.ext == "jpg" else None,
        "depth_column": ([round(float(v), 2) for v in plan.depth_col] if plan.depth_col else None),
        "tracks": tracks,
        "depth": {"unit": d["unit"], "top_row": round(float(top_row), 3), "top_depth": float(d["top_depth"]),
                  "rows_per_unit": float(d["rows_per_unit"] * c)},
    }


WRAP_TILE_REACH = 6   # tile sizes above and below a wrap tile's first place searched for a wrap-around


def sample_tile(rng: np.random.Generator, size: int = 256, *, at_wrap: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """One training tile: a size x size window of a random virtual log.

    Drawn from the same distribution as :func:`generate_log` (styles, layouts,
    scale, degradations). Returns (gray uint8 (size, size), mask uint8 with
    0/1/2 and 255 on overlaps).

    ``at_wrap``: the tile is centred (give or take) on a wrap-around of a
    curve: one track's curves are made to run off scale in some beds, and the
    tile shows the near-horizontal sweeps across the track where a reading
    leaves one border and re-enters at the other. Such sweeps are a few rows
    of a whole log, often drawn along a depth line, and the models label
    them worst; ``python -m veer train --wrap-tiles SHARE`` mixes them in.
    """
    size = int(size)
    style_name = _random_style(rng)
    look = _make_look(rng, style_name)
    H, W = _log_size(rng)
    if rng.random() < 0.25:
        H = int(rng.uniform(5000, 18000))
    W = max(W, size)
    H = max(H, size + 64)
    # where the tile sits on the page
    m = 6
    if look.header and rng.random() < 0.35:
        top = int(rng.uniform(0, min(900, H - size)))
    else:
        top = int(rng.uniform(0, H - size))
    r_lo, r_hi = top - 48, top + size + 48
    if at_wrap:
        # plan rows well around the tile, to find a wrap-around in and move the tile onto it
        reach = WRAP_TILE_REACH * size
        r_lo, r_hi = max(-48, r_lo - reach), min(H + 48, r_hi + reach)
    chosen: dict = {}

    def pick_cols(cols):
        # where the tile sits across the page: mostly on a track (often right on a curve),
        # sometimes on the depth column or anywhere; curves are generated only for the
        # tracks that can show in the tile
        tracks = [c for c in cols if c[0] == "T"]
        depth = [c for c in cols if c[0] == "D"]
        x = rng.random()
        if (x < 0.8 or at_wrap) and tracks:
            ti = int(rng.integers(len(tracks)))
            _, x0, x1 = tracks[ti]
            chosen.update(track=ti, on_curve=rng.random() < 0.7, span=(x0, x1))
            return x0 - size - m, x1 + size + m
        if x < 0.9 and depth:
            chosen["span"] = (depth[0][1], depth[0][2])
            return depth[0][1] - size - m, depth[0][2] + size + m
        chosen["span"] = (0.0, float(W))
        return -math.inf, math.inf

    force = (lambda ti: ti == chosen.get("track")) if at_wrap else None
    plan = _make_plan(rng, look, H, W, r_lo, r_hi, rc=top + size / 2, pick_cols=pick_cols,
                      force_wrap=force)
    cx = rng.uniform(*chosen["span"])
    if at_wrap and "track" in chosen:
        tr = plan.tracks[chosen["track"]]
        events = [cv.ys[1:][np.floor(cv.frac[1:]) != np.floor(cv.frac[:-1])]
                  for cv in tr.curves if len(cv.ys) >= 2]
        events = np.concatenate(events) if events else np.zeros(0)
        lo, hi = max(0, r_lo + 48), min(H - size, r_hi - 48 - size)
        if events.size and hi >= lo:
            e = float(events[int(rng.integers(events.size))])
            top = int(np.clip(round(e - size / 2 + rng.uniform(-0.3, 0.3) * size), lo, hi))
            plan.rc = top + size / 2
            chosen["on_curve"] = False      # anywhere across the track: the sweep spans it
    if chosen.get("on_curve"):
        tr = plan.tracks[chosen["track"]]
        live = [cv for cv in tr.curves if len(cv.ys) >= 2]
        if live:
            cv = live[int(rng.integers(len(live)))]
            f = float(np.interp(top + size / 2, cv.ys, cv.frac))
            cx = tr.x0 + (f - math.floor(f)) * (tr.x1 - tr.x0) + rng.uniform(-0.35, 0.35) * size
    left = int(np.clip(cx - size / 2, 0, W - size))
    plan.cc = left + size / 2
    _finalize_curves(plan, left - m, left + size + m)
    img, c1, c2 = _render_window(plan, rng, top - m, top + size + m, left - m, left + size + m)
    img = _scan(plan, rng, img)
    u8 = _to_uint8(plan, img)[m:m + size, m:m + size]
    mask = _labels(c1, c2)[m:m + size, m:m + size]
    if look.ext == "jpg":
        u8, _ = _jpeg(np.ascontiguousarray(u8), look.jpeg_quality)
    gray = rgb_to_gray(u8) if u8.ndim == 3 else u8
    return np.ascontiguousarray(gray), np.ascontiguousarray(mask)


def benchmark_tiles(n: int = 200, size: int = 256) -> float:
    """Training tiles per second that :func:`sample_tile` makes on one core.

    The generator is single-threaded; the figure is tiles per second of this
    process's CPU time, so other work on a shared machine does not count
    against it (on an idle machine it equals the wall-clock rate).
    """
    rng = np.random.default_rng(0)
    for _ in range(3):
        sample_tile(rng, size)
    t = time.process_time()
    for _ in range(int(n)):
        sample_tile(rng, size)
    return int(n) / max(time.process_time() - t, 1e-9)


# --------------------------------------------------------------------------------------
# files


def save_log(log: SynthLog, out_dir, stem: str) -> dict[str, Path]:
    """Write the scan and its truth: <stem>.<ext>, .mask.png, .curves.npz, .json."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = log.ext
    paths = {"image": out_dir / f"{stem}.{ext}", "mask": out_dir / f"{stem}.mask.png",
             "curves": out_dir / f"{stem}.curves.npz", "meta": out_dir / f"{stem}.json"}
    with atomic_write(paths["image"]) as tmp:
        if ext == "jpg":
            data = log.encoded
            if data is None:
                _, data = _jpeg(log.image, int(log.meta.get("jpeg_quality") or 85))
            tmp.write_bytes(data)
        elif ext == "tif":
            img = Image.fromarray(np.where(log.gray >= 128, 255, 0).astype(np.uint8)).convert("1")
            img.save(tmp, format="TIFF", compression="group4", dpi=(DPI, DPI))
        else:
            Image.fromarray(np.ascontiguousarray(log.image)).save(tmp, format="PNG", dpi=(DPI, DPI))
    write_mask(paths["mask"], log.mask, allow_ignore=True)
    with atomic_write(paths["curves"]) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, centerline=log.centerline.astype(np.float32),
                                value=log.value.astype(np.float32), tracks=log.tracks.astype(np.float32))
    with atomic_write(paths["meta"]) as tmp:
        tmp.write_text(json.dumps(log.meta, indent=1))
    _plain_permissions(paths.values())
    return paths


def _plain_permissions(paths) -> None:
    """Give written files the usual permissions (temporary files are created private)."""
    import os
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        try:
            os.chmod(p, 0o666 & ~umask)
        except OSError:
            pass


def _stem_of(image_path: Path) -> str:
    return image_path.name.rsplit(".", 1)[0]


def load_truth(image_path) -> Truth:
    """Read the truth saved beside a scan by :func:`save_log`; VeerError if any part is missing."""
    p = Path(image_path)
    stem = _stem_of(p)
    mask_p = p.with_name(f"{stem}.mask.png")
    npz_p = p.with_name(f"{stem}.curves.npz")
    meta_p = p.with_name(f"{stem}.json")
    for q, what in ((mask_p, "mask"), (npz_p, "curve truth"), (meta_p, "metadata")):
        if not q.exists():
            raise VeerError(f"{p.name}: no {what} beside it ({q.name} is missing); "
                            f"regenerate with 'python -m veer synth'")
    mask = read_mask(mask_p)
    try:
        with np.load(npz_p) as z:
            centerline, value, tracks = z["centerline"], z["value"], z["tracks"]
        meta = json.loads(meta_p.read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise VeerError(f"{p.name}: the truth files are damaged ({exc})") from None
    return Truth(mask=mask, centerline=centerline, value=value, tracks=tracks, meta=meta)


def find_samples(folder) -> list[Path]:
    """Scans in ``folder`` that have a truth mask beside them, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        if not p.is_file() or p.suffix.lower().lstrip(".") not in SCAN_EXTS:
            continue
        if p.name.endswith(".mask.png"):
            continue
        if (p.parent / f"{_stem_of(p)}.mask.png").exists():
            out.append(p)
    return sorted(out)


# --------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="folder to write the logs into (required)")
    parser.add_argument("--n", default="1", help="number of logs (default 1)")
    parser.add_argument("--seed", default="0", help="seed of the first log; log i uses seed+i (default 0)")
    parser.add_argument("--height", default=None, help=f"height in px ({MIN_SIDE}-{MAX_HEIGHT}; default random)")
    parser.add_argument("--width", default=None, help=f"width in px ({MIN_SIDE}-{MAX_WIDTH}; default random)")
    parser.add_argument("--style", default=None,
                        help="style preset: " + ", ".join(STYLES) + " (default: a random mix)")


def _int_arg(name: str, text, lo: int | None = None, hi: int | None = None) -> int | None:
    if text is None:
        return None
    try:
        v = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"--{name} must be a whole number, got {text!r}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ConfigError(f"--{name} must be {rng}, got {v}")
    return v


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if not args.out:
        raise ConfigError("--out DIR is required: the folder to write the logs into")
    n = _int_arg("n", args.n, 1, 100_000)
    seed = _int_arg("seed", args.seed, 0, 2**31 - 1)
    height = _int_arg("height", args.height, MIN_SIDE, MAX_HEIGHT)
    width = _int_arg("width", args.width, MIN_SIDE, MAX_WIDTH)
    _check_style(args.style)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    for i in tqdm(range(n), desc="synth", unit="log", disable=n < 2):
        s = seed + i
        log = generate_log(s, height=height, width=width, style=args.style)
        paths = save_log(log, out, f"synth_{s:06d}")
        if n < 2:
            print(f"wrote {paths['image']} ({log.meta['style']}, {log.image.shape[1]}x{log.image.shape[0]} px)")
    if n >= 2:
        print(f"wrote {n} logs to {out}")
    return 0
