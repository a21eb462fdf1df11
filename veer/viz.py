"""Figures, overlays and display helpers for the dashboard.

Everything a page shows is built here as plain functions of arrays and dicts,
so that the pages hold only layout and widgets and every figure can be tested
without a browser. Colours come from :mod:`veer.classes` (one legend
everywhere); charts are Plotly.

Large scans are shown downscaled while the models run at full resolution:
:func:`display_factor` picks an integer factor that keeps a panel under a pixel
budget, and :func:`shrink_gray` / :func:`shrink_codes` downscale in a way that
keeps one-pixel curves visible (darkest ink and any non-background code win
in each block, rather than being averaged away).
"""

from __future__ import annotations

import base64
import colorsys
import contextlib
import csv
import json
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from veer.classes import CLASSES, CLASS_COLORS, CLASS_NAMES, CURVE1, CURVE2, IGNORE, colorize, hex_to_rgb
from veer.errors import ConfigError
from veer.metrics import BOOTSTRAP_DRAWS, bootstrap_f1

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"

#: Panels above this many pixels are shown downscaled (the models still run on every pixel).
DISPLAY_MAX_PIXELS = 1_200_000

#: Separate pipeline's conflict map (veer.stitch): 1 = claimed by two or more masks, 2 = claimed by none.
CONFLICT_COLORS = {1: "#cc79a7", 2: "#009e73"}
CONFLICT_LABELS = {1: "claimed by two or more masks", 2: "claimed by no mask"}

#: Error map (veer.metrics.error_map): 1 missed, 2 extra, 3 wrong curve class.
ERROR_COLORS = {1: "#e69f00", 2: "#cc79a7", 3: "#009e73"}
ERROR_LABELS = {1: "missed (curve called background)", 2: "extra (background called curve)",
                3: "wrong curve class"}

#: The one colour that argues on the decision page (the verdict arrow).
VERDICT_COLOR = "#d55e00"
MUTED = "#9a9a9a"

PIPELINE_LABELS = {"joint": "Joint 3-class model", "separate": "Separate masks, stitched"}
# The live page's "sharper thin strokes" choice: each tile as it is (in its two views) and
# enlarged 1.3x in one view (veer.infer's scales and scale_views; measured in the README's
# results table).
SHARPER_SCALES = (1.0, 1.3)
SHARPER_SCALE_VIEWS = 1


def sharper_caption(scales) -> str:
    """What the live page adds to its device caption for ``scales``: where the tile also runs
    enlarged, the scale and the views it runs in (:data:`SHARPER_SCALE_VIEWS`); else nothing."""
    if len(scales) < 2:
        return ""
    views = "one view" if SHARPER_SCALE_VIEWS == 1 else f"{SHARPER_SCALE_VIEWS} views"
    return f"; each tile also at {scales[-1]:g}x, in {views}"


# ---------------------------------------------------------------------------
# Page plumbing
# ---------------------------------------------------------------------------

_NAV = threading.local()


@contextlib.contextmanager
def app_navigation():
    """Mark the current script run as routed by app.py's ``st.navigation`` (see :func:`ensure_navigation`)."""
    _NAV.active = True
    try:
        yield
    finally:
        _NAV.active = False


def ensure_navigation() -> None:
    """Make a page opened by a deep link on a fresh server run through app.py.

    Streamlit treats an app with a ``pages/`` folder as an old-style
    multipage app until some session has called ``st.navigation``; the first
    visitor who opens e.g. ``/decision_lever`` directly would otherwise get
    that page without app.py (no wide layout, file names in the sidebar).
    Each page calls this first: when app.py is not routing the run, it runs
    app.py (whose navigation runs the page the URL asked for) and stops.
    """
    if getattr(_NAV, "active", False):
        return
    import runpy

    import streamlit as st

    runpy.run_path(str(ROOT / "app.py"), run_name="__veer_app__")
    st.stop()


# ---------------------------------------------------------------------------
# Small readers for the JSON files the dashboard shows
# ---------------------------------------------------------------------------

def read_json(path: Path) -> Any | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_anchors(path: Path | None = None) -> dict:
    """The comparison figures (assets/anchors.json); {} when absent."""
    data = read_json(path or ASSETS / "anchors.json")
    return data if isinstance(data, dict) else {}


def archive_joint_per_class(anchors: Mapping) -> dict[str, dict[str, float]]:
    """{class name: {f1, iou}} of the archive's joint model, from anchors."""
    return dict(anchors.get("archive", {}).get("joint", {}).get("per_class", {}))


def archive_separate_f1(anchors: Mapping) -> list[float]:
    """The archive's separate-mask F1 figures in published order."""
    return [float(v) for v in anchors.get("archive", {}).get("separate", {}).get("mask_f1", [])]


def find_number(data: Any, *paths: str) -> float | None:
    """The first finite number found at one of the slash-separated ``paths`` in nested dicts."""
    for path in paths:
        node = data
        for part in path.split("/"):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                node = None
                break
        value = _num(node)
        if value is not None:
            return value
    return None


