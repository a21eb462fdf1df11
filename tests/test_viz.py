"""Figures, overlays and readers behind the dashboard (veer.viz)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from veer import viz
from veer.classes import CLASS_COLORS, CURVE1, CURVE2, hex_to_rgb
from veer.decision import decide


# --------------------------------------------------------------------------- display images

def test_display_factor_keeps_panels_under_the_budget():
    assert viz.display_factor((100, 100), 1_000_000) == 1
    for shape in ((17864, 1664), (3000, 900), (1001, 999)):
        f = viz.display_factor(shape, 400_000)
        h, w = -(-shape[0] // f), -(-shape[1] // f)
        assert h * w <= 400_000
        if f > 1:  # the smallest such factor
            g = f - 1
            assert -(-shape[0] // g) * -(-shape[1] // g) > 400_000


def test_shrinking_keeps_one_pixel_lines():
    gray = np.full((40, 40), 255, np.uint8)
    gray[:, 13] = 0  # a one-pixel vertical ink line
    labels = np.zeros((40, 40), np.uint8)
    labels[:, 13] = CURVE2
    labels[7, 30] = 255  # ignored pixels do not show as a class
    small = viz.shrink_gray(gray, 4)
    lab = viz.shrink_codes(labels, 4)
    assert small.shape == (10, 10) and lab.shape == (10, 10)
    assert (small[:, 3] == 0).all() and (small[:, [0, 1, 2, 4]] == 255).all()
    assert (lab[:, 3] == CURVE2).all() and lab[1, 7] == 0
    # non-multiple sizes are padded, not cropped
    assert viz.shrink_gray(gray[:39, :38], 4).shape == (10, 10)
    assert viz.shrink_gray(gray, 1) is gray


def test_window_rows_are_clamped_to_the_image():
    assert viz.window_rows(1000, 0, 300) == (0, 300)
    assert viz.window_rows(1000, 900, 300) == (700, 1000)
    assert viz.window_rows(1000, -5, 5000) == (0, 1000)
    assert viz.window_options(500, 400) == [500]
    assert viz.window_options(17864, 1664) == [1664, 3328, 6656, 13312, 17864]


def test_class_overlay_paints_only_the_chosen_classes():
    gray = np.full((4, 4), 200, np.uint8)
    labels = np.zeros((4, 4), np.uint8)
    labels[0, 0], labels[1, 1] = CURVE1, CURVE2
    rgb = viz.class_overlay(gray, labels, alpha=1.0, classes=(CURVE1,))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == hex_to_rgb(CLASS_COLORS[CURVE1])
    assert tuple(rgb[1, 1]) == (200, 200, 200)  # curve2 hidden
    half = viz.class_overlay(gray, labels, alpha=0.5, classes=(CURVE2,))
    expect = [round((200 + c) / 2) for c in hex_to_rgb(CLASS_COLORS[CURVE2])]
    assert np.abs(half[1, 1].astype(int) - expect).max() <= 1


def test_fade_lightens_the_scan_under_sparse_codes():
    gray = np.zeros((2, 2), np.uint8)
    out = viz.map_overlay(gray, np.zeros((2, 2), np.uint8), {1: "#000000"}, fade=0.5)
    assert (out == 128).all()


def test_linked_images_share_zoom_and_use_full_resolution_coordinates():
    img = np.zeros((50, 20), np.uint8)
    fig = viz.linked_images([("a", img), ("b", img), ("c", img)], factor=4, row0=1000)
    images = [t for t in fig.data if t.type == "image"]
    assert len(images) == 3
    assert all(t.dx == 4 and t.dy == 4 and t.y0 >= 1000 for t in images)
    assert all(str(t.source).startswith("data:image/png;base64,") for t in images)
    layout = fig.layout
    assert layout.xaxis2.matches == "x" and layout.xaxis3.matches == "x"
    assert layout.yaxis2.matches == "y" and layout.yaxis3.matches == "y"


def test_instance_colours_are_distinct():
    lut = viz.instance_palette(40)
    assert tuple(lut[0]) == (255, 255, 255)
    assert len({tuple(c) for c in lut[1:]}) == 40


# --------------------------------------------------------------------------- tables

def _summary(f1: float) -> dict:
    per = {n: {"precision": f1, "recall": f1, "f1": f1, "iou": f1 / 2, "support": 10}
           for n in ("background", "curve1", "curve2")}
    mean = {"precision": f1, "recall": f1, "f1": f1, "iou": f1 / 2}
    return {"per_class": per, "macro_all": mean, "macro_curves": mean}


def test_metrics_frame_has_both_pipelines_both_averages_and_tolerant_f1():
    tol = {"joint": {"curve1": {"f1": 0.8}, "curve2": {"f1": 0.6}}}
    frame = viz.metrics_frame({"joint": _summary(0.7), "separate": _summary(0.4)}, tol)
    assert len(frame) == 10
    assert set(frame["class"]) >= {"background", "curve1", "curve2", "mean (3 classes)", "mean (curves only)"}
    joint = frame[frame["pipeline"] == viz.PIPELINE_LABELS["joint"]].set_index("class")
    assert joint.loc["curve1", "tolerant f1"] == pytest.approx(0.8)
    assert joint.loc["mean (curves only)", "tolerant f1"] == pytest.approx(0.7)
    assert frame.iloc[0]["f1"] == pytest.approx(0.7)
    csv = viz.frame_csv(frame).decode()
    assert csv.splitlines()[0].startswith("pipeline,class,precision,recall,f1,iou")


def test_nan_scores_show_as_missing_not_as_numbers():
    s = _summary(0.5)
    s["per_class"]["curve2"]["f1"] = float("nan")
    frame = viz.metrics_frame({"joint": s})
    assert frame.set_index("class").loc["curve2", "f1"] is None or np.isnan(
        frame.set_index("class").loc["curve2", "f1"])


def test_curve_scores_table_shows_where_the_rows_are_lost():
    scores = {"curve1": {"within3": 0.9, "within3_own_ink": 0.95, "within3_ink_gap": None},
              "curve2": {"within3": 0.8, "within3_own_ink": 0.9, "within3_ink_gap": 0.7, "within3_under_other": 0.5}}
    rows = {r["curve"]: r for r in viz.flatten_scores(scores)}
    assert rows["curve2"]["within 3 px in its ink's gaps"] == pytest.approx(0.7)
    assert rows["curve2"]["within 3 px with the other curve"] == pytest.approx(0.5)
    assert rows["curve1"]["within 3 px on its own ink"] == pytest.approx(0.95)
    assert rows["curve1"]["within 3 px in its ink's gaps"] is None


def _pooled_curves(within3: float, kinds: bool = True) -> dict:
    out = {"logs": 2}
    for name, gap_rows in (("curve1", 1), ("curve2", 300)):
        p = {"n_truth_rows": 1000, "median_px": 0.4, "within3": within3, "missed": 0.01, "wrap_share": 0.8,
             "wrap_step_share": 0.75, "r2_median": 0.99, "within3_interval": [within3 - 0.02, within3 + 0.01],
             "wrap_share_interval": None}
        if kinds:
            p.update({"n_rows_own_ink": 1000 - gap_rows - 100, "within3_own_ink": 0.95,
                      "n_rows_ink_gap": gap_rows, "within3_ink_gap": 0.8,
                      "n_rows_under_other": 100, "within3_under_other": 0.6})
        out[name] = p
    return {"pooled": out}


def test_curve_quality_table_shows_each_source_and_the_targets():
    report = {"pipelines": {"joint": {"digitize": _pooled_curves(0.9)}, "separate": {"digitize": _pooled_curves(0.92)}},
              "digitize_truth": _pooled_curves(0.97)}
    frame = viz.curve_quality_frame(report)
    assert list(frame["traced from"]) == [viz.PIPELINE_LABELS["joint"]] * 2 + [viz.PIPELINE_LABELS["separate"]] * 2 \
        + ["Truth masks (the digitiser alone)"] * 2 + ["target"] * 2
    joint2 = frame[(frame["traced from"] == viz.PIPELINE_LABELS["joint"]) & (frame["curve"] == "curve2")].iloc[0]
    assert joint2["rows within 3 px"] == pytest.approx(0.9) and joint2["rows within 3 px, 95 % interval"] == "0.880-0.910"
    assert pd.isna(joint2["wrap-arounds followed, 95 % interval"])         # no interval: a dash in the table
    target2 = frame[(frame["traced from"] == "target") & (frame["curve"] == "curve2")].iloc[0]
    assert target2["rows within 3 px"] == 0.90 and target2["median error (px)"] == 1.0
    # a report without curve scores (evaluate --no-digitize) has no curve table at all
    assert viz.curve_quality_frame({"pipelines": {"joint": {"per_class": {}}}}).empty


def test_rows_lost_by_where_the_curve_runs_leave_out_a_kind_too_rare_to_tell():
    report = {"pipelines": {"joint": {"digitize": _pooled_curves(0.9)}}, "digitize_truth": _pooled_curves(0.97)}
    frame = viz.row_kinds_frame(report)
    curve1 = frame[frame["curve"] == "curve1"]
    assert "in gaps of its ink" not in set(curve1["where"])            # 1 row of 1,000
    gaps = frame[(frame["curve"] == "curve2") & (frame["where"] == "in gaps of its ink")]
    assert len(gaps) == 2 and set(gaps["share of rows"]) == {0.3} and set(gaps["rows within 3 px"]) == {0.8}
    fig = viz.row_kinds_figure(frame)
    assert {a.text for a in fig.layout.annotations} == {"curve1", "curve2"}
    assert viz.row_kinds_frame({"pipelines": {"joint": {"digitize": _pooled_curves(0.9, kinds=False)}}}).empty


def test_display_table_formats_scores_counts_and_gaps():
    import pandas as pd

    frame = pd.DataFrame({"name": ["a", "b"], "f1": [0.51234, None], "support": [1530848, None],
                          "flag": [True, False]})
    table, config = viz.display_table(frame)
    assert list(table["f1"]) == ["0.512", "–"]
    assert list(table["support"]) == ["1,530,848", "–"]
    assert list(table["name"]) == ["a", "b"] and list(table["flag"]) == [True, False]
    assert set(config) == {"f1", "support"} and config["f1"] == {"alignment": "right"}
    assert frame["f1"].iloc[0] == 0.51234  # the original (for CSV downloads) is untouched


def test_samples_frame_and_confusion_figure_from_a_report():
    report = {"pipelines": {"joint": {"confusion_matrix": [[90, 5, 5], [2, 8, 0], [1, 0, 9]]}},
              "samples": [{"name": "a.png", "scan": "gray", "style": "x", "megapixels": 1.0,
                           "pipelines": {"joint": {"macro_all": {"f1": 0.6, "iou": 0.5},
                                                   "macro_curves": {"f1": 0.4},
                                                   "tolerant": {"macro_curves_f1": 0.7},
                                                   "seconds": 1.5}}},
                          {"name": "bad.png", "error": "damaged"}]}
    frame = viz.samples_frame(report)
    assert list(frame["sample"]) == ["a.png", "bad.png"]
    assert frame.iloc[0]["F1 (3 classes)"] == pytest.approx(0.6)
    assert frame.iloc[1]["error"] == "damaged"
    fig = viz.confusion_figure(report["pipelines"]["joint"]["confusion_matrix"], "joint")
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.sum(axis=1), 1.0) and z[0, 0] == pytest.approx(0.9)


def test_comparison_and_means_frames():
    sources = {"ours": {"background": {"f1": 0.9, "iou": 0.8}, "curve1": {"f1": 0.5, "iou": 0.3},
                        "curve2": {"f1": 0.4, "iou": 0.2}},
               "archive": viz.archive_joint_per_class(viz.load_anchors())}
    frame = viz.comparison_frame(sources)
    assert set(frame["source"]) == {"ours", "archive"} and len(frame) == 12
    means = viz.means_frame(sources, archive_masks=[0.37, 0.26, 0.55]).set_index("source")
    assert means.loc["ours", "F1 mean, 3 classes"] == pytest.approx(0.6)
    assert means.loc["ours", "F1 mean, curves only"] == pytest.approx(0.45)
    assert means.loc["ours", "IoU mean, curves only"] == pytest.approx(0.25)
    assert means.loc["archive separate (3 masks)", "F1 mean, 3 classes"] == pytest.approx(0.3933, abs=1e-4)
    assert viz.comparison_figure(frame, "iou").data


def test_history_figure_finds_per_class_scores():
    rows = [{"step": s, "loss": 1.0 / s, "val_macro_f1": 0.1 * s,
             "val": {"background": {"f1": 0.9, "iou": 0.8}, "curve1": {"f1": 0.1 * s, "iou": 0.05 * s},
                     "curve2": {"f1": 0.05 * s, "iou": 0.02 * s}}} for s in (3, 1, 2)]
    frame = viz.history_frame(rows)
    assert list(frame["step"]) == [1, 2, 3]
    fig = viz.history_figure(rows)
    names = {t.name for t in fig.data}
    assert {"loss", "curve1 F1", "curve2 IOU", "background F1"} <= names
    # binary model histories: the target, not its complement
    binary = [{"step": 1, "loss": 0.5, "val": {"not_curve1": {"f1": 0.99}, "curve1": {"f1": 0.3}}}]
    fig = viz.history_figure(binary)
    f1 = [t for t in fig.data if t.name == "curve1 F1"]
    assert f1 and list(f1[0].y) == [0.3]


# --------------------------------------------------------------------------- cards, anchors, bench

def _write_card(folder, name, task, target, per_class):
    folder.mkdir(parents=True, exist_ok=True)
    card = {"name": name, "task": task, "target": target, "config": {}, "sha256": "0" * 64,
            "parameters": 1000, "gmac_per_mpx": 1.5, "training": {"steps": 10},
            "validation": {"per_class": per_class, "macro_f1": float(np.mean([v["f1"] for v in per_class.values()]))}}
    (folder / f"{name}.json").write_text(json.dumps(card))


def test_measured_figures_from_model_cards(tmp_path):
    models = tmp_path / "models"
    assert viz.measured_figures(models) == {"joint": None, "separate": None, "source": []}
    _write_card(models, "joint", "joint", None, {"background": {"f1": 0.9, "iou": 0.8},
                                                 "curve1": {"f1": 0.6, "iou": 0.4},
                                                 "curve2": {"f1": 0.3, "iou": 0.2}})
    for target, f1 in (("background", 0.95), ("curve1", 0.5), ("curve2", 0.25)):
        _write_card(models, f"binary_{target}", "binary", target,
                    {f"not_{target}": {"f1": 0.99, "iou": 0.98}, target: {"f1": f1, "iou": f1 / 2}})
    m = viz.measured_figures(models)
    assert m["joint"]["f1"] == pytest.approx(0.6)
    assert m["joint"]["iou"] == pytest.approx(1.4 / 3)
    assert m["joint"]["f1_curves"] == pytest.approx(0.45)
    assert m["separate"]["mask_f1"] == pytest.approx([0.95, 0.5, 0.25])
    assert m["source"] == ["model card"]
    frame = viz.cards_frame({n: viz.load_card(n, models) for n in ("joint", "binary_curve1", "missing")})
    assert list(frame["status"]) == ["shipped", "shipped", "missing"]


def test_a_report_overrides_the_cards_for_the_joint_figures(tmp_path):
    report = {"pipelines": {"joint": {"macro_all": {"f1": 0.7, "iou": 0.6}, "macro_curves": {"f1": 0.5}},
                            "separate": {"macro_all": {"f1": 0.4}, "conflicts": {"conflict_share": 0.01}}}}
    m = viz.measured_figures(tmp_path, report)
    assert m["joint"]["f1"] == 0.7 and m["separate"]["f1"] == 0.4
    assert m["separate"]["conflict_share"] == 0.01
    assert "evaluation report" in m["source"]


def test_anchors_hold_the_archive_figures(root):
    anchors = viz.load_anchors()
    joint = anchors["archive"]["joint"]
    assert joint["macro_all"] == {"f1": 0.55, "iou": 0.51}
    assert viz.archive_separate_f1(anchors) == [0.37, 0.26, 0.55]
    assert anchors["archive"]["lever"]["marks"] == [2, 12, 20, 30, 40]
    assert set(viz.archive_joint_per_class(anchors)) == {"background", "curve1", "curve2"}


def test_pages_never_type_in_the_archive_figures(root):
    """The archive's numbers come from assets/anchors.json, never from page code."""
    for page in sorted((root / "pages").glob("*.py")) + [root / "app.py"]:
        text = page.read_text()
        for figure in ("0.55", "0.51", "0.37", "0.26"):
            assert not re.search(rf"(?<![\d.]){re.escape(figure)}(?!\d)", text), (page.name, figure)


