"""Live segmentation: a scan in, both pipelines side by side, conflicts, scores, downloads.

Layout and widgets only. Reading is veer.io, segmenting veer.infer, scoring
veer.evaluate / veer.metrics, pictures veer.viz. Finished results are kept in a
process-wide store keyed by (file content, page, pipeline), so changing any
display option reruns this page without touching a model.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st

from veer import viz

viz.ensure_navigation()
from veer.classes import CLASSES, CURVE1, CURVE2, read_mask
from veer.errors import VeerError
from veer.io import count_pages, png_bytes, read_scan, safe_stem

SCAN_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"]
SHORT_LABELS = {c.index: c.label.split(" (")[0] for c in CLASSES}
MODES = ("joint", "separate")


# --------------------------------------------------------------------------- cached steps

@st.cache_resource
def result_store() -> viz.ResultCache:
    """Finished segmentations and scores, shared by every session of this server."""
    return viz.ResultCache()


@st.cache_data(max_entries=8, show_spinner="Reading the scan...")
def read_cached(key: str, page: int, name: str, _data: bytes):
    return read_scan(_data, name=name, page=page)


@st.cache_data(max_entries=8, show_spinner=False)
def pages_cached(key: str, name: str, _data: bytes) -> int:
    return count_pages(_data, name=name)


def bundled_samples() -> list[Path]:
    """The bundled samples with truth (empty when veer.synth or the files are missing)."""
    try:
        from veer.synth import find_samples
    except ImportError:
        return []
    try:
        return list(find_samples(viz.SAMPLES_DIR))
    except (OSError, VeerError):
        return []


def sample_truth(path: Path):
    """The sample's truth (veer.synth.Truth: mask, centre lines, meta), or None."""
    from veer.synth import load_truth

    try:
        return load_truth(path)
    except VeerError:
        return None


def load_upload(name: str, data: bytes, page: int = 0):
    """Read an uploaded scan: returns (scan, cache key). Raises VeerError on a bad file."""
    key = viz.content_key(data)
    n_pages = pages_cached(key, name, data)
    page = min(max(int(page), 0), n_pages - 1)
    return read_cached(key, page, name, data), key


def signature(mode: str) -> str:
    """Which weights and scales a pipeline runs with now, for cache keys."""
    return (f"{viz.models_signature(mode)}|scales={','.join(f'{v:g}' for v in SCALES)}"
            f"|scale_views={viz.SHARPER_SCALE_VIEWS}")


def segment(mode: str, key: str, gray: np.ndarray, bar):
    """The pipeline's result for this content, from the store or by running the model."""
    store = result_store()
    rkey = (key, mode, signature(mode))
    hit = store.get(rkey)
    if hit is not None:
        return hit
    from veer.infer import get_segmenter

    label = viz.PIPELINE_LABELS[mode]
    bar.progress(0.0, text=f"{label}: loading the model...")
    seg = get_segmenter(mode, models_dir=viz.MODELS_DIR, scales=SCALES, scale_views=viz.SHARPER_SCALE_VIEWS)

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{label}: tile {done} of {total}")

    def queued(position: int) -> None:
        bar.progress(0.0, text=f"{label}: waiting for another segmentation to finish ({position} in the queue)")

    result = seg.segment(gray, progress=progress, on_queued=queued)
    store.put(rkey, result)
    return result


def scored(mode: str, key: str, truth_key: str, truth: np.ndarray, result) -> dict:
    """All scores of one pipeline against the truth (cached with the result)."""
    from veer.evaluate import score_prediction
    from veer.metrics import error_counts, error_map

    store = result_store()
    skey = (key, mode, signature(mode), truth_key, "scores")
    hit = store.get(skey)
    if hit is not None:
        return hit
    score = score_prediction(truth, result.labels, result.conflict if mode == "separate" else None)
    errors = error_map(truth, result.labels)
    score["error_map"] = errors
    score["error_counts"] = error_counts(errors)
    store.put(skey, score)
    return score