def flatten(row: Mapping, prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Flatten nested dicts: {"val": {"curve1": {"f1": .5}}} -> {"val/curve1/f1": .5}."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------
# Shipped models, their cards and the evaluation report
# ---------------------------------------------------------------------------

MODELS_DIR = ASSETS / "models"
SAMPLES_DIR = ASSETS / "samples"
FALLBACK_PIPELINES = {"joint": ["joint"], "separate": ["binary_background", "binary_curve1", "binary_curve2"]}
#: Where an evaluation report (python -m veer evaluate --out ...) may be shipped, first found wins.
REPORT_CANDIDATES = ("evaluation.json", "eval/evaluation.json", "models/evaluation.json", "report.json")


def pipelines() -> dict[str, list[str]]:
    """Pipeline -> model names (veer.weights.PIPELINES when available)."""
    try:
        from veer.weights import PIPELINES
    except ImportError:
        return {k: list(v) for k, v in FALLBACK_PIPELINES.items()}
    return {k: list(v) for k, v in PIPELINES.items()}


def load_card(name: str, models_dir: Path | None = None) -> dict | None:
    """A model card (veer.weights.load_card), or None when the model is not shipped."""
    from veer.errors import VeerError

    folder = Path(models_dir) if models_dir else MODELS_DIR
    try:
        from veer.weights import load_card as _load_card
    except ImportError:
        data = read_json(folder / f"{name}.json")
        return data if isinstance(data, dict) else None
    try:
        card = _load_card(name, models_dir=folder)
    except (VeerError, OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def load_history(name: str, models_dir: Path | None = None) -> list[dict]:
    """Training history rows of a model (<name>.history.json), [] when absent."""
    folder = Path(models_dir) if models_dir else MODELS_DIR
    data = read_json(folder / f"{name}.history.json")
    if isinstance(data, Mapping):
        data = data.get("rows") or data.get("history") or []
    return [r for r in data if isinstance(r, Mapping)] if isinstance(data, list) else []


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header (no decoding), or None."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(img.width), int(img.height)
    except (OSError, ValueError):
        return None


def models_signature(mode: str, models_dir: Path | None = None) -> str:
    """Which weights a pipeline would load now (folder and the cards' sha256), for cache keys.

    A result computed with other weights (retrained, restored, another
    folder) never answers for these.
    """
    folder = Path(models_dir) if models_dir else MODELS_DIR
    parts = [str(folder)]
    for name in pipelines().get(mode, []):
        data = read_json(folder / f"{name}.json")
        parts.append(str(data.get("sha256", "?"))[:16] if isinstance(data, dict) else "missing")
    return "|".join(parts)


def shown_path(path) -> str:
    """A path as the dashboard shows it: relative to the project when inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def report_matches_models(report: Mapping | None, models_dir: Path | None = None) -> bool:
    """Whether an evaluation report was made with the weights now in ``models_dir``.

    The report's ``weights`` (model name -> sha256, written by
    ``python -m veer evaluate``) must all match the model cards there; a
    report that does not say which weights it scored never matches.
    """
    recorded = (report or {}).get("weights")
    if not isinstance(recorded, Mapping) or not recorded:
        return False
    folder = Path(models_dir) if models_dir else MODELS_DIR
    for name, sha in recorded.items():
        card = read_json(folder / f"{name}.json")
        if not isinstance(card, dict) or card.get("sha256") != sha:
            return False
    return True


def _report_files(assets: Path | None):
    base = Path(assets) if assets else ASSETS
    for rel in REPORT_CANDIDATES:
        data = read_json(base / rel)
        if isinstance(data, dict) and isinstance(data.get("pipelines"), Mapping):
            yield data, base / rel


def find_report(assets: Path | None = None, models_dir: Path | None = None) -> tuple[dict | None, Path | None]:
    """The shipped evaluation report (see REPORT_CANDIDATES) made with the weights in use, or (None, None)."""
    for data, path in _report_files(assets):
        if report_matches_models(data, models_dir):
            return data, path
    return None, None


def stale_report(assets: Path | None = None, models_dir: Path | None = None) -> Path | None:
    """A shipped evaluation report made with other weights than those in use (None if there is none)."""
    for data, path in _report_files(assets):
        if not report_matches_models(data, models_dir):
            return path
    return None


def card_scores(card: Mapping | None) -> dict[str, float | None]:
    """Headline validation figures of a model card.

    Joint model: ``f1`` / ``iou`` are means over the three classes (background
    included, like the archive's figures), ``f1_curves`` / ``iou_curves`` over
    curve1 and curve2. Binary model: ``f1`` / ``iou`` of its target class.
    """
    empty = {"f1": None, "iou": None, "f1_curves": None, "iou_curves": None}
    if not card:
        return empty
    val = card.get("validation") if isinstance(card.get("validation"), Mapping) else {}
    per_class = val.get("per_class") if isinstance(val.get("per_class"), Mapping) else {}

    def mean_of(names: Sequence[str], metric: str) -> float | None:
        vals = [_num(per_class.get(n, {}).get(metric)) for n in names if isinstance(per_class.get(n), Mapping)]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals and len(vals) == len(names) else None

    target = card.get("target")
    if card.get("task") == "binary" or (target and target in per_class and len(per_class) == 2):
        t = str(target)
        return {"f1": _num(per_class.get(t, {}).get("f1")), "iou": _num(per_class.get(t, {}).get("iou")),
                "f1_curves": None, "iou_curves": None}
    out = dict(empty)
    out["f1"] = _num(val.get("macro_f1")) if _num(val.get("macro_f1")) is not None else mean_of(CLASS_NAMES, "f1")
    out["iou"] = mean_of(CLASS_NAMES, "iou")
    out["f1_curves"] = mean_of(("curve1", "curve2"), "f1")
    out["iou_curves"] = mean_of(("curve1", "curve2"), "iou")
    return out


def measured_figures(models_dir: Path | None = None, report: Mapping | None = None) -> dict:
    """Our measured headline figures for the joint and the separate pipeline.

    Joint: macro F1 / IoU over three classes (and over the curves) from the
    evaluation report when one is shipped, else from the joint model card.
    Separate: the three binary masks' own F1 (model cards: the like-for-like
    of the archive's per-mask figures) and, from the report, the stitched
    result's macro F1 / IoU. Values are None where nothing is shipped.
    """
    names = pipelines()
    joint_card = load_card(names["joint"][0], models_dir)
    out: dict[str, Any] = {"joint": None, "separate": None, "source": []}
    j = card_scores(joint_card) if joint_card else None
    if report and "joint" in report.get("pipelines", {}):
        p = report["pipelines"]["joint"]
        j = {"f1": find_number(p, "macro_all/f1"), "iou": find_number(p, "macro_all/iou"),
             "f1_curves": find_number(p, "macro_curves/f1"), "iou_curves": find_number(p, "macro_curves/iou")}
        out["source"].append("evaluation report")
    elif joint_card:
        out["source"].append("model card")
    out["joint"] = j
    cards = [load_card(n, models_dir) for n in names["separate"]]
    masks = [card_scores(c)["f1"] if c else None for c in cards]
    sep: dict[str, Any] | None = None
    if any(m is not None for m in masks):
        sep = {"mask_f1": masks, "mask_names": list(names["separate"])}
    if report and "separate" in report.get("pipelines", {}):
        p = report["pipelines"]["separate"]
        sep = dict(sep or {"mask_f1": [None] * 3, "mask_names": list(names["separate"])})
        sep.update(f1=find_number(p, "macro_all/f1"), iou=find_number(p, "macro_all/iou"),
                   f1_curves=find_number(p, "macro_curves/f1"), iou_curves=find_number(p, "macro_curves/iou"),
                   conflict_share=find_number(p, "conflicts/conflict_share"),
                   gap_share=find_number(p, "conflicts/gap_share"))
    out["separate"] = sep
    return out


def cards_frame(cards: Mapping[str, Mapping | None]):
    """One row per model: what it is, its size and its validation figures."""
    import pandas as pd

    rows = []
    for name, card in cards.items():
        if not card:
            rows.append({"model": name, "status": "missing"})
            continue
        scores = card_scores(card)
        training = card.get("training") if isinstance(card.get("training"), Mapping) else {}
        rows.append({
            "model": name,
            "status": "shipped",
            "task": card.get("task"),
            "target": card.get("target"),
            "parameters": card.get("parameters"),
            "GMAC/Mpx": _num(card.get("gmac_per_mpx")),
            "steps": training_totals(card)[0],
            "val F1": scores["f1"],
            "val IoU": scores["iou"],
        })
    return pd.DataFrame(rows)


def device_label(device_text: str) -> str:
    """The short name of a device description: 'CPU (2 threads), bf16' -> 'CPU',
    'CUDA GPU: NVIDIA H100, bf16' -> 'CUDA GPU'."""
    return device_text.split(" (")[0].split(":")[0].split(",")[0]


def training_totals(card: Mapping) -> tuple[int | None, float | None]:
    """(steps, seconds) of training behind a model card's weights, counting the runs it was
    continued from (``train --init``: ``total_steps`` / ``total_seconds``)."""
    training = card.get("training") if isinstance(card.get("training"), Mapping) else {}
    steps = training.get("total_steps", training.get("steps"))
    seconds = training.get("total_seconds", training.get("seconds"))
    return (int(steps) if steps is not None else None, float(seconds) if seconds is not None else None)


def fmt(value: float | None, digits: int = 2) -> str:
    """A score for display: '0.55', or an en dash when missing."""
    return "–" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------
# Colours and legends
# ---------------------------------------------------------------------------

def swatch_markdown(color: str, label: str, note: str = "") -> str:
    """One legend entry as inline HTML (a coloured square and a label)."""
    box = (f"<span style='display:inline-block;width:0.9em;height:0.9em;background:{color};"
           f"border:1px solid #555;border-radius:2px;margin-right:0.35em;vertical-align:-0.1em'></span>")
    extra = f" <span style='color:#666'>{note}</span>" if note else ""
    return f"{box}<b>{label}</b>{extra}"


def class_legend_markdown(*, with_descriptions: bool = True, inline: bool = False) -> str:
    """The class legend (colours used in every overlay and chart) as HTML."""
    items = [swatch_markdown(c.color, c.label, f"({c.description})" if with_descriptions else "")
             for c in CLASSES]
    return " &nbsp; ".join(items) if inline else "<br>".join(items)


def codes_legend_markdown(colors: Mapping[int, str], labels: Mapping[int, str]) -> str:
    """A legend for a code map (conflicts, errors) as inline HTML."""
    return " &nbsp; ".join(swatch_markdown(colors[k], labels[k]) for k in colors)


def instance_palette(n: int, seed: int = 7) -> np.ndarray:
    """(n + 1) x 3 uint8 distinct, saturated colours; row 0 is white (paper)."""
    rng = np.random.default_rng(seed)
    hues = (np.arange(n) * 0.618033988749895 + rng.uniform()) % 1.0
    lut = np.full((n + 1, 3), 255, np.uint8)
    for i, h in enumerate(hues, start=1):
        value = 0.55 + 0.35 * ((i * 7) % 3) / 2.0
        r, g, b = colorsys.hsv_to_rgb(float(h), 0.85, value)
        lut[i] = (int(r * 255), int(g * 255), int(b * 255))
    return lut


def color_instances(labels: np.ndarray, seed: int = 7) -> np.ndarray:
    """Integer label map (0 = paper) -> RGB with one colour per label."""
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    return instance_palette(n, seed)[labels]


# ---------------------------------------------------------------------------
# Display-size images that keep thin lines
# ---------------------------------------------------------------------------

def display_factor(shape: Sequence[int], max_pixels: int = DISPLAY_MAX_PIXELS) -> int:
    """Smallest integer factor f such that (H / f) * (W / f) <= max_pixels."""
    h, w = int(shape[0]), int(shape[1])
    f = 1
    while -(-h // f) * -(-w // f) > max_pixels:
        f += 1
    return f


def _blocks(arr: np.ndarray, f: int, fill) -> np.ndarray:
    h, w = arr.shape[:2]
    hp, wp = -(-h // f) * f, -(-w // f) * f
    if (hp, wp) != (h, w):
        pad = [(0, hp - h), (0, wp - w)] + [(0, 0)] * (arr.ndim - 2)
        arr = np.pad(arr, pad, constant_values=fill)
    return arr.reshape(hp // f, f, wp // f, f, *arr.shape[2:])


def shrink_gray(gray: np.ndarray, f: int) -> np.ndarray:
    """Downscale a uint8 scan by ``f`` keeping the darkest pixel of each block (ink survives)."""
    if f <= 1:
        return gray
    return _blocks(gray, f, 255).min(axis=(1, 3))


def shrink_codes(codes: np.ndarray, f: int, ignore: int | None = IGNORE) -> np.ndarray:
    """Downscale a label/code map by ``f``: the largest code of each block wins.

    Class and code maps put "nothing" at 0, so any curve, conflict or error
    pixel in a block shows up; ``ignore`` pixels count as 0 here.
    """
    if f <= 1:
        return codes
    arr = codes
    if ignore is not None:
        arr = np.where(codes == ignore, 0, codes).astype(codes.dtype)
    return _blocks(arr, f, 0).max(axis=(1, 3))


def window_rows(height: int, start: int, size: int) -> tuple[int, int]:
    """Clamp a depth window to the image: returns (top, bottom) rows, bottom exclusive."""
    size = max(1, min(int(size), int(height)))
    top = max(0, min(int(start), int(height) - size))
    return top, top + size


def window_options(height: int, width: int) -> list[int]:
    """Depth-window heights offered for a scan: multiples of its width, then the whole log.

    Scans that are not much taller than wide get [height] (no window needed).
    """
    if height <= 2 * width:
        return [int(height)]
    opts = [m * width for m in (1, 2, 4, 8) if m * width < height]
    return [int(v) for v in opts] + [int(height)]


def map_overlay(gray: np.ndarray, codes: np.ndarray, colors: Mapping[int, str], *,
                alpha: float = 0.7, fade: float = 0.0) -> np.ndarray:
    """Paint ``colors[code]`` over a grayscale scan where ``codes`` has that code.

    ``alpha`` is the paint's opacity; ``fade`` lightens the scan underneath
    (0 keeps it, 1 turns it white) so that sparse codes stand out.
    Returns uint8 RGB (H, W, 3).
    """
    base = np.asarray(gray, np.float32)
    if fade:
        base = base + (255.0 - base) * float(fade)
    rgb = np.repeat(base[..., None], 3, axis=2)
    a = float(np.clip(alpha, 0.0, 1.0))
    for code, color in colors.items():
        sel = codes == code
        if sel.any():
            rgb[sel] = rgb[sel] * (1.0 - a) + np.asarray(hex_to_rgb(color), np.float32) * a
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def class_overlay(gray: np.ndarray, labels: np.ndarray, *, alpha: float = 0.8,
                  classes: Iterable[int] = (CURVE1, CURVE2), fade: float = 0.0) -> np.ndarray:
    """The class colours of ``labels`` over the scan, for the classes asked for."""
    colors = {c: CLASS_COLORS[c] for c in classes}
    return map_overlay(gray, labels, colors, alpha=alpha, fade=fade)


def overlay_png(gray: np.ndarray, labels: np.ndarray, alpha: float = 0.8,
                classes: Iterable[int] = (CURVE1, CURVE2)) -> bytes:
    """A full-size class overlay as PNG bytes (for a download)."""
    from veer.io import png_bytes

    return png_bytes(class_overlay(gray, labels, alpha=alpha, classes=tuple(classes)))


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 gray or RGB array as a PNG data URI (what Plotly's go.Image takes as source)."""
    from veer.io import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


# ---------------------------------------------------------------------------
# Figures: the live page
# ---------------------------------------------------------------------------

def auto_height(image_shape: Sequence[int], n_panels: int, *, width_px: int = 960,
                lo: int = 260, hi: int = 820) -> int:
    """A figure height that fits ``n_panels`` side-by-side images of this shape without empty bands."""
    h, w = int(image_shape[0]), max(1, int(image_shape[1]))
    panel_w = (width_px - 60) / max(1, n_panels)
    return int(np.clip(panel_w * h / w + 80, lo, hi))


def linked_images(panels: Sequence[tuple[str, np.ndarray]], *, factor: int = 1, row0: int = 0,
                  height: int | None = None, legend: Sequence[tuple[str, str]] = ()):
    """Side-by-side images with linked zoom and pan (one figure, shared axes).

    ``panels`` are (title, uint8 gray or RGB image) already downscaled by
    ``factor``; axes are in full-resolution pixels, rows offset by ``row0``
    (the top of the depth window), so hovering shows true scan coordinates.
    ``legend`` adds (label, colour) entries as legend-only markers.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(panels)
    if height is None:
        height = auto_height(panels[0][1].shape, n)
    fig = make_subplots(rows=1, cols=n, shared_xaxes="all", shared_yaxes="all",
                        horizontal_spacing=0.015, subplot_titles=[t for t, _ in panels])
    offset = (factor - 1) / 2.0
    for i, (_, img) in enumerate(panels, start=1):
        fig.add_trace(go.Image(source=png_data_uri(img), x0=offset, y0=row0 + offset,
                               dx=factor, dy=factor, hovertemplate="x %{x:.0f}, row %{y:.0f}<extra></extra>"),
                      row=1, col=i)
    for label, color in legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label,
                                 marker=dict(color=color, size=12, symbol="square")))
    fig.update_xaxes(matches="x", showticklabels=True)
    fig.update_yaxes(matches="y", autorange="reversed")
    fig.update_yaxes(title_text="row (depth, px)", row=1, col=1)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), dragmode="pan",
                      showlegend=bool(legend), legend=dict(orientation="h", y=-0.03, x=0),
                      uirevision="keep")
    return fig


def mask_figure(labels: np.ndarray, conflict: np.ndarray | None = None, *, title: str = "Mask",
                height: int | None = None):
    """A saved mask in the class colours, and beside it the conflict map when there is one.

    For a scan of a batch run, where only its outputs are at hand. Large masks
    are shown downscaled with thin curves kept (:func:`shrink_codes`); axes are
    in full-resolution pixels and the panels zoom together.
    """
    labels = np.asarray(labels)
    f = display_factor(labels.shape)
    panels = [(title, colorize(shrink_codes(labels, f)))]
    legend = [(c.label, c.color) for c in CLASSES]
    if conflict is not None:
        codes = shrink_codes(np.asarray(conflict), f, ignore=None)
        paper = np.full(codes.shape, 255, np.uint8)
        panels.append(("Where the masks disagree", map_overlay(paper, codes, CONFLICT_COLORS, alpha=1.0)))
        legend += [(CONFLICT_LABELS[k], CONFLICT_COLORS[k]) for k in sorted(CONFLICT_COLORS)]
    return linked_images(panels, factor=f, height=height, legend=legend)


def tracks_figure(gray_view: np.ndarray, *, factor: int, row0: int, tracks: Sequence[Any],
                  table=None, height: int | None = None, max_points: int = 6000):
    """The scan (depth window) with track borders and the traced centre lines drawn on it.

    ``tracks`` are (x0, x1) pairs or objects with ``x0``, ``x1``, ``slope``,
    ``row_ref``; ``table`` is veer.digitize's per-row table (row, track,
    curve1_x, curve2_x) or None. Coordinates are full-resolution pixels.
    """
    import plotly.graph_objects as go

    h_full = gray_view.shape[0] * factor
    fig = linked_images([("Tracks and traced curves", gray_view)], factor=factor, row0=row0,
                        height=height or auto_height(gray_view.shape, 2))
    rows = np.array([row0, row0 + h_full - 1], np.float64)
    for i, t in enumerate(tracks):
        x0, x1 = float(t[0]), float(t[1])
        slope = float(getattr(t, "slope", 0.0))
        ref = float(getattr(t, "row_ref", 0.0))
        for x, side in ((x0, "left"), (x1, "right")):
            xs = x + slope * (rows - ref)
            fig.add_trace(go.Scatter(x=xs, y=rows, mode="lines", line=dict(color="#009e73", width=2, dash="dot"),
                                     name="track border", legendgroup="tracks", showlegend=(i == 0 and side == "left"),
                                     hovertemplate=f"track {i + 1} {side} border<extra></extra>"))
    if table is not None and len(table):
        sel = table[(table["row"] >= row0) & (table["row"] < row0 + h_full)]
        for cls, name in ((CURVE1, "curve1"), (CURVE2, "curve2")):
            col = f"{name}_x"
            if col not in sel.columns:
                continue
            pts = sel[["row", col]].dropna()
            if len(pts) > max_points:
                pts = pts.iloc[:: int(np.ceil(len(pts) / max_points))]
            fig.add_trace(go.Scatter(x=pts[col], y=pts["row"], mode="markers", name=f"traced {name}",
                                       marker=dict(color=CLASS_COLORS[cls], size=3),
                                       hovertemplate="row %{y}, x %{x:.1f}<extra>" + name + "</extra>"))
    fig.update_layout(showlegend=True, legend=dict(orientation="h", y=-0.04, x=0))
    return fig


def curves_frame(log) -> tuple[Any, str, str]:
    """The digitised curves as a long table for plotting: (frame, y label, x label).

    Calibrated logs give values (or track fractions where a track has no
    value scale) at a regular depth step; uncalibrated ones give the track
    fraction (0 = left border, 1 = right; wraps go beyond) against image row.
    """
    import pandas as pd

    rows = []
    if getattr(log, "depth", None) is not None:
        curves = log.curves()
        names = log.names()
        for ti, pair in enumerate(names):
            for ci, nm in enumerate(pair):
                if nm.mnemonic in curves.columns:
                    rows.append(pd.DataFrame({"y": curves["DEPT"], "x": curves[nm.mnemonic], "track": ti + 1,
                                              "curve": ("curve1", "curve2")[ci], "name": nm.mnemonic}))
        unit = log.depth.unit
        y_label = f"depth ({unit})"
        x_label = "value" if log.calibration is not None and log.calibration.scales else "track fraction"
    else:
        table = log.table
        for ti, t in enumerate(log.tracks):
            sub = table[table["track"] == ti]
            for name in ("curve1", "curve2"):
                frac = t.frac(sub["row"].to_numpy(), sub[f"{name}_xu"].to_numpy())
                rows.append(pd.DataFrame({"y": sub["row"], "x": frac, "track": ti + 1, "curve": name,
                                          "name": f"T{ti + 1} {name}"}))
        y_label, x_label = "row (px)", "track fraction"
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["y", "x", "track", "curve", "name"])
    return frame, y_label, x_label


def log_tracks(log) -> list[int]:
    """The tracks (1-based) whose plotted values are on a logarithmic scale.

    Only a calibrated log plots values; a track counts when its calibration
    gives it a log scale.
    """
    cal = getattr(log, "calibration", None)
    tracks = getattr(log, "tracks", None) or []
    if getattr(log, "depth", None) is None or cal is None or not getattr(cal, "scales", None):
        return []
    out = []
    for ti in range(len(tracks)):
        scale = cal.scale_for(ti, len(tracks))
        if scale is not None and scale.scale == "log":
            out.append(ti + 1)
    return out


def curves_figure(log, height: int = 620):
    """Digitised curves against depth (or row), one panel per track, in the class colours;
    a track calibrated on a log scale gets a log value axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    frame, y_label, x_label = curves_frame(log)
    n = max(1, len(getattr(log, "tracks", [])) or int(frame["track"].max() if len(frame) else 1))
    fig = make_subplots(rows=1, cols=n, shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"track {i + 1}" for i in range(n)])
    colors = {"curve1": CLASS_COLORS[CURVE1], "curve2": CLASS_COLORS[CURVE2]}
    dashes = {"curve1": "solid", "curve2": "dash"}
    for (track, curve, name), sub in frame.groupby(["track", "curve", "name"], sort=True):
        fig.add_trace(go.Scatter(x=sub["x"], y=sub["y"], mode="lines", name=str(name),
                                   line=dict(color=colors[curve], dash=dashes[curve], width=1.5),
                                   connectgaps=False), row=1, col=int(track))
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text=y_label, row=1, col=1)
    fig.update_xaxes(nticks=4)
    for col in log_tracks(log):
        fig.update_xaxes(type="log", row=1, col=col)
    fig.update_xaxes(title_text=x_label, row=1, col=1)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.12))
    return fig