def test_bench_frame_and_figure():
    bench = {"created": "2026-01-01", "segment": {"megapixels": 30.0, "segment_mpx_per_s": 1.5, "mpx_per_s": 1.2,
                                                  "device": "CPU (2 threads)", "naive": {"segment_s_est": 60.0},
                                                  "speedup": 3.0},
             "synth": {"tiles_per_s": 150.0}}
    frame = viz.bench_frame(bench)
    assert "segment throughput" in set(frame["measure"])
    assert "speed-up over the naive way" in set(frame["measure"])
    fig = viz.bench_figure(bench, viz.load_anchors())
    bars = {name: x for t in fig.data for name, x in zip(t.y, t.x)}
    assert bars["veer: segment"] == 1.5
    assert bars["naive way (estimated)"] == pytest.approx(0.5)
    assert any(k.startswith("published") for k in bars)
    assert viz.bench_figure({"machine": {"cpu": "x"}}) is None


# --------------------------------------------------------------------------- the lever's figures

def _arrow(fig):
    arrows = [a for a in fig.layout.annotations if a.showarrow]
    assert len(arrows) == 1
    return arrows[0]


def test_the_verdict_arrow_swings_from_semantic_to_instance():
    up = _arrow(viz.fork_figure(decide(2)))
    close = _arrow(viz.fork_figure(decide(12)))
    down = _arrow(viz.fork_figure(decide(40, named=False)))
    # y of the tip relative to its tail: up for semantic, down for instance
    assert up.y > up.ay and close.y > close.ay and down.y < down.ay
    # a clear call points more firmly than a close one
    assert (up.y - up.ay) > (close.y - close.ay)