def digitize_module():
    """veer.digitize when it offers the whole pipeline, else None."""
    try:
        import veer.digitize as dz
    except ImportError:
        return None
    needed = ("find_tracks", "digitize_labels", "Calibration", "ValueScale", "to_las", "csv_columns")
    return dz if all(hasattr(dz, n) for n in needed) else None


def digitise_panel(scan, key: str, results: dict, truth_obj, gray_view, factor: int, top: int) -> None:
    """Tracks (found, editable), calibration, curves against depth, CSV / LAS downloads."""
    import pandas as pd

    dz = digitize_module()
    if dz is None:
        st.info("Curve digitisation needs veer.digitize, which is not available in this build.",
                icon=":material/info:")
        return
    store = result_store()
    h, w = scan.gray.shape
    meta = getattr(truth_obj, "meta", None)
    defaults = viz.calibration_defaults(meta, h)
    c1, c2 = st.columns([1, 2])
    mode = c1.radio("Digitise the labels of", list(results), format_func=viz.PIPELINE_LABELS.get,
                    key="dig_mode")
    tkey = (key, "tracks", mode, signature(mode))
    found = store.get(tkey)
    if found is None:
        try:  # the labels help: a space between borders that holds curve ink is a track
            found = list(dz.find_tracks(scan.gray, labels=results[mode].labels))
        except VeerError:
            found = []
        store.put(tkey, found)
    sources = ["found in the scan"] + (["the sample's truth"] if defaults["tracks"] else [])
    origin = c1.radio("Tracks", sources, key="dig_track_source",
                      help="Tracks are the plotting areas between heavy vertical borders. Edit the table to fix "
                           "them: change a border, delete a row, add one.")
    start = defaults["tracks"] if origin == "the sample's truth" else [(t.x0, t.x1) for t in found]
    with c2:
        edited = st.data_editor(pd.DataFrame(start or [], columns=["x0", "x1"], dtype=float), num_rows="dynamic",
                                key=f"dig_tracks_{key}_{origin}", width="stretch",
                                column_config={"x0": st.column_config.NumberColumn("left border x0 (px)"),
                                               "x1": st.column_config.NumberColumn("right border x1 (px)")})
    rows = [(float(a), float(b)) for a, b in edited[["x0", "x1"]].dropna().itertuples(index=False)]
    bad = [f"{a:g}:{b:g}" for a, b in rows if not (0 <= a < b <= w)]
    if not rows or bad:
        st.warning("Give at least one track with 0 <= x0 < x1 <= the scan width"
                   + (f" (check {', '.join(bad)})" if bad else "") + ".", icon=":material/warning:")
        return
    same_as_found = origin == "found in the scan" and len(rows) == len(found) and all(
        abs(a - t.x0) < 1e-6 and abs(b - t.x1) < 1e-6 for (a, b), t in zip(rows, found))
    tracks = found if same_as_found else rows

    with st.form(f"dig_calibration_{key}"):
        st.markdown("**Calibration** (optional: without it you get pixel positions and track fractions; "
                    "depth is needed for LAS)")
        f1, f2 = st.columns([3, 1])
        points = f1.text_input("Known depths as ROW:DEPTH pairs (two or more)", defaults["depth_points"],
                               placeholder="e.g. 120:1500, 2920:1640")
        unit = f2.selectbox("Depth unit", ["ft", "m"], index=["ft", "m"].index(defaults["unit"])
                            if defaults["unit"] in ("ft", "m") else 0)
        scale_rows = defaults["scales"] if len(defaults["scales"]) == len(tracks) else []
        columns = ["left", "right", "scale", "curve1", "curve2"]
        blank = {"left": None, "right": None, "scale": "linear", "curve1": "", "curve2": ""}
        scales = st.data_editor(pd.DataFrame(scale_rows or [blank for _ in tracks], columns=columns),
                                num_rows="fixed", key=f"dig_scales_{key}_{len(tracks)}", width="stretch",
                                column_config={
                                    "left": st.column_config.NumberColumn("value at left border"),
                                    "right": st.column_config.NumberColumn("value at right border"),
                                    "scale": st.column_config.SelectboxColumn("scale", options=["linear", "log"]),
                                    "curve1": st.column_config.TextColumn(
                                        "curve1 LAS name", help="MNEM or MNEM:UNIT, e.g. GR:GAPI (default T1C1)"),
                                    "curve2": st.column_config.TextColumn(
                                        "curve2 LAS name", help="MNEM or MNEM:UNIT (default T1C2)")})
        wells = st.columns(len(viz.WELL_FIELDS))
        well = {k: col.text_input(label, key=f"dig_well_{k}") for col, (k, label) in zip(wells, viz.WELL_FIELDS)}
        st.form_submit_button("Digitise", type="primary")
    try:
        cal = viz.form_calibration(points, unit, scales.to_dict("records"), well)
        dkey = (key, mode, signature(mode), tuple(map(tuple, rows)), repr(cal))
        log = store.get(dkey)
        if log is None:
            with st.spinner("Tracing the curves..."):
                log = dz.digitize_labels(results[mode].labels, gray=scan.gray, tracks=tracks, calibration=cal,
                                         shared=getattr(results[mode], "shared", None))
            store.put(dkey, log)
    except VeerError as exc:
        st.error(str(exc), icon=":material/error:")
        return

    info = log.info
    st.caption(f"{info.get('n_tracks', len(tracks))} track(s); curve1 found on {info.get('curve1_rows', 0):,} rows, "
               f"curve2 on {info.get('curve2_rows', 0):,} rows of {h:,}."
               + (f" Depth: {log.depth.describe()}." if log.depth is not None else " No depth calibration."))
    left, right = st.columns(2)
    left.plotly_chart(viz.tracks_figure(gray_view, factor=factor, row0=top, tracks=tracks, table=log.table),
                      key="dig_tracks_fig", config={"scrollZoom": True, "displaylogo": False})
    right.plotly_chart(viz.curves_figure(log, height=viz.auto_height(gray_view.shape, 2)), key="dig_curves_fig",
                       config={"displaylogo": False})
    if truth_obj is not None and hasattr(dz, "score_curves"):
        try:
            scores = dz.score_curves(truth_obj, log.table)
            st.markdown("**Against the sample's true curves**")
            viz.show_table(st, pd.DataFrame(viz.flatten_scores(scores)))
        except VeerError as exc:
            st.caption(f"Curve scores not available: {exc}")
    stem = safe_stem(scan.name)
    d1, d2 = st.columns(2)
    d1.download_button("Curves per row (CSV)", data=partial(viz.curves_csv, log),
                       file_name=f"{stem}.{mode}.curves.csv", mime="text/csv", on_click="ignore", key="dl_dig_csv")
    if log.depth is not None:
        d2.download_button("Curves by depth (LAS 2.0)", data=partial(viz.las_text, log), file_name=f"{stem}.{mode}.las",
                           mime="text/plain", on_click="ignore", key="dl_dig_las")
    else:
        d2.caption("LAS needs a depth calibration: give two ROW:DEPTH pairs above.")