WELL_FIELDS = (("WELL", "well name"), ("UWI", "unique well id (UWI)"), ("COMP", "operator"), ("FLD", "field"))


def form_calibration(points: str, unit: str, track_rows: Sequence[Mapping], well: Mapping[str, str] | None = None):
    """The live page's calibration form -> a ``veer.digitize.Calibration``.

    ``points``: "ROW:DEPTH, ROW:DEPTH" (may be empty); ``track_rows``: one
    mapping per track with "left", "right" (numbers or empty), "scale"
    ("linear"/"log") and optional "curve1" / "curve2" LAS names as
    MNEM[:UNIT]; ``well``: LAS well header items (WELL, UWI, ...), empty ones
    left out. A track without both values keeps track fractions. Raises
    ``ConfigError`` with a one-line message on bad input.
    """
    from veer import digitize as dz

    def given(v) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v).strip() != ""

    depth_points = dz.parse_depth_points(points) if str(points or "").strip() else ()
    scales, names = [], []
    for i, row in enumerate(track_rows):
        left, right = row.get("left"), row.get("right")
        if given(left) and given(right):
            scales.append(dz.ValueScale(float(left), float(right), str(row.get("scale") or "linear")))
        elif given(left) or given(right):
            raise ConfigError(f"track {i + 1}: give both the left and the right value, or neither")
        else:
            scales.append(None)
        names.append(tuple(dz.parse_curve_name(row.get(c) if given(row.get(c)) else "")
                           for c in ("curve1", "curve2")))
    if not any(v is not None for v in scales):
        scales = []
    if not any(n.mnemonic for pair in names for n in pair):
        names = []
    header = tuple((k, str(v).strip()) for k, v in (well or {}).items() if given(v))
    return dz.Calibration(depth_points=tuple(depth_points), depth_unit=unit, scales=tuple(scales),
                          names=tuple(names), well=header)