def test_the_chosen_branch_is_highlighted():
    fig = viz.fork_figure(decide(40))
    boxes = [s for s in fig.layout.shapes if s.type == "rect" and s.x1 > 12]
    assert len(boxes) == 2
    top, bottom = sorted(boxes, key=lambda s: -s.y0)
    assert bottom.line.color == viz.VERDICT_COLOR and top.line.color != viz.VERDICT_COLOR


def test_lever_scale_and_demo_figures():
    fig = viz.lever_scale_figure(12, 16.0)
    assert list(fig.layout.xaxis.tickvals) == [2, 12, 20, 30, 40]
    assert fig.data[0].x[0] == 12
    from veer.decision import instance_demo

    demo_fig = viz.demo_figure(instance_demo(6))
    assert len([t for t in demo_fig.data if t.type == "image"]) == 3


# --------------------------------------------------------------------------- the result store

def test_result_cache_evicts_least_recently_used():
    cache = viz.ResultCache(max_bytes=250)
    cache.put("a", np.zeros(100, np.uint8))
    cache.put("b", np.zeros(100, np.uint8))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", np.zeros(100, np.uint8))
    assert "b" not in cache and "a" in cache and "c" in cache
    cache.put("huge", np.zeros(1000, np.uint8))  # larger than the budget: kept alone
    assert len(cache) == 1 and cache.get("huge") is not None