# --------------------------------------------------------------------------- input

st.title("Live segmentation")
st.write("Pick a bundled sample or upload a scan. Both pipelines run on every pixel at full resolution; "
         "the pictures below are scaled to fit the screen.")

samples = bundled_samples()
src_col, sharp_col = st.columns([3, 2])
sharper = sharp_col.toggle(
    "Sharper thin strokes", key="sharper",
    help=f"Also runs every tile enlarged {viz.SHARPER_SCALES[-1]:g}x (once, without its mirror) and averages the "
         "two answers: on the 30 evaluation logs +0.0035 F1 for curve1 and +0.006 for curve2 (joint model), for "
         "about 1.45 times the time.")
SCALES = viz.SHARPER_SCALES if sharper else (1.0,)
if samples:
    source = src_col.radio("Scan", ["Bundled sample", "Upload a scan"], horizontal=True, key="source",
                           label_visibility="collapsed")
else:
    source = "Upload a scan"
    st.info("No bundled samples were found in assets/samples (generate them with "
            "`python -m veer synth --out assets/samples --n 4`). You can still upload a scan.",
            icon=":material/info:")

scan = key = truth = truth_obj = None
truth_key = ""
if source == "Bundled sample":
    sizes = {p: viz.image_size(p) for p in samples}
    smallest = min(range(len(samples)), key=lambda i: (sizes[samples[i]] or (1 << 20, 1 << 20))[0]
                   * (sizes[samples[i]] or (1 << 20, 1 << 20))[1])
    pick = st.selectbox("Sample", samples, index=smallest, key="sample",
                        format_func=lambda p: p.name + (f"  ({sizes[p][0]:,} x {sizes[p][1]:,} px)"
                                                        if sizes[p] else ""),
                        help="The smallest sample is picked first, so the page answers quickly.")
    try:
        data = Path(pick).read_bytes()
        scan, key = load_upload(pick.name, data)
        truth_obj = sample_truth(Path(pick))
        truth = np.asarray(truth_obj.mask) if truth_obj is not None else None
        truth_key = "sample:" + key
    except (OSError, VeerError) as exc:
        st.error(f"Cannot read the sample: {exc}", icon=":material/error:")