def calibration_defaults(meta: Mapping | None, height: int) -> dict:
    """Starting values for the calibration form: from a synthetic sample's truth, else empty.

    Returns {"depth_points": "ROW:DEPTH, ROW:DEPTH" or "", "unit": "ft"|"m",
    "scales": [{"left", "right", "scale", "curve1", "curve2"} per track],
    "tracks": [(x0, x1) ...]}; "curve1" / "curve2" are LAS names MNEM:UNIT
    ("" where the track has no such curve).
    """
    out: dict[str, Any] = {"depth_points": "", "unit": "ft", "scales": [], "tracks": []}
    if not meta:
        return out
    depth = meta.get("depth") if isinstance(meta.get("depth"), Mapping) else None
    if depth and _num(depth.get("rows_per_unit")):
        r0, d0, k = float(depth.get("top_row", 0.0)), float(depth["top_depth"]), float(depth["rows_per_unit"])
        r1 = float(height - 1)
        out["depth_points"] = f"{r0:g}:{d0:g}, {r1:g}:{d0 + (r1 - r0) / k:.6g}"
        out["unit"] = str(depth.get("unit", "ft"))
    for t in meta.get("tracks") or []:
        if isinstance(t, Mapping) and {"left", "right"} <= set(t):
            row = {"left": float(t["left"]), "right": float(t["right"]), "scale": str(t.get("scale", "linear")),
                   "curve1": "", "curve2": ""}
            for c in t.get("curves") or []:
                if isinstance(c, Mapping) and c.get("class") in (CURVE1, CURVE2) and c.get("mnemonic"):
                    unit = str(c.get("unit") or "")
                    row[f"curve{c['class']}"] = str(c["mnemonic"]) + (f":{unit}" if unit else "")
            out["scales"].append(row)
            out["tracks"].append((float(t["x0"]), float(t["x1"])))
    return out