def test_content_key_depends_on_content_only():
    assert viz.content_key(b"abc") == viz.content_key(bytes(b"abc"))
    assert viz.content_key(b"abc") != viz.content_key(b"abd")


def test_training_totals_count_the_runs_a_model_was_continued_from():
    from veer import viz

    assert viz.training_totals({"training": {"steps": 700, "seconds": 60.0}}) == (700, 60.0)
    card = {"training": {"steps": 3500, "seconds": 100.0, "total_steps": 4200, "total_seconds": 160.0,
                         "init": {"steps": 700}}}
    assert viz.training_totals(card) == (4200, 160.0)
    assert viz.training_totals({}) == (None, None)


def test_device_label_is_the_short_name():
    from veer import viz

    assert viz.device_label("CPU (2 threads), bf16") == "CPU"
    assert viz.device_label("CUDA GPU: NVIDIA H100, bf16") == "CUDA GPU"
    assert viz.device_label("Apple GPU (MPS), fp32") == "Apple GPU"


def test_curves_plot_a_log_calibrated_track_on_a_log_axis():
    from veer import digitize as dz

    h, w = 300, 220
    labels = np.zeros((h, w), np.uint8)
    rows = np.arange(h)
    labels[rows, (50 + 20 * np.sin(rows / 30.0)).astype(int)] = 1       # track 1: 10 .. 100, linear
    labels[rows, (160 + 20 * np.cos(rows / 25.0)).astype(int)] = 1      # track 2: 0.2 .. 2000, log
    tracks = [(10.0, 100.0), (120.0, 210.0)]
    plain = dz.digitize_labels(labels, tracks=tracks)
    assert viz.log_tracks(plain) == []
    cal = dz.Calibration(depth_points=((0, 1000.0), (h - 1, 1029.9)),
                         scales=(dz.ValueScale(10, 100), dz.ValueScale(0.2, 2000, "log")))
    log = dz.digitize_labels(labels, tracks=tracks, calibration=cal)
    assert viz.log_tracks(log) == [2]
    fig = viz.curves_figure(log)
    assert fig.layout.xaxis2.type == "log" and fig.layout.xaxis.type != "log"
    values = np.concatenate([np.asarray(t.x, float) for t in fig.data if t.xaxis == "x2"])
    values = values[np.isfinite(values)]
    assert values.size > 250 and values.min() > 0, "a log axis gets positive values"
    assert viz.curves_figure(plain).layout.xaxis2.type != "log"