else:
    up_col, truth_col = st.columns(2)
    with up_col:
        upload = st.file_uploader("Scan (PNG, JPEG, TIFF incl. 1-bit and multi-page, BMP)", type=SCAN_TYPES,
                                  key="upload")
    with truth_col:
        truth_upload = st.file_uploader("Truth mask for this scan (optional: PNG, values 0/1/2, 255 ignored)",
                                        type=["png"], key="truth_upload")
    if upload is not None:
        data = upload.getvalue()
        try:
            n_pages = pages_cached(viz.content_key(data), upload.name, data)
            page = 0
            if n_pages > 1:
                page = st.number_input(f"Page (the file has {n_pages})", min_value=1, max_value=n_pages,
                                       value=1, step=1, key="page") - 1
            scan, key = load_upload(upload.name, data, page)
            key = f"{key}:p{page}"
        except VeerError as exc:
            st.error(str(exc), icon=":material/error:")
    if scan is not None and truth_upload is not None:
        try:
            truth = read_mask(truth_upload.getvalue(), image_shape=scan.gray.shape, name=truth_upload.name)
            truth_key = viz.content_key(truth_upload.getvalue())
        except VeerError as exc:
            st.error(f"Truth mask not used: {exc}", icon=":material/error:")
            truth = None

if scan is None:
    st.stop()

h, w = scan.gray.shape
facts = [f"{w:,} x {h:,} px ({scan.megapixels:.1f} Mpx)", f"mode {scan.mode}"]
if scan.format:
    facts.append(scan.format)
if scan.n_pages > 1:
    facts.append(f"page {scan.page + 1} of {scan.n_pages}")
if scan.dpi:
    facts.append(f"{scan.dpi[0]:.0f} dpi")
facts.append("truth available" if truth is not None else "no truth: scores need a truth mask")
st.caption(f"**{scan.name}** · " + " · ".join(facts))

# --------------------------------------------------------------------------- run both pipelines

results: dict = {}
failures: dict[str, str] = {}
bar = st.empty()
for mode in MODES:
    try:
        results[mode] = segment(mode, key, scan.gray, bar)
    except ImportError:
        failures[mode] = "the segmenter (veer.infer) is not installed in this build"
    except VeerError as exc:
        failures[mode] = str(exc)
bar.empty()
for mode, why in failures.items():
    st.error(f"{viz.PIPELINE_LABELS[mode]} could not run: {why}", icon=":material/error:")