CURVE_SCORE_COLUMNS = (("median_px", "median error (px)"), ("p95_px", "95th pct error (px)"),
                       ("within3", "rows within 3 px"), ("missed", "rows missed"), ("spurious", "rows spurious"),
                       ("wrap_share", "wrap-arounds followed"), ("wrap_step_share", "wrap steps right"),
                       ("mae", "MAE (value units)"), ("r2", "R²"),
                       # by where the true curve runs (veer.digitize.ROW_KINDS), last: the headline figures first
                       ("within3_own_ink", "within 3 px on its own ink"), ("within3_ink_gap", "within 3 px in its ink's gaps"),
                       ("within3_under_other", "within 3 px with the other curve"))


def flatten_scores(scores: Mapping) -> list[dict]:
    """veer.digitize.score_curves output as table rows, one per curve class."""
    rows = []
    for name in ("curve1", "curve2"):
        s = scores.get(name)
        if not isinstance(s, Mapping):
            continue
        row: dict[str, Any] = {"curve": name}
        for key, label in CURVE_SCORE_COLUMNS:
            row[label] = _num(s.get(key))
        rows.append(row)
    return rows


def las_text(log) -> str:
    """A calibrated digitised log as LAS 2.0 text (veer.digitize.to_las)."""
    import io as _io

    from veer.digitize import to_las

    buf = _io.StringIO()
    to_las(log).write(buf, version=2.0, wrap=False, fmt="%.6g")
    return buf.getvalue()


def curves_csv(log) -> bytes:
    """The digitised per-row table as CSV bytes (the columns veer.digitize.write_csv writes)."""
    from veer.digitize import csv_columns

    table = log.table
    return table[csv_columns(table)].to_csv(index=False, float_format="%.6g", na_rep="").encode("utf-8")


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

METRIC_COLUMNS = ("precision", "recall", "f1", "iou")