def test_calibration_form_gives_scales_las_names_and_well_header():
    from veer import digitize as dz
    from veer.errors import ConfigError

    rows = [{"left": 0.0, "right": 150.0, "scale": "linear", "curve1": "GR:GAPI", "curve2": float("nan")},
            {"left": None, "right": None, "scale": "linear", "curve1": "", "curve2": None},
            {"left": 0.2, "right": 2000.0, "scale": "log", "curve1": "ILD:OHMM", "curve2": "ILM"}]
    cal = viz.form_calibration("0:1000, 2999:1150", "m", rows, {"WELL": "Ness 3", "UWI": " ", "COMP": None})
    assert cal.depth_unit == "m" and len(cal.depth_points) == 2
    assert cal.scales[0] == dz.ValueScale(0.0, 150.0) and cal.scales[1] is None
    assert cal.scales[2] == dz.ValueScale(0.2, 2000.0, "log")
    names = dz.curve_names(cal, 3)
    assert [n.mnemonic for pair in names for n in pair] == ["GR", "T1C2", "T2C1", "T2C2", "ILD", "ILM"]
    assert names[0][0].unit == "GAPI" and names[2][0].unit == "OHMM"
    assert cal.well == (("WELL", "Ness 3"),), "blank header fields are left out"
    # the LAS written from it carries the names and the well
    labels = np.zeros((3000, 330), np.uint8)
    for x in (50, 160, 270):
        labels[:, x] = 1
    log = dz.digitize_labels(labels, tracks=[(10, 100), (120, 210), (230, 320)], calibration=cal)
    text = viz.las_text(log)
    assert "Ness 3" in text and "GR" in text and "ILD" in text and ".OHMM" in text
    # nothing given: no scales, no names, no header
    empty = viz.form_calibration("", "ft", [{"left": None, "right": None, "scale": "linear"}], {})
    assert empty.scales == () and empty.names == () and empty.well == () and not empty.has_depth
    with pytest.raises(ConfigError, match="both the left and the right"):
        viz.form_calibration("", "ft", [{"left": 1.0, "right": None, "scale": "linear"}])
    with pytest.raises(ConfigError, match="one word"):
        viz.form_calibration("", "ft", [{"left": None, "right": None, "curve1": "GAMMA RAY"}])
    with pytest.raises(ConfigError):
        viz.form_calibration("12-1000", "ft", [])