if not results:
    st.stop()

cols = st.columns(len(results) + 1)
for col, (mode, res) in zip(cols, results.items()):
    col.metric(f"{viz.PIPELINE_LABELS[mode]}", f"{res.seconds:.2f} s",
               help=f"{res.tiles} tiles; {scan.megapixels / max(res.seconds, 1e-9):.2f} Mpx/s")
device_text = next(iter(results.values())).device
cols[-1].metric("Device", viz.device_label(device_text), help=device_text)
cols[-1].caption(device_text + viz.sharper_caption(SCALES))

# --------------------------------------------------------------------------- display options

st.subheader("Side by side")
o1, o2, o3 = st.columns([4, 3, 4], gap="medium")
with o1:
    shown = st.pills("Classes shown", [c.index for c in CLASSES], selection_mode="multi",
                     default=[CURVE1, CURVE2], format_func=lambda i: SHORT_LABELS[i], key="classes")
with o2:
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.85, 0.05, key="alpha")
top, bottom = 0, h
with o3:
    options = viz.window_options(h, w)
    if len(options) > 1:
        size = st.select_slider("Depth window (rows)", options=options, value=options[min(1, len(options) - 1)],
                                format_func=lambda v: "whole log" if v == h else f"{v:,}", key="win_size")
        if size < h:
            start = st.slider("Window top (row)", 0, h - size, 0, step=max(1, size // 10), key="win_top")
            top, bottom = viz.window_rows(h, start, size)
st.markdown(viz.class_legend_markdown(with_descriptions=False, inline=True), unsafe_allow_html=True)

factor = viz.display_factor((bottom - top, w))
gray_view = viz.shrink_gray(scan.gray[top:bottom], factor)
panels = [("Scan", gray_view)]
for mode, res in results.items():
    labels_view = viz.shrink_codes(res.labels[top:bottom], factor)
    panels.append((viz.PIPELINE_LABELS[mode], viz.class_overlay(gray_view, labels_view, alpha=alpha,
                                                                 classes=shown or ())))
st.plotly_chart(viz.linked_images(panels, factor=factor, row0=top), key="side_by_side",
                config={"scrollZoom": True, "displaylogo": False})
note = f"Rows {top:,} to {bottom:,} of {h:,}."
if factor > 1:
    note += f" Shown at 1/{factor} scale (thin lines kept); the models ran on every pixel."
st.caption(note + " Drag to pan, scroll or box-select to zoom: all panels move together; double-click resets.")

# --------------------------------------------------------------------------- conflicts, scores, downloads

tab_scores, tab_conf, tab_dl, tab_dig = st.tabs(["Scores against truth", "Conflict map", "Downloads",
                                                 "Digitise curves"])
with tab_conf:
    from veer.metrics import conflict_counts

    total = h * w
    if "joint" in results:
        st.markdown(f"**Joint model: 0 pixels claimed twice and 0 claimed by no class, out of {total:,}.** "
                    "One softmax over the three classes gives every pixel exactly one label, so it cannot "
                    "conflict or leave a gap: that holds by construction.")
    sep = results.get("separate")
    if sep is not None and sep.conflict is not None:
        cc = conflict_counts(sep.conflict)
        m1, m2, m3 = st.columns(3)
        m1.metric("Separate: claimed by two or more masks", f"{cc['conflict']:,} px",
                  help=f"{cc['conflict_share']:.3%} of all pixels")
        m2.metric("Separate: claimed by no mask", f"{cc['gap']:,} px", help=f"{cc['gap_share']:.3%} of all pixels")
        m3.metric("Separate: agreed (exactly one mask)", f"{cc['agreed']:,} px")
        st.caption(f"Conflicts: {cc['conflict_share']:.3%} of the pixels; gaps: {cc['gap_share']:.3%}.")
        conf_view = viz.shrink_codes(sep.conflict[top:bottom], factor)
        st.plotly_chart(viz.linked_images(
            [("Separate masks, stitched", panels[-1][1]),
             ("Where the masks disagree", viz.map_overlay(gray_view, conf_view, viz.CONFLICT_COLORS, alpha=1.0,
                                                          fade=0.6))],
            factor=factor, row0=top), key="conflicts", config={"scrollZoom": True, "displaylogo": False})
        st.markdown(viz.codes_legend_markdown(viz.CONFLICT_COLORS, viz.CONFLICT_LABELS), unsafe_allow_html=True)
        st.caption("The three binary masks are trained apart, so nothing stops two of them claiming one pixel "
                   "or all three going quiet. The stitched label is the most confident mask's class.")
    elif "separate" in failures:
        st.info("The separate pipeline did not run, so there is no conflict map.")

with tab_scores:
    if truth is None:
        st.info("Scores need a truth mask: pick a bundled sample, or upload a mask (PNG, same size as the "
                "scan, values 0 background, 1 curve1, 2 curve2, 255 ignored) beside your scan.",
                icon=":material/info:")
        metrics_table = None
    else:
        scores = {mode: scored(mode, key, truth_key, truth, res) for mode, res in results.items()}
        metrics_table = viz.metrics_frame(scores, {m: s["tolerant"] for m, s in scores.items()})
        viz.show_table(st, metrics_table)
        st.caption("Pixel scores per class. 'mean (3 classes)' includes background, like the archive's "
                   "figures; 'mean (curves only)' is the one that says how well the curves are found. "
                   f"Tolerant F1 counts a curve pixel as right within {next(iter(scores.values()))['tolerant']['tol_px']} "
                   "px of the true line.")
        err_panels = []
        for mode, s in scores.items():
            ev = viz.shrink_codes(s["error_map"][top:bottom], factor)
            err_panels.append((f"{viz.PIPELINE_LABELS[mode]}: errors",
                               viz.map_overlay(gray_view, ev, viz.ERROR_COLORS, alpha=1.0, fade=0.6)))
        st.plotly_chart(viz.linked_images(err_panels, factor=factor, row0=top), key="errors",
                        config={"scrollZoom": True, "displaylogo": False})
        st.markdown(viz.codes_legend_markdown(viz.ERROR_COLORS, viz.ERROR_LABELS), unsafe_allow_html=True)
        viz.show_table(st, viz.error_counts_frame({m: s["error_counts"] for m, s in scores.items()}))

with tab_dl:
    stem = safe_stem(scan.name)
    for mode, res in results.items():
        st.markdown(f"**{viz.PIPELINE_LABELS[mode]}**")
        d1, d2, d3 = st.columns(3)
        d1.download_button("Mask (PNG, values 0/1/2)", data=partial(png_bytes, res.labels),
                           file_name=f"{stem}.{mode}.mask.png", mime="image/png", on_click="ignore",
                           key=f"dl_mask_{mode}")
        d2.download_button("Overlay (PNG, full size)",
                           data=partial(viz.overlay_png, scan.gray, res.labels, alpha, tuple(shown or ())),
                           file_name=f"{stem}.{mode}.overlay.png", mime="image/png", on_click="ignore",
                           key=f"dl_overlay_{mode}")
        if res.conflict is not None:
            d3.download_button("Conflict map (PNG, 0 agreed, 1 conflict, 2 gap)",
                               data=partial(png_bytes, res.conflict), file_name=f"{stem}.conflict.png",
                               mime="image/png", on_click="ignore", key=f"dl_conflict_{mode}")
    if metrics_table is not None:
        st.download_button("Scores (CSV)", data=viz.frame_csv(metrics_table), file_name=f"{stem}.scores.csv",
                           mime="text/csv", on_click="ignore", key="dl_scores")
    else:
        st.caption("A scores CSV is offered when a truth mask is available.")

with tab_dig:
    digitise_panel(scan, key, results, truth_obj, gray_view, factor, top)