def metrics_frame(summaries: Mapping[str, Mapping], tolerant: Mapping[str, Mapping] | None = None):
    """One table of per-class and averaged scores for one or more pipelines.

    ``summaries`` maps a pipeline name to :func:`veer.metrics.summarize`'s
    output; ``tolerant`` (optional) maps it to {class name: {"f1": ...}} from
    :func:`veer.metrics.tolerant_scores`. Rows: each class, then "mean (3 classes)"
    and "mean (curves only)".
    """
    import pandas as pd

    rows = []
    for pipe, summ in summaries.items():
        tol = (tolerant or {}).get(pipe, {})
        label = PIPELINE_LABELS.get(pipe, pipe)
        for name in CLASS_NAMES:
            scores = summ.get("per_class", {}).get(name, {})
            row = {"pipeline": label, "class": name}
            row.update({m: _num(scores.get(m)) for m in METRIC_COLUMNS})
            row["tolerant f1"] = _num(tol.get(name, {}).get("f1")) if name in tol else None
            row["support"] = scores.get("support")
            rows.append(row)
        for key, title in (("macro_all", "mean (3 classes)"), ("macro_curves", "mean (curves only)")):
            scores = summ.get(key, {})
            row = {"pipeline": label, "class": title}
            row.update({m: _num(scores.get(m)) for m in METRIC_COLUMNS})
            if key == "macro_curves" and tol:
                vals = [_num(tol[c].get("f1")) for c in ("curve1", "curve2") if c in tol]
                vals = [v for v in vals if v is not None]
                row["tolerant f1"] = float(np.mean(vals)) if vals else None
            else:
                row["tolerant f1"] = None
            row["support"] = None
            rows.append(row)
    return pd.DataFrame(rows, columns=["pipeline", "class", *METRIC_COLUMNS, "tolerant f1", "support"])


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def error_counts_frame(counts: Mapping[str, Mapping[str, int]]):
    """Error-map pixel counts (veer.metrics.error_counts) per pipeline as a table."""
    import pandas as pd

    names = {"missed": "missed", "extra": "extra", "wrong_curve": "wrong curve class", "correct": "correct",
             "ignored": "ignored (curves overlap)"}
    rows = []
    for pipe, c in counts.items():
        row = {"pipeline": PIPELINE_LABELS.get(pipe, pipe)}
        row.update({label: int(c.get(k, 0)) for k, label in names.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def display_table(frame, digits: int = 3):
    """A table for ``st.dataframe``: numbers as right-aligned text, missing values as a dash.

    Returns ``(frame, column_config)``. Scores get ``digits`` decimals, counts
    thousands separators. (Streamlit draws a missing number as "None"; a dash
    reads better in a table of scores.) Download the original frame, not this.
    """
    import pandas as pd

    out = frame.copy()
    config: dict[str, dict] = {}
    for c in frame.columns:
        col = frame[c]
        is_num = col.map(lambda v: isinstance(v, (int, float, np.integer, np.floating))
                         and not isinstance(v, bool)).any()
        if not is_num:
            continue
        values = pd.to_numeric(col, errors="coerce")
        finite = values.dropna()
        counts = bool(len(finite)) and finite.abs().max() >= 2 and bool((finite % 1 == 0).all())
        out[c] = [("–" if pd.isna(v) else (f"{v:,.0f}" if counts else f"{v:.{digits}f}")) for v in values]
        config[str(c)] = {"alignment": "right"}
    return out, config


def show_table(container, frame, **kwargs):
    """Show ``frame`` with :func:`display_table` in a Streamlit container (``st`` or a column)."""
    table, config = display_table(frame)
    kwargs.setdefault("hide_index", True)
    kwargs.setdefault("width", "stretch")
    return container.dataframe(table, column_config=config, **kwargs)


def frame_csv(frame) -> bytes:
    """A DataFrame as CSV bytes for a download button."""
    return frame.to_csv(index=False, quoting=csv.QUOTE_MINIMAL).encode("utf-8")


# ---------------------------------------------------------------------------
# Figures: the results explorer
# ---------------------------------------------------------------------------

def per_class_from_report(report: Mapping | None, mode: str) -> dict[str, dict[str, float | None]]:
    """{class: {f1, iou}} of one pipeline in an evaluation report ({} when absent)."""
    pipe = (report or {}).get("pipelines", {}).get(mode)
    if not isinstance(pipe, Mapping):
        return {}
    return {name: {"f1": find_number(pipe, f"per_class/{name}/f1"), "iou": find_number(pipe, f"per_class/{name}/iou")}
            for name in CLASS_NAMES}


def per_class_from_cards(mode: str, models_dir: Path | None = None) -> dict[str, dict[str, float | None]]:
    """{class: {f1, iou}} from the model cards' validation figures ({} when absent).

    Joint: the joint model's per-class scores. Separate: each binary mask's
    score on its own target class (how well that mask alone finds its class).
    """
    names = pipelines()
    out: dict[str, dict[str, float | None]] = {}
    if mode == "joint":
        card = load_card(names["joint"][0], models_dir)
        per = (card or {}).get("validation", {}).get("per_class", {}) if card else {}
        for name in CLASS_NAMES:
            if isinstance(per.get(name), Mapping):
                out[name] = {"f1": _num(per[name].get("f1")), "iou": _num(per[name].get("iou"))}
        return out
    for model in names.get("separate", []):
        card = load_card(model, models_dir)
        if card and card.get("target") in CLASS_NAMES:
            s = card_scores(card)
            out[str(card["target"])] = {"f1": s["f1"], "iou": s["iou"]}
    return out


def comparison_frame(sources: Mapping[str, Mapping[str, Mapping[str, float | None]]]):
    """Long table (class, source, metric, value) from {source: {class: {f1, iou}}}."""
    import pandas as pd

    rows = []
    for source, per in sources.items():
        for name in CLASS_NAMES:
            for metric in ("f1", "iou"):
                value = _num((per.get(name) or {}).get(metric))
                if value is not None:
                    rows.append({"class": name, "source": source, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=["class", "source", "metric", "value"])


def means_frame(sources: Mapping[str, Mapping[str, Mapping[str, float | None]]],
                archive_masks: Sequence[float] = ()):
    """Both averages per source: over 3 classes (with background) and over the curves only.

    ``archive_masks`` (the archive's three separate-mask F1s, classes not
    stated) adds a row with their plain mean in the 3-class F1 column.
    """
    import pandas as pd

    metric_names = {"f1": "F1", "iou": "IoU"}
    rows = []
    for source, per in sources.items():
        row: dict[str, Any] = {"source": source}
        for metric in ("f1", "iou"):
            for label, names in (("3 classes", CLASS_NAMES), ("curves only", ("curve1", "curve2"))):
                vals = [_num((per.get(n) or {}).get(metric)) for n in names]
                row[f"{metric_names[metric]} mean, {label}"] = (float(np.mean(vals)) if all(v is not None for v in vals)
                                                        else None)
        rows.append(row)
    if len(archive_masks):
        rows.append({"source": "archive separate (3 masks)", "F1 mean, 3 classes": float(np.mean(archive_masks))})
    return pd.DataFrame(rows, columns=["source", "F1 mean, 3 classes", "F1 mean, curves only",
                                       "IoU mean, 3 classes", "IoU mean, curves only"])


INTERVALS_CAPTION = (f"The middle 95 % of the F1 scores of {BOOTSTRAP_DRAWS:,} resamples of these logs, drawn with "
                     "replacement: how far each figure could move with another set of logs as large as this one.")


def intervals_frame(report: Mapping | None):
    """Each pipeline's F1 with its 95 % interval over the report's logs (see veer.metrics.bootstrap_f1).

    Uses the interval the report holds, or works it out from its per-sample
    confusion matrices (reports written before intervals were). Empty when
    fewer than two logs were scored.
    """
    import pandas as pd

    columns = ["pipeline", "logs", "score", "F1", "95 % interval, low", "95 % interval, high"]
    rows = []
    for mode, pipe in ((report or {}).get("pipelines") or {}).items():
        interval = pipe.get("interval")
        if not interval:
            matrices = [s["pipelines"][mode]["confusion_matrix"] for s in (report or {}).get("samples", [])
                        if not s.get("error") and mode in (s.get("pipelines") or {})
                        and s["pipelines"][mode].get("confusion_matrix")]
            interval = bootstrap_f1(np.array(matrices)) if matrices else None   # None for one log
        if not interval:
            continue
        label = PIPELINE_LABELS.get(mode, mode)
        per = interval.get("per_class", {})
        for score, point, pair in (("mean (3 classes)", find_number(pipe, "macro_all/f1"), interval["macro_all"]),
                                   *((name, find_number(pipe, f"per_class/{name}/f1"), per.get(name))
                                     for name in ("curve1", "curve2"))):
            if pair:
                rows.append({"pipeline": label, "logs": interval.get("logs"), "score": score, "F1": point,
                             "95 % interval, low": _num(pair[0]), "95 % interval, high": _num(pair[1])})
    return pd.DataFrame(rows, columns=columns)


# whose labels the digitiser traced, in an evaluation report: (key, label)
DIGITIZE_SOURCES = (("joint", PIPELINE_LABELS["joint"]), ("separate", PIPELINE_LABELS["separate"]),
                    ("truth", "Truth masks (the digitiser alone)"))
# (key in veer.digitize.pool_scores, column) and the targets of the digitisation issue
CURVE_QUALITY_COLUMNS = (("median_px", "median error (px)"), ("within3", "rows within 3 px"),
                         ("missed", "rows missed"), ("wrap_share", "wrap-arounds followed"),
                         ("wrap_step_share", "wrap steps right"), ("r2_median", "R² (median over logs)"))
CURVE_TARGETS = {"curve1": {"median_px": 1.0, "within3": 0.95, "wrap_share": 0.95},
                 "curve2": {"median_px": 1.0, "within3": 0.90, "wrap_share": 0.95}}
CURVES_CAPTION = ("Curves traced from each pipeline's labels (and from the truth masks, which shows the "
                  "digitiser's own error), pooled over the logs and scored against the true centre lines: a row "
                  "counts as within 3 px when the traced position is, and a wrap-around as followed when the values "
                  "right after it are right. Targets: a median error of at most 1 px, at least the shares shown.")
ROW_KINDS_CAPTION = ("Each true row of a curve, by what the truth mask shows at its centre: the curve's own ink, "
                     "a gap in it (between the dashes or dots of a dashed line), or the other curve running there. "
                     "Hover a bar for its share of the curve's rows.")


def _digitized_curves(report: Mapping | None) -> Iterator[tuple[str, Mapping, str, Mapping]]:
    """(source label, its pooled scores, curve name, that curve's pooled scores) for every source
    of :data:`DIGITIZE_SOURCES` and curve with scored rows in a report."""
    report = report or {}
    for key, label in DIGITIZE_SOURCES:
        dz = report.get("digitize_truth") if key == "truth" else \
            (report.get("pipelines", {}).get(key) or {}).get("digitize")
        pooled = dz.get("pooled") if isinstance(dz, Mapping) else None
        if not isinstance(pooled, Mapping):
            continue
        for name in ("curve1", "curve2"):
            p = pooled.get(name)
            if isinstance(p, Mapping) and p.get("n_truth_rows"):
                yield label, pooled, name, p


def curve_quality_frame(report: Mapping | None):
    """Digitised-curve figures of a report: one row per (labels traced, curve), and the targets.

    Empty when the report has no pooled curve scores (digitisation off).
    """
    import pandas as pd

    cols = ["traced from", "curve", "logs"] + [label for _, label in CURVE_QUALITY_COLUMNS] + \
        ["rows within 3 px, 95 % interval", "wrap-arounds followed, 95 % interval"]
    rows = []
    for label, pooled, name, p in _digitized_curves(report):
        row: dict[str, Any] = {"traced from": label, "curve": name, "logs": pooled.get("logs")}
        row.update({col: _num(p.get(k)) for k, col in CURVE_QUALITY_COLUMNS})
        for k, col in (("within3_interval", "rows within 3 px, 95 % interval"),
                       ("wrap_share_interval", "wrap-arounds followed, 95 % interval")):
            iv = p.get(k)
            row[col] = f"{iv[0]:.3f}-{iv[1]:.3f}" if isinstance(iv, Sequence) and len(iv) == 2 \
                and all(_num(v) is not None for v in iv) else None
        rows.append(row)
    if rows:
        for name, targets in CURVE_TARGETS.items():
            row = {"traced from": "target", "curve": name}
            row.update({col: targets.get(k) for k, col in CURVE_QUALITY_COLUMNS})
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def row_kinds_frame(report: Mapping | None):
    """Rows within 3 px by where the true curve runs (veer.digitize.ROW_KINDS), long format:
    traced from, curve, where, share of rows, rows within 3 px. A kind under 0.5 % of a curve's
    rows is left out (a solid line's few rows off its ink are noise). Empty for reports without them."""
    import pandas as pd

    from veer.digitize import ROW_KIND_WORDS, row_kinds_shown

    rows = [{"traced from": label, "curve": name, "where": ROW_KIND_WORDS[kind], "share of rows": share,
             "rows within 3 px": _num(within)}
            for label, _, name, p in _digitized_curves(report) for kind, share, within in row_kinds_shown(p)]
    return pd.DataFrame(rows, columns=["traced from", "curve", "where", "share of rows", "rows within 3 px"])


def row_kinds_figure(frame):
    """Grouped bars: rows within 3 px by where the true curve runs, one panel per curve."""
    import plotly.express as px

    fig = px.bar(frame, x="where", y="rows within 3 px", color="traced from", facet_col="curve", barmode="group",
                 text="rows within 3 px", hover_data={"share of rows": ":.1%"},
                 color_discrete_sequence=list(SOURCE_COLORS[:2]) + ["#888888"],
                 category_orders={"curve": ["curve1", "curve2"]},    # kinds in the frame's order, per panel
                 labels={"where": ""})
    fig.update_traces(texttemplate="%{text:.0%}", textposition="outside", cliponaxis=False)
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%")
    fig.update_xaxes(matches=None)           # each panel shows only the kinds its curve has
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), legend_title_text="",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def samples_frame(report: Mapping | None):
    """Per-sample scores of an evaluation report: one row per (sample, pipeline)."""
    import pandas as pd

    rows = []
    for sample in (report or {}).get("samples", []):
        base = {"sample": sample.get("name"), "scan": sample.get("scan"), "style": sample.get("style"),
                "Mpx": _num(sample.get("megapixels"))}
        if sample.get("error"):
            rows.append({**base, "pipeline": "", "error": sample["error"]})
            continue
        for mode, s in (sample.get("pipelines") or {}).items():
            rows.append({
                **base,
                "pipeline": mode,
                "F1 (3 classes)": find_number(s, "macro_all/f1"),
                "IoU (3 classes)": find_number(s, "macro_all/iou"),
                "F1 (curves)": find_number(s, "macro_curves/f1"),
                "curve1 F1": find_number(s, "per_class/curve1/f1"),
                "curve2 F1": find_number(s, "per_class/curve2/f1"),
                "tolerant F1 (curves)": find_number(s, "tolerant/macro_curves_f1"),
                "conflict share": find_number(s, "conflicts/conflict_share"),
                "gap share": find_number(s, "conflicts/gap_share"),
                "seconds": find_number(s, "seconds"),
            })
    return pd.DataFrame(rows)


def history_frame(rows: Sequence[Mapping]):
    """Training history rows (possibly nested) as a flat DataFrame sorted by step."""
    import pandas as pd

    flat = [flatten(r) for r in rows if isinstance(r, Mapping)]
    frame = pd.DataFrame(flat)
    if "step" in frame.columns:
        frame = frame.sort_values("step").reset_index(drop=True)
    return frame


def _score_columns(frame, metric: str) -> dict[str, str]:
    """{class name: column} for history columns holding ``metric`` of a class."""
    found: dict[str, str] = {}
    for col in frame.columns:
        parts = [p for p in str(col).replace(".", "/").split("/") if p]
        if not parts or parts[-1].lower() != metric:
            continue
        for name in CLASS_NAMES + ("target",):
            if name in parts and name not in found:
                found[name] = col
    return found


def history_figure(rows: Sequence[Mapping], title: str = ""):
    """Loss and per-class validation F1 / IoU over training steps."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    frame = history_frame(rows)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("training loss", "validation F1", "validation IoU"),
                        horizontal_spacing=0.07)
    x = frame["step"] if "step" in frame.columns else frame.index
    if "loss" in frame.columns:
        fig.add_trace(go.Scatter(x=x, y=frame["loss"], name="loss", mode="lines+markers",
                                 line=dict(color="#444"), marker=dict(size=4)), row=1, col=1)
    if "val_macro_f1" in frame.columns:
        fig.add_trace(go.Scatter(x=x, y=frame["val_macro_f1"], name="macro F1", mode="lines+markers",
                                 line=dict(color="#222", dash="dash"), marker=dict(size=4)), row=1, col=2)
    colors = dict(CLASS_COLORS_BY_NAME)
    colors["background"] = "#9e9e9e"  # the legend's light grey is too faint for a line
    colors["target"] = VERDICT_COLOR
    for col_i, metric in ((2, "f1"), (3, "iou")):
        for name, col in _score_columns(frame, metric).items():
            sel = frame[col].notna()
            fig.add_trace(go.Scatter(x=x[sel], y=frame[col][sel], mode="lines+markers", name=f"{name} {metric.upper()}",
                                     line=dict(color=colors.get(name, "#444")), marker=dict(size=4),
                                     legendgroup=name, showlegend=(metric == "f1")), row=1, col=col_i)
        fig.update_yaxes(range=[0, 1], row=1, col=col_i)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=50, b=10), title=title or None,
                      legend=dict(orientation="h", y=-0.25))
    return fig


CLASS_COLORS_BY_NAME = {c.name: c.color for c in CLASSES}


#: Bar colours for the sources compared (kept apart from the class colours, which mean classes).
SOURCE_COLORS = ("#332288", "#44aa99", "#aaaaaa", "#dddddd")


def comparison_figure(frame, metric: str = "f1"):
    """Grouped bars: per class (x), one bar per source (joint, separate, archive).

    ``frame`` has columns class, source, metric, value (long format).
    """
    import plotly.express as px

    sub = frame[frame["metric"] == metric]
    fig = px.bar(sub, x="class", y="value", color="source", barmode="group", text="value",
                 color_discrete_sequence=list(SOURCE_COLORS),
                 labels={"value": {"f1": "F1", "iou": "IoU"}.get(metric, metric), "class": ""})
    fig.update_traces(texttemplate="%{text:.2f}", textposition="outside", cliponaxis=False)
    fig.update_yaxes(range=[0, 1.1])
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), legend_title_text="",
                      legend=dict(orientation="h", y=-0.15))
    return fig


def confusion_figure(matrix: Sequence[Sequence[float]], title: str = "",
                     names: Sequence[str] = CLASS_NAMES):
    """A confusion matrix (rows truth, columns prediction) as a row-normalised heatmap."""
    import plotly.graph_objects as go

    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    text = [[f"{share[i, j]:.1%}<br>{int(m[i, j]):,}" for j in range(m.shape[1])] for i in range(m.shape[0])]
    fig = go.Figure(go.Heatmap(z=share, x=[f"pred {n}" for n in names], y=[f"true {n}" for n in names],
                               text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
                               showscale=False, hovertemplate="%{y} / %{x}: %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40 if title else 10, b=10), title=title or None)
    return fig


BENCH_ROWS = (
    ("segment/megapixels", "log size", "Mpx"),
    ("segment/device", "device", ""),
    ("segment/tiles", "tiles", ""),
    ("segment/model_load_s", "model load", "s"),
    ("segment/read_s", "read PNG", "s"),
    ("segment/segment_s", "segment", "s"),
    ("segment/write_s", "write mask PNG", "s"),
    ("segment/end_to_end_s", "end to end (read + segment + write)", "s"),
    ("segment/segment_mpx_per_s", "segment throughput", "Mpx/s"),
    ("segment/mpx_per_s", "end-to-end throughput", "Mpx/s"),
    ("segment/peak_rss_mb", "peak memory (RSS)", "MB"),
    ("segment/naive/segment_s_est", "naive way, segment (estimated)", "s"),
    ("segment/speedup", "speed-up over the naive way", "x"),
    ("segment/gmac_per_mpx", "network cost", "GMAC/Mpx"),
    ("segment/gflop_per_s", "achieved", "GFLOP/s"),
    ("segment/matmul_gflops", "CPU fp32 matmul peak", "GFLOP/s"),
    ("synth/tiles_per_s", "synthetic training tiles (single core)", "tiles/s"),
    ("segment/generate_log_s", "synthesise a whole log", "s"),
    ("machine/cpu", "CPU", ""),
    ("machine/cores", "cores", ""),
    ("created", "measured on", ""),
)


def bench_frame(bench: Mapping):
    """The benchmark record (assets/bench.json, ``python -m veer bench --save``) as a readable table.

    Known figures come first with plain names and units; any other number in
    the record follows under its own key, so nothing measured is hidden.
    """
    import pandas as pd

    flat = flatten(bench)
    rows, used = [], set()
    for key, label, unit in BENCH_ROWS:
        if key in flat and flat[key] is not None:
            value = flat[key]
            rows.append({"measure": label, "value": f"{value:,.3g}" if isinstance(value, float) else str(value),
                         "unit": unit})
            used.add(key)
    for key, value in flat.items():
        if key in used or key.startswith("targets/") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            rows.append({"measure": key, "value": f"{value:,.4g}", "unit": ""})
    return pd.DataFrame(rows, columns=["measure", "value", "unit"])


def bench_figure(bench: Mapping, anchors: Mapping | None = None):
    """Measured segmentation throughput (Mpx/s) next to the published CPU reference figures.

    Returns None when the record holds no throughput figures.
    """
    import plotly.graph_objects as go

    seg = bench.get("segment") if isinstance(bench.get("segment"), Mapping) else {}
    ours: dict[str, float] = {}
    if _num(seg.get("segment_mpx_per_s")):
        ours["veer: segment"] = float(seg["segment_mpx_per_s"])
    if _num(seg.get("mpx_per_s")):
        ours["veer: end to end"] = float(seg["mpx_per_s"])
    naive_s = find_number(seg, "naive/segment_s_est")
    if naive_s and _num(seg.get("megapixels")):
        ours["naive way (estimated)"] = float(seg["megapixels"]) / naive_s
    if not ours:
        return None
    fig = go.Figure(go.Bar(x=list(ours.values()), y=list(ours.keys()), orientation="h",
                           name=f"measured ({seg.get('device', 'this machine')})",
                           marker_color=[VERDICT_COLOR if k.startswith("veer") else "#e6a77f" for k in ours],
                           text=[f"{v:.2f}" for v in ours.values()], textposition="outside", cliponaxis=False))
    ref = (anchors or {}).get("published", {}).get("cpu_throughput_mpx_s", {}).get("rows", [])
    if ref:
        lows = [float(r["low"]) for r in ref]
        highs = [float(r["high"]) for r in ref]
        fig.add_trace(go.Bar(x=highs, y=[f"published: {r['setting']}" for r in ref], orientation="h",
                             name="published, ~2 M-param U-Net on 2 EPYC cores", marker_color="#bdbdbd",
                             text=[f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}" for lo, hi in zip(lows, highs)],
                             textposition="outside", cliponaxis=False))
    fig.update_xaxes(title_text="megapixels per second")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=160 + 30 * (len(ours) + len(ref)), margin=dict(l=10, r=40, t=10, b=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


# ---------------------------------------------------------------------------
# Figures: the decision lever
# ---------------------------------------------------------------------------

def fork_figure(verdict, *, semantic_lines: Sequence[str] = (), instance_lines: Sequence[str] = (),
                height: int = 430):
    """The fork: a question node, two branches, and the verdict arrow.

    The arrow's angle follows the verdict's score (tanh-squashed), so it swings
    towards the instance branch as the answers push that way and sits firmly on
    a branch when the call is clear. ``semantic_lines`` / ``instance_lines`` are
    short figure lines shown in each branch's box.
    """
    import math

    import plotly.graph_objects as go

    chosen = verdict.branch
    fig = go.Figure()
    root = (1.5, 5.0)
    ends = {"semantic": (5.0, 7.9), "instance": (5.0, 2.1)}
    # branches
    for name, (x, y) in ends.items():
        on = name == chosen
        fig.add_shape(type="line", x0=root[0] + 1.45, y0=root[1], x1=x, y1=y,
                      line=dict(color="#555" if on else "#c8c8c8", width=3 if on else 2))
    fig.add_annotation(x=0.05, y=8.9, text="<b>yes</b>: known, fixed, named", showarrow=False, xanchor="left",
                       font=dict(size=13, color="#444"))
    fig.add_annotation(x=0.05, y=1.1, text="<b>no</b>: open, many, look-alike", showarrow=False, xanchor="left",
                       font=dict(size=13, color="#444"))
    # question node
    fig.add_shape(type="rect", x0=0.05, y0=3.5, x1=2.95, y1=6.5, line=dict(color="#555", width=2),
                  fillcolor="#f7f7f7")
    fig.add_annotation(x=1.5, y=5.0, showarrow=False, align="center", font=dict(size=14, color="#222"),
                       text="<b>THE QUESTION</b><br>Is the class set known<br>ahead of time, small,<br>"
                            "fixed and named?")
    # branch boxes
    boxes = {"semantic": (semantic_lines, "SEMANTIC: one label per pixel"),
             "instance": (instance_lines, "INSTANCE: each object its own mask")}
    for name, (lines, head) in boxes.items():
        x, y = ends[name]
        on = name == chosen
        fig.add_shape(type="rect", x0=x, y0=y - 2.0, x1=12.45, y1=y + 2.0,
                      line=dict(color=VERDICT_COLOR if on else "#c8c8c8", width=3 if on else 1.5),
                      fillcolor="#fff4ec" if on else "#fafafa")
        body = "<br>".join(lines)
        fig.add_annotation(x=x + 0.2, y=y, xanchor="left", showarrow=False, align="left",
                           font=dict(size=13, color="#222" if on else "#777"),
                           text=f"<b>{head}</b><br>{body}")
    # the verdict arrow: its angle follows the score; positive scores point down to instance
    swing = math.tanh(verdict.score / 1.5)
    lean = (0.3 + 0.7 * abs(swing)) * (1 if verdict.branch == "instance" else -1)
    angle = -lean * math.radians(32)
    r = 1.75
    start = (root[0] + 1.5, root[1])
    tip = (start[0] + r * math.cos(angle), start[1] + r * math.sin(angle) * 2.0)
    fig.add_annotation(x=tip[0], y=tip[1], ax=start[0], ay=start[1], xref="x", yref="y", axref="x", ayref="y",
                       showarrow=True, arrowhead=2, arrowsize=1.3, arrowwidth=6, arrowcolor=VERDICT_COLOR,
                       text="")
    fig.update_xaxes(visible=False, range=[0, 12.5], fixedrange=True)
    fig.update_yaxes(visible=False, range=[-0.1, 10.1], fixedrange=True)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0), plot_bgcolor="white",
                      paper_bgcolor="white", showlegend=False)
    return fig


def lever_scale_figure(n: int, split_at: float, marks: Sequence[int] = (2, 12, 20, 30, 40),
                       lo: int = 2, hi: int = 40, height: int = 110):
    """The lever's scale: the semantic and instance zones for the current answers,
    tick marks, and the current object count as an orange marker."""
    import plotly.graph_objects as go

    fig = go.Figure()
    split = float(np.clip(split_at, lo, hi))
    zones = (("semantic", lo, split, "#e6edf5"), ("instance", split, hi, "#f3e6ee"))
    for name, x0, x1, color in zones:
        if x1 - x0 <= 0:
            continue
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=0, y1=1, fillcolor=color, line=dict(width=0), layer="below")
        fig.add_annotation(x=(x0 + x1) / 2, y=0.5, text=name, showarrow=False, font=dict(size=12, color="#555"))
    if lo < split_at < hi:
        fig.add_shape(type="line", x0=split_at, x1=split_at, y0=-0.1, y1=1.1, line=dict(color="#555", dash="dot"))
        fig.add_annotation(x=split_at, y=1.15, text=f"tips at about {split_at:.3g}", showarrow=False,
                           yanchor="bottom", font=dict(size=11, color="#555"))
    fig.add_trace(go.Scatter(x=[n], y=[1.0], mode="markers", marker=dict(symbol="triangle-down", size=16,
                             color=VERDICT_COLOR), hovertemplate="%{x} objects<extra></extra>"))
    fig.update_xaxes(range=[lo - 0.8, hi + 0.8], tickvals=list(marks), ticks="outside", showgrid=False,
                     zeroline=False, fixedrange=True)
    fig.update_yaxes(visible=False, range=[-0.15, 1.6], fixedrange=True)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=5, b=25), plot_bgcolor="white", showlegend=False)
    return fig


def demo_figure(demo, height: int = 360):
    """Three views of the lever's demo: the drawing, the semantic labelling, the components."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sem_rgb = map_overlay(np.full(demo.semantic.shape, 255, np.uint8), demo.semantic,
                          {1: CLASS_COLORS[CURVE1]}, alpha=1.0)
    titles = (f"Drawn: {demo.n_drawn} same-style traces",
              "Semantic: one class, all merged",
              f"Connected components: {demo.n_found} found")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.02,
                        shared_xaxes="all", shared_yaxes="all")
    for i, img in enumerate((color_instances(demo.objects), sem_rgb, color_instances(demo.components, seed=3)),
                            start=1):
        fig.add_trace(go.Image(source=png_data_uri(img), hoverinfo="skip"), row=1, col=i)
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, matches="x",
                     showline=True, mirror=True, linecolor="#bbb")
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, matches="y",
                     showline=True, mirror=True, linecolor="#bbb")
    fig.update_layout(height=height, margin=dict(l=2, r=2, t=30, b=2))
    return fig