def test_calibration_defaults_name_a_samples_curves():
    meta = {"depth": {"top_row": 0.0, "top_depth": 5800.0, "rows_per_unit": 11.7, "unit": "ft"},
            "tracks": [{"x0": 10, "x1": 200, "left": 0, "right": 150, "scale": "linear",
                        "curves": [{"class": 1, "mnemonic": "GR", "unit": "GAPI"}]},
                       {"x0": 200, "x1": 400, "left": 0.2, "right": 2000, "scale": "log",
                        "curves": [{"class": 1, "mnemonic": "ILD", "unit": "OHMM"},
                                   {"class": 2, "mnemonic": "ILM", "unit": "OHMM"}]}]}
    d = viz.calibration_defaults(meta, 1000)
    assert [(r["curve1"], r["curve2"]) for r in d["scales"]] == [("GR:GAPI", ""), ("ILD:OHMM", "ILM:OHMM")]
    cal = viz.form_calibration(d["depth_points"], d["unit"], d["scales"])
    assert cal.has_depth and cal.scales[1].scale == "log"


def test_intervals_frame_from_a_report_or_its_samples():
    """The results page's spread over the logs: from the report's interval, or from its samples when older."""
    from veer.metrics import summarize

    rng = np.random.default_rng(5)
    mats = [np.array([[5000, rng.integers(0, 40), 3], [rng.integers(0, 30), rng.integers(60, 120), 4],
                      [2, rng.integers(0, 30), rng.integers(40, 90)]]) for _ in range(6)]
    pooled = summarize(np.sum(mats, axis=0))
    report = {"pipelines": {"joint": {k: pooled[k] for k in ("per_class", "macro_all")}},
              "samples": [{"name": f"s{i}", "pipelines": {"joint": {"confusion_matrix": m.tolist()}}}
                          for i, m in enumerate(mats)] + [{"name": "bad", "error": "unreadable"}]}
    frame = viz.intervals_frame(report)                     # an older report: worked out from the samples
    assert list(frame["score"]) == ["mean (3 classes)", "curve1", "curve2"]
    assert (frame["logs"] == 6).all()
    assert (frame["95 % interval, low"] <= frame["F1"]).all() and (frame["F1"] <= frame["95 % interval, high"]).all()
    assert frame["F1"].iloc[0] == pytest.approx(pooled["macro_all"]["f1"])

    report["pipelines"]["joint"]["interval"] = {"logs": 30, "macro_all": [0.91, 0.94],
                                                "per_class": {"curve1": [0.89, 0.93], "curve2": [0.84, 0.90]}}
    held = viz.intervals_frame(report)                      # a report that holds its interval: taken as it is
    assert list(held["95 % interval, low"]) == [0.91, 0.89, 0.84] and (held["logs"] == 30).all()
    report["samples"] = report["samples"][:1]
    del report["pipelines"]["joint"]["interval"]
    assert viz.intervals_frame(report).empty                # one log: nothing to resample
    assert viz.intervals_frame(None).empty
    assert f"{viz.BOOTSTRAP_DRAWS:,} resamples" in viz.INTERVALS_CAPTION


