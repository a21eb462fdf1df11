"""The synthetic log generator: truth matches pixels, determinism, styles, files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from veer import synth
from veer.classes import CURVE1, CURVE2, IGNORE
from veer.cli import main
from veer.errors import VeerError
from veer.io import read_scan


@pytest.fixture(scope="module")
def clean_log():
    return synth.generate_log(11, height=900, width=900, style="clean")


def _paper_level(gray: np.ndarray, mask: np.ndarray) -> float:
    return float(np.percentile(gray[mask == 0], 75))


def test_mask_labels_sit_on_the_ink_of_their_curve(clean_log):
    log = clean_log
    gray = log.gray.astype(float)
    paper = _paper_level(gray, log.mask)
    for cls in (CURVE1, CURVE2):
        on = log.mask == cls
        assert on.sum() > 200, f"class {cls} should be drawn"
        dark = gray[on] < 0.8 * paper
        assert dark.mean() > 0.97, f"class {cls}: only {dark.mean():.1%} of its pixels are inked"
    # and a label shifted sideways off the line lands mostly on paper: the labels are not blobs
    c1 = log.mask == CURVE1
    shifted = np.roll(c1, 12, axis=1) & (log.mask == 0)
    assert (gray[shifted] < 0.8 * paper).mean() < 0.5


def test_overlaps_are_marked_ignore_and_only_there(clean_log):
    m = clean_log.mask
    assert set(np.unique(m).tolist()) <= {0, CURVE1, CURVE2, IGNORE}


def _distance_to_polyline(pts_r, pts_c, line_x):
    """Distance of pixels (pts_r, pts_c) to the polyline through (row, line_x[row])."""
    H = len(line_x)
    best = np.full(len(pts_r), np.inf)
    for dr in range(-3, 3):
        a = np.clip(pts_r + dr, 0, H - 2)
        y0, x0, y1, x1 = a.astype(float), line_x[a], a + 1.0, line_x[a + 1]
        ok = np.isfinite(x0) & np.isfinite(x1)
        dy, dx = y1 - y0, np.where(ok, x1 - x0, 0.0)
        py, px = pts_r - y0, pts_c - np.where(ok, x0, 0.0)
        t = np.clip((py * dy + px * dx) / (dy * dy + dx * dx), 0, 1)
        d = np.hypot(py - t * dy, px - t * dx)
        best = np.minimum(best, np.where(ok, d, np.inf))
    return best


def test_centerline_lies_inside_its_curves_mask(clean_log):
    log = clean_log
    H, W = log.mask.shape
    checked = 0
    for k, cls in ((0, CURVE1), (1, CURVE2)):
        pr, pc = np.nonzero(np.isin(log.mask, (cls, IGNORE)))
        explained = np.zeros(len(pr), bool)
        steady = np.ones(len(pr), bool)
        for t, tr in enumerate(log.meta["tracks"]):
            xs = log.centerline[t, k].astype(float)
            rows = np.nonzero(np.isfinite(xs))[0]
            if not len(rows):
                continue
            width = tr["curves"][k]["width_px"]
            cols = np.clip(np.round(xs[rows]).astype(int), 0, W - 1)
            hit = np.zeros(len(rows), bool)
            for d in (-1, 0, 1):
                hit |= np.isin(log.mask[rows, np.clip(cols + d, 0, W - 1)], (cls, IGNORE))
            if cls == CURVE1:   # a solid line: the centre line is on its mask on (nearly) every row
                assert hit.mean() > 0.98, f"track {t}: centre line on the solid curve in {hit.mean():.1%} of rows"
            else:               # dashed/dotted: on the dashes
                assert hit.mean() > 0.2
            # one x per row cannot sample the tip of a spike falling between two rows: skip unsteady rows
            jump = np.abs(np.diff(xs, append=np.nan)) > 2
            unsteady = np.convolve(jump & np.isfinite(xs), np.ones(9), "same") > 0
            steady &= ~unsteady[pr]
            explained |= _distance_to_polyline(pr, pc.astype(float), xs) <= width / 2 + 1.0
            checked += 1
        # every labelled pixel is within half a pen width of a centre line of its class
        assert explained[steady].mean() > 0.995, f"class {cls}: mask pixels away from every centre line"
    assert checked >= 2


def test_value_is_the_unwrapped_physical_value_of_the_drawn_position():
    log = synth.generate_log(3, height=1200, width=900, style="wrap")
    assert any(c["wraps"] > 0 for t in log.meta["tracks"] for c in t["curves"]), "style 'wrap' should wrap"
    for t, tr in enumerate(log.meta["tracks"]):
        x0, x1 = log.tracks[t]
        for k in range(2):
            x, v = log.centerline[t, k], log.value[t, k]
            ok = np.isfinite(x)
            assert np.array_equal(ok, np.isfinite(v))
            if not ok.any():
                continue
            if tr["scale"] == "log":
                frac = (np.log10(v[ok]) - np.log10(tr["left"])) / (np.log10(tr["right"]) - np.log10(tr["left"]))
            else:
                frac = (v[ok] - tr["left"]) / (tr["right"] - tr["left"])
            drawn = x0 + (frac - np.floor(frac)) * (x1 - x0)
            err = np.abs(drawn - x[ok])
            err = np.minimum(err, np.abs(err - (x1 - x0)))      # a wrap exactly at the edge
            drift = abs(np.tan(np.radians(log.meta["skew_deg"]))) * log.mask.shape[0] / 2 + 0.5
            assert np.percentile(err, 99) <= drift + 1.0


def test_same_seed_same_log_and_tiles():
    a = synth.generate_log(5, height=400, width=500)
    b = synth.generate_log(5, height=400, width=500)
    c = synth.generate_log(6, height=400, width=500)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.centerline, b.centerline, equal_nan=True)
    assert a.meta == b.meta
    assert a.image.shape[:2] != c.image.shape[:2] or not np.array_equal(a.image, c.image)
    t1 = synth.sample_tile(np.random.default_rng(9), 128)
    t2 = synth.sample_tile(np.random.default_rng(9), 128)
    assert np.array_equal(t1[0], t2[0]) and np.array_equal(t1[1], t2[1])


@pytest.mark.parametrize("style", list(synth.STYLES))
def test_every_style_renders(style):
    log = synth.generate_log(21, height=520, width=480, style=style)
    H, W = log.mask.shape
    assert (H, W) == (520, 480)
    assert log.meta["style"] == style
    assert log.image.dtype == np.uint8 and log.mask.dtype == np.uint8
    n_tracks = len(log.meta["tracks"])
    assert log.centerline.shape == log.value.shape == (n_tracks, 2, H)
    assert log.tracks.shape == (n_tracks, 2)
    scan = log.meta["scan"]
    if scan == "color":
        assert log.image.shape == (H, W, 3)
    else:
        assert log.image.shape == (H, W)
    if scan == "bilevel":
        assert set(np.unique(log.image).tolist()) <= {0, 255}
        assert log.meta["ext"] == "tif"
    want = synth.STYLES[style]
    if want.scan:
        assert scan == want.scan
    if want.ext:
        assert log.meta["ext"] == want.ext
    if want.log_track:
        assert any(t["scale"] == "log" for t in log.meta["tracks"])
    assert (log.mask == CURVE1).any()
    json.dumps(log.meta)


def test_tiles_have_the_contract_shape_and_mostly_show_curves():
    rng = np.random.default_rng(3)
    with_curves = 0
    for _ in range(24):
        g, m = synth.sample_tile(rng, 96)
        assert g.shape == m.shape == (96, 96) and g.dtype == m.dtype == np.uint8
        assert set(np.unique(m).tolist()) <= {0, 1, 2, 255}
        with_curves += bool(((m == 1) | (m == 2)).any())
    assert with_curves >= 12


def _sweep_rows(m: np.ndarray, min_px: int) -> int:
    """Rows where curve ink runs across at least ``min_px`` columns (a near-horizontal sweep)."""
    ink = (m == 1) | (m == 2) | (m == 255)
    return int((ink.sum(axis=1) >= min_px).sum())


def test_wrap_tiles_show_sweeps_across_the_track():
    """at_wrap centres the tile on a wrap-around: the curve runs near-horizontally across
    the track there, which plain tiles rarely show; the stream of plain tiles is unchanged."""
    wrap = [synth.sample_tile(np.random.default_rng([4, i]), 192, at_wrap=True) for i in range(16)]
    plain = [synth.sample_tile(np.random.default_rng([4, i]), 192) for i in range(16)]
    for g, m in wrap:
        assert g.shape == m.shape == (192, 192) and g.dtype == m.dtype == np.uint8
        assert set(np.unique(m).tolist()) <= {0, 1, 2, 255}
    with_sweep = sum(_sweep_rows(m, 60) > 0 for _, m in wrap)
    plain_sweep = sum(_sweep_rows(m, 60) > 0 for _, m in plain)
    assert with_sweep >= 13 and with_sweep >= plain_sweep + 5
    again = synth.sample_tile(np.random.default_rng([4, 0]), 192, at_wrap=True)
    assert np.array_equal(again[0], wrap[0][0]) and np.array_equal(again[1], wrap[0][1])


@pytest.mark.parametrize("style", ["clean", "jpeg_gray", "bilevel_g4", "color"])
def test_save_load_round_trip(tmp_path, style):
    log = synth.generate_log(8, height=400, width=420, style=style)
    paths = synth.save_log(log, tmp_path, "one")
    assert paths["image"].suffix == "." + log.meta["ext"]
    scan = read_scan(paths["image"])
    if log.image.ndim == 3:
        from PIL import Image
        with Image.open(paths["image"]) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), log.image)
        assert np.abs(scan.gray.astype(int) - log.gray).max() <= 1     # Pillow's and veer's grey weights
    else:
        assert np.array_equal(scan.gray, log.gray), "the saved scan must be exactly the image the truth describes"
    if log.meta["ext"] == "tif":
        from PIL import Image
        with Image.open(paths["image"]) as im:
            assert im.mode == "1" and im.info.get("compression") == "group4"
            assert tuple(round(v) for v in im.info["dpi"]) == (200, 200)
    truth = synth.load_truth(paths["image"])
    assert np.array_equal(truth.mask, log.mask)
    assert np.array_equal(truth.centerline, log.centerline, equal_nan=True)
    assert np.array_equal(truth.value, log.value, equal_nan=True)
    assert np.array_equal(truth.tracks, log.tracks)
    assert truth.meta == log.meta
    assert synth.find_samples(tmp_path) == [paths["image"]]


def test_load_truth_without_truth_files_says_so(tmp_path):
    log = synth.generate_log(2, height=300, width=300, style="clean")
    paths = synth.save_log(log, tmp_path, "x")
    paths["curves"].unlink()
    with pytest.raises(VeerError, match="x.curves.npz"):
        synth.load_truth(paths["image"])
    assert synth.find_samples(tmp_path) == [paths["image"]]
    assert synth.find_samples(tmp_path / "nope") == []


def test_cli_writes_logs(tmp_path, capsys):
    rc = main(["synth", "--out", str(tmp_path), "--n", "2", "--seed", "4", "--height", "300", "--width", "320"])
    assert rc == 0
    found = synth.find_samples(tmp_path)
    assert len(found) == 2
    assert synth.load_truth(found[0]).mask.shape == (300, 320)


@pytest.mark.parametrize("argv, words", [
    (["--n", "abc"], "--n"),
    (["--n", "0"], "--n"),
    (["--seed", "-3"], "--seed"),
    (["--height", "10"], "--height"),
    (["--width", "1e9"], "--width"),
    (["--style", "sepia"], "unknown style"),
    ([], "--out"),
])
def test_cli_bad_arguments_give_one_clear_line(tmp_path, capsys, argv, words):
    if "--out" not in argv and words != "--out":
        argv = argv + ["--out", str(tmp_path)]
    rc = main(["synth"] + argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err


def test_cli_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["synth", "--out", str(f)]) != 0
    assert "not a folder" in capsys.readouterr().err


def test_committed_samples_have_truth_that_matches(samples_dir):
    found = synth.find_samples(samples_dir)
    assert 6 <= len(found) <= 10
    total = sum(p.stat().st_size for p in samples_dir.iterdir() if p.is_file())
    assert total < 15e6
    exts, scans, header, wraps, logs = set(), set(), False, False, False
    for p in found:
        truth = synth.load_truth(p)
        gray = read_scan(p).gray
        assert truth.mask.shape == gray.shape
        assert truth.centerline.shape[2] == gray.shape[0]
        m = truth.meta
        exts.add(m["ext"])
        scans.add(m["scan"])
        header |= m["header_rows"] > 0
        wraps |= any(c["wraps"] > 0 for t in m["tracks"] for c in t["curves"])
        logs |= any(t["scale"] == "log" for t in m["tracks"])
    assert {"tif", "jpg"} <= exts and {"color", "bilevel"} <= scans
    assert header and wraps and logs