# ---------------------------------------------------------------------------
# A small store for finished results (so display changes never rerun models)
# ---------------------------------------------------------------------------

class ResultCache:
    """A thread-safe, size-bounded LRU of finished results keyed by content hash.

    The dashboard keeps one instance per server process (st.cache_resource)
    and stores segmentations under (content hash, page, pipeline); a display
    change reruns the page, finds the result here, and never touches a model.
    """

    def __init__(self, max_bytes: int = 1_500_000_000, sizeof: Callable[[Any], int] | None = None):
        self.max_bytes = int(max_bytes)
        self._sizeof = sizeof or _nbytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value) -> None:
        size = self._sizeof(value)
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (value, size)
            total = sum(s for _, s in self._items.values())
            while total > self.max_bytes and len(self._items) > 1:
                _, (_, s) = self._items.popitem(last=False)
                total -= s

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _nbytes(value, depth: int = 0) -> int:
    """Rough memory of a stored result: its arrays and tables (nested dicts included)."""
    if isinstance(value, np.ndarray):
        return max(value.nbytes, 1)
    total = 0
    if depth < 3 and isinstance(value, Mapping):
        total += sum(_nbytes(v, depth + 1) for v in value.values())
    for attr in ("labels", "probs", "conflict"):
        arr = getattr(value, attr, None)
        if isinstance(arr, np.ndarray):
            total += arr.nbytes
    table = getattr(value, "table", None)
    if table is not None and hasattr(table, "memory_usage"):
        total += int(table.memory_usage(deep=False).sum())
    return max(total, 1)


def content_key(data: bytes) -> str:
    """A short content hash of uploaded bytes (cache key)."""
    import hashlib

    return hashlib.sha256(data).hexdigest()[:24]