def test_shown_path_is_relative_to_the_project_when_inside_it(tmp_path):
    assert viz.shown_path(viz.ROOT / "assets" / "evaluation.json") == "assets/evaluation.json"
    assert viz.shown_path(tmp_path / "evaluation.json") == str(tmp_path / "evaluation.json")


def test_a_shipped_report_counts_only_for_the_weights_it_scored(tmp_path):
    assets, models = tmp_path / "assets", tmp_path / "models"
    assets.mkdir(), models.mkdir()
    for name, sha in (("joint", "aa"), ("binary_background", "bb")):
        (models / f"{name}.json").write_text(json.dumps({"sha256": sha}))
    report = {"pipelines": {"joint": {}}, "weights": {"joint": "aa"}}
    (assets / "evaluation.json").write_text(json.dumps(report))
    found, path = viz.find_report(assets, models)
    assert found == report and path == assets / "evaluation.json"
    assert viz.stale_report(assets, models) is None

    (models / "joint.json").write_text(json.dumps({"sha256": "retrained"}))   # the weights changed since
    assert viz.find_report(assets, models) == (None, None)
    assert viz.stale_report(assets, models) == assets / "evaluation.json"
    assert not viz.report_matches_models({"pipelines": {}}, models)            # says nothing of its weights
    assert not viz.report_matches_models({"weights": {"binary_curve1": "cc"}}, models)   # no such card
    assert viz.report_matches_models({"weights": {"binary_background": "bb"}}, models)
