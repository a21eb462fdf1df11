"""The evaluate verb on a tiny hand-made data folder with fake segmenters.

The fake folder follows the on-disk format of veer.synth.save_log
(<stem>.png, <stem>.mask.png, <stem>.curves.npz, <stem>.json). Fake segmenters
read the labels off the drawn scan, so the expected scores are known exactly
and no trained weights are needed.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from veer import evaluate
from veer.classes import read_mask, write_mask
from veer.cli import main
from veer.errors import ConfigError

H, W = 48, 60
C1_COL, C2_COL = 15, 40
C1_INK, C2_INK = 0, 100


def _make_sample(folder: Path, stem: str, seed: int, c1_col: int = C1_COL) -> Path:
    gray = np.full((H, W), 255, np.uint8)
    mask = np.zeros((H, W), np.uint8)
    gray[:, c1_col] = C1_INK
    mask[:, c1_col] = 1
    dashed = (np.arange(H) // 4) % 2 == 0
    gray[dashed, C2_COL] = C2_INK
    mask[dashed, C2_COL] = 2
    mask[10:12, c1_col] = 255  # "curves overlap": not scored
    folder.mkdir(parents=True, exist_ok=True)
    scan = folder / f"{stem}.png"
    Image.fromarray(gray).save(scan)
    write_mask(folder / f"{stem}.mask.png", mask, allow_ignore=True)
    centerline = np.full((1, 2, H), np.nan, np.float32)
    centerline[0, 0] = c1_col
    centerline[0, 1, dashed] = C2_COL
    np.savez(folder / f"{stem}.curves.npz", centerline=centerline, value=centerline.copy(),
             tracks=np.array([[5, 55]], np.float32))
    meta = {"seed": seed, "style": "test", "scan": "gray", "ext": "png", "skew_deg": 0.0, "dpi": 200,
            "header_rows": 0, "tracks": [], "depth": {"unit": "ft", "top_row": 0, "top_depth": 1000.0,
                                                      "rows_per_unit": 10.0}}
    (folder / f"{stem}.json").write_text(json.dumps(meta))
    return scan


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "eval"
    _make_sample(folder, "log_a", 7)
    _make_sample(folder, "log_b", 8, c1_col=20)
    return folder


@pytest.fixture(autouse=True)
def truth_reader(monkeypatch):
    """Use veer.synth's reader when it exists; a minimal one of the same format otherwise."""
    try:
        from veer.synth import find_samples, load_truth  # noqa: F401
        return "veer.synth"
    except ImportError:
        pass

    def find(folder):
        return sorted(p for p in Path(folder).glob("*.png")
                      if not p.name.endswith(".mask.png") and p.with_name(p.stem + ".mask.png").exists())

    def load(path):
        path = Path(path)
        arrays = np.load(path.with_name(path.stem + ".curves.npz"))
        return SimpleNamespace(mask=read_mask(path.with_name(path.stem + ".mask.png")),
                               centerline=arrays["centerline"], value=arrays["value"],
                               tracks=arrays["tracks"],
                               meta=json.loads(path.with_name(path.stem + ".json").read_text()))

    monkeypatch.setattr(evaluate, "find_samples", find)
    monkeypatch.setattr(evaluate, "load_truth", load)
    return "test fallback"


_real_digitize_api = evaluate.digitize_api


@pytest.fixture(autouse=True)
def no_digitize(monkeypatch):
    """Keep the digitisation section out unless a test puts it in."""
    monkeypatch.setattr(evaluate, "digitize_api", lambda: None)


class FakeSegmenter:
    """Reads labels off the scan's ink values; optionally shifts or drops classes."""

    def __init__(self, mode: str, shift: int = 0, drop_curve2: bool = False, conflict_rows=()):
        self.mode, self.shift, self.drop_curve2 = mode, shift, drop_curve2
        self.conflict_rows = conflict_rows
        self.calls = 0

    def segment(self, gray, **_):
        self.calls += 1
        labels = np.zeros(gray.shape, np.uint8)
        labels[gray == C1_INK] = 1
        if not self.drop_curve2:
            labels[gray == C2_INK] = 2
        labels = np.roll(labels, self.shift, axis=1)
        conflict = None
        if self.mode == "separate":
            conflict = np.zeros(gray.shape, np.uint8)
            for row, code in self.conflict_rows:
                conflict[row] = code
        return SimpleNamespace(labels=labels, probs=None, conflict=conflict, mode=self.mode,
                               device="fake device", seconds=0.0, tiles=1)


def _fakes(**kwargs):
    return {m: FakeSegmenter(m, **kwargs) for m in ("joint", "separate")}


def test_perfect_segmenter_scores_one(data_dir):
    report = evaluate.evaluate_folder(data_dir, segmenters=_fakes())
    assert report["complete"] and report["data"]["samples_scored"] == 2
    for mode in ("joint", "separate"):
        p = report["pipelines"][mode]
        for name in ("background", "curve1", "curve2"):
            row = p["per_class"][name]
            assert (row["precision"], row["recall"], row["f1"], row["iou"]) == (1.0, 1.0, 1.0, 1.0)
        assert p["macro_all"]["f1"] == 1.0 and p["macro_curves"]["f1"] == 1.0
        assert p["tolerant"]["curve1"]["f1"] == 1.0 and p["tolerant"]["macro_curves_f1"] == 1.0
        # 2 samples x 48 rows of curve1 minus the 2 ignored pixels each
        assert p["per_class"]["curve1"]["support"] == 2 * (H - 2)
        assert p["per_class"]["curve2"]["support"] == 2 * (H // 2)
        assert sum(map(sum, p["confusion_matrix"])) == 2 * (H * W - 2)
        assert p["samples"] == 2
    assert report["pipelines"]["separate"]["conflicts"]["conflict_share"] == 0.0
    assert report["pipelines"]["joint"]["conflicts"] is None
    assert report["device"] == "fake device"
    assert [r["name"] for r in report["samples"]] == ["log_a.png", "log_b.png"]
    assert report["samples"][0]["pipelines"]["joint"]["per_class"]["curve1"]["f1"] == 1.0
    assert report["data"]["seeds"] == [7, 8]
    # perfect on both logs: whichever logs are drawn, F1 is 1, so the interval is [1, 1]
    iv = report["pipelines"]["joint"]["interval"]
    assert iv["logs"] == 2 and iv["macro_all"] == [1.0, 1.0] and iv["per_class"]["curve2"] == [1.0, 1.0]


def test_one_pixel_shift_fails_strict_scores_but_passes_tolerant(data_dir):
    report = evaluate.evaluate_folder(data_dir, modes=("joint",), segmenters=_fakes(shift=1))
    p = report["pipelines"]["joint"]
    assert p["per_class"]["curve1"]["f1"] == 0.0
    assert p["per_class"]["curve2"]["f1"] == 0.0
    assert p["tolerant"]["curve1"]["f1"] == 1.0
    assert p["tolerant"]["curve2"]["f1"] == 1.0
    assert list(report["pipelines"]) == ["joint"]


def test_missing_class_counts_as_zero_and_macros_differ(data_dir):
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters=_fakes(drop_curve2=True))
    p = report["pipelines"]["joint"]
    c2 = p["per_class"]["curve2"]
    assert (c2["precision"], c2["recall"], c2["f1"]) == (0.0, 0.0, 0.0)
    assert p["macro_curves"]["f1"] == pytest.approx(0.5)
    # background loses 48 of its precision: curve2 pixels predicted as background
    bg = p["per_class"]["background"]
    assert bg["recall"] == 1.0 and bg["precision"] < 1.0
    assert p["macro_all"]["f1"] == pytest.approx((bg["f1"] + 1.0 + 0.0) / 3)
    assert p["tolerant"]["curve2"]["recall"] == 0.0


def test_conflicts_and_gaps_of_the_separate_pipeline(data_dir):
    segs = _fakes(conflict_rows=[(0, 1), (1, 2), (2, 2)])
    report = evaluate.evaluate_folder(data_dir, modes=("separate",), segmenters=segs)
    c = report["pipelines"]["separate"]["conflicts"]
    assert c["pixels"] == 2 * H * W
    assert c["conflict"] == 2 * W and c["gap"] == 2 * 2 * W
    assert c["conflict_share"] == pytest.approx(1 / H) and c["gap_share"] == pytest.approx(2 / H)
    on_curves = report["pipelines"]["separate"]["conflicts_on_curves"]
    # rows 0..2: the curve1 pixel and (rows 0..2 are in a dash) the curve2 pixel, per sample
    assert on_curves["conflict"] == 2 * 2 and on_curves["gap"] == 2 * 4


def test_unreadable_sample_is_reported_and_skipped(data_dir):
    write_mask(data_dir / "log_b.mask.png", np.zeros((H, W + 1), np.uint8))
    progress = []
    report = evaluate.evaluate_folder(data_dir, segmenters=_fakes(),
                                      progress=lambda d, t, text: progress.append((d, t)))
    assert report["data"]["samples_failed"] == 1 and report["data"]["samples_scored"] == 1
    bad = [r for r in report["samples"] if "error" in r]
    assert bad and "log_b" in bad[0]["error"]
    assert report["pipelines"]["joint"]["per_class"]["curve1"]["f1"] == 1.0
    assert progress[-1] == (4, 4)
    assert "could not be read" in evaluate.format_table(report)


class FailingOn(FakeSegmenter):
    """Raises ``exc`` on the scan whose curve1 sits at column ``col``."""

    def __init__(self, mode, col, exc):
        super().__init__(mode)
        self.col, self.exc = col, exc

    def segment(self, gray, **kw):
        if (gray[:, self.col] == C1_INK).all():
            raise self.exc
        return super().segment(gray, **kw)


def test_a_pipeline_failing_on_a_sample_drops_it_from_every_pipeline(data_dir):
    from veer.errors import ModelFileError

    segs = {"joint": FakeSegmenter("joint", shift=1),
            "separate": FailingOn("separate", 20, ModelFileError("weights gone"))}
    report = evaluate.evaluate_folder(data_dir, segmenters=segs)
    assert report["data"]["samples_scored"] == 1
    assert report["pipelines"]["joint"]["samples"] == report["pipelines"]["separate"]["samples"] == 1
    assert report["pipelines"]["joint"]["per_class"]["curve1"]["support"] == H - 2
    bad = report["samples"][1]
    assert bad["name"] == "log_b.png" and bad["error"] == "separate: weights gone"


def test_ctrl_c_keeps_a_partial_report(data_dir, tmp_path, monkeypatch, capsys):
    segs = {"joint": FailingOn("joint", 20, KeyboardInterrupt()), "separate": FakeSegmenter("separate")}
    monkeypatch.setattr(evaluate, "get_segmenter", lambda mode, device="auto", models_dir=None, flip=True, views=None, scales=None, scale_views=None: segs[mode])
    out = tmp_path / "partial.json"
    assert main(["evaluate", "--data", str(data_dir), "--out", str(out)]) == 130
    report = json.loads(out.read_text())
    assert report["complete"] is False and report["data"]["samples_scored"] == 1
    assert report["pipelines"]["joint"]["per_class"]["curve1"]["f1"] == 1.0
    assert "interrupted" in capsys.readouterr().out
    with pytest.raises(KeyboardInterrupt):  # the library function re-raises unless asked not to
        evaluate.evaluate_folder(data_dir, segmenters=segs)


def test_limit_and_cancel(data_dir):
    segs = _fakes()
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters=segs, limit=1)
    assert report["data"]["samples_scored"] == 1 and segs["joint"].calls == 1
    assert report["pipelines"]["joint"]["interval"] is None       # one log: no interval to draw
    assert "interval of F1" not in evaluate.format_table(report)
    stop = threading.Event()
    stop.set()
    report = evaluate.evaluate_folder(data_dir, segmenters=_fakes(), cancel=stop)
    assert report["complete"] is False and report["data"]["samples_scored"] == 0
    assert "STOPPED EARLY" in evaluate.format_table(report)


def test_cancel_inside_the_segmenter_is_a_stop_not_an_error(data_dir):
    """The real segmenter raises Cancelled (a VeerError) when the event is set mid-scan."""
    from veer.errors import VeerError

    stop = threading.Event()

    class Cancelling(FakeSegmenter):
        def segment(self, gray, cancel=None, **kw):
            assert cancel is stop  # the event is passed on to the segmenter
            if (gray[:, 20] == C1_INK).all():
                stop.set()
                raise VeerError("cancelled")
            return super().segment(gray, **kw)

    segs = {m: Cancelling(m) for m in ("joint", "separate")}
    report = evaluate.evaluate_folder(data_dir, segmenters=segs, cancel=stop)
    assert report["complete"] is False
    assert report["data"]["samples_scored"] == 1 and report["data"]["samples_failed"] == 0
    assert [r["name"] for r in report["samples"]] == ["log_a.png"]


def test_user_errors(tmp_path, data_dir):
    with pytest.raises(ConfigError, match="no such folder"):
        evaluate.evaluate_folder(tmp_path / "missing", segmenters=_fakes())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="--n N"):
        evaluate.evaluate_folder(tmp_path / "empty", segmenters=_fakes())
    with pytest.raises(ConfigError, match="unknown pipeline"):
        evaluate.evaluate_folder(data_dir, modes=("joined",), segmenters=_fakes())


def test_cli_writes_report_and_prints_table(data_dir, tmp_path, monkeypatch, capsys):
    segs = _fakes(shift=1)
    monkeypatch.setattr(evaluate, "get_segmenter", lambda mode, device="auto", models_dir=None, flip=True, views=None, scales=None, scale_views=None: segs[mode])
    out = tmp_path / "reports" / "report.json"
    assert main(["evaluate", "--data", str(data_dir), "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "macro (curves)" in text and "tolerant scores" in text and "separate" in text
    assert "95 % interval of F1 over the logs" in text and "joint (2 logs): macro (all 3)" in text
    assert f"report written to {out}" in text
    report = json.loads(out.read_text())  # strict JSON: no NaN
    assert set(report["pipelines"]) == {"joint", "separate"}
    assert report["pipelines"]["joint"]["tolerant"]["curve1"]["f1"] == 1.0
    assert report["pipelines"]["joint"]["per_class"]["curve1"]["f1"] == 0.0
    assert len(report["samples"]) == 2
    assert report["samples"][1]["pipelines"]["separate"]["confusion_matrix"][1][1] == 0
    # default report path is inside the data folder
    assert main(["evaluate", "--data", str(data_dir), "--mode", "joint"]) == 0
    assert json.loads((data_dir / "evaluation.json").read_text())["modes"] == ["joint"]
    # --no-flip asks for segmenters without the mirror view; --scales for enlarged passes
    asked = []
    monkeypatch.setattr(evaluate, "get_segmenter",
                        lambda mode, device="auto", models_dir=None, flip=True, views=None, scales=None,
                        scale_views=None: asked.append((views, scales, scale_views)) or segs[mode])
    assert main(["evaluate", "--data", str(data_dir), "--mode", "joint", "--no-flip", "--no-digitize"]) == 0
    assert main(["evaluate", "--data", str(data_dir), "--mode", "joint", "--views", "4", "--no-digitize"]) == 0
    assert main(["evaluate", "--data", str(data_dir), "--mode", "joint", "--no-digitize",
                 "--scales", "1.3,1"]) == 0
    assert main(["evaluate", "--data", str(data_dir), "--mode", "joint", "--no-digitize",
                 "--scales", "1,1.3", "--scale-views", "1"]) == 0
    assert asked == [(1, None, None), (4, None, None), (2, (1.0, 1.3), None), (2, (1.0, 1.3), 1)]
    # a scale out of range is a one-line usage error
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--data", str(data_dir), "--scales", "5"])
    assert stop.value.code == 2 and "each scale must lie in" in capsys.readouterr().err


def test_cli_empty_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--data", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "no scans with truth" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_generates_logs_into_an_empty_folder(tmp_path, monkeypatch, capsys):
    """--n fills an empty folder through synth.generate_log/save_log, seeds from --seed."""
    synth = pytest.importorskip("veer.synth")
    made = []

    def fake_generate(seed, **_):
        made.append(seed)
        return seed

    def fake_save(log, out_dir, stem):
        _make_sample(Path(out_dir), stem, log)
        return {}

    monkeypatch.setattr(synth, "generate_log", fake_generate)
    monkeypatch.setattr(synth, "save_log", fake_save)
    segs = _fakes()
    monkeypatch.setattr(evaluate, "get_segmenter", lambda mode, device="auto", models_dir=None, flip=True, views=None, scales=None, scale_views=None: segs[mode])
    folder = tmp_path / "fresh"
    assert main(["evaluate", "--data", str(folder), "--n", "3", "--seed", "500"]) == 0
    assert made == [500, 501, 502]
    report = json.loads((folder / "evaluation.json").read_text())
    assert report["data"]["samples_scored"] == 3
    assert report["data"]["generated"] == {"n": 3, "seeds": [500, 502]}
    # a second run with --n scores what is there and generates nothing
    assert main(["evaluate", "--data", str(folder), "--n", "3", "--mode", "joint"]) == 0
    assert made == [500, 501, 502]


def test_generation_resumes_and_redoes_half_saved_logs(tmp_path, monkeypatch):
    synth = pytest.importorskip("veer.synth")
    made = []
    monkeypatch.setattr(synth, "generate_log", lambda seed, **_: made.append(seed) or seed)
    monkeypatch.setattr(synth, "save_log", lambda log, out_dir, stem: _make_sample(Path(out_dir), stem, log))
    folder = tmp_path / "gen"
    paths = evaluate.generate_eval_set(folder, 2, seed=900)
    assert [p.name for p in paths] == ["eval_00000900.png", "eval_00000901.png"] and made == [900, 901]
    (folder / "eval_00000901.curves.npz").unlink()  # as if the save had been cut short
    evaluate.generate_eval_set(folder, 3, seed=900)
    assert made == [900, 901, 901, 902]


def test_digitize_hook_is_used_when_present_and_failures_do_not_stop(data_dir, monkeypatch):
    calls = []

    def score_curves(truth, table):
        calls.append(table)
        return {"curve1": {"median_abs_error_px": 1.5, "within_3px": 0.9}, "rows": 48}

    fake = SimpleNamespace(trace_curves=lambda labels, tracks: {"tracks": tracks}, score_curves=score_curves)
    monkeypatch.setattr(evaluate, "digitize_api", lambda: fake)
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters=_fakes())
    dz = report["pipelines"]["joint"]["digitize"]
    assert dz["samples"] == 2
    assert dz["mean_over_samples"]["curve1.median_abs_error_px"] == 1.5
    assert calls[0]["tracks"] == [(5.0, 55.0)]  # from the truth, as the fake has no find_tracks
    assert report["samples"][0]["pipelines"]["joint"]["digitize"]["tracks_from"] == "truth"
    seen = []
    fake.find_tracks = lambda gray, labels=None: seen.append(labels) or [(4.0, 56.0)]
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters=_fakes())
    assert calls[-1]["tracks"] == [(4.0, 56.0)]
    assert seen and all(lab is not None and lab.shape == seen[0].shape for lab in seen)  # the labels help
    assert report["samples"][0]["pipelines"]["joint"]["digitize"]["tracks_from"] == "scan"
    del fake.find_tracks
    assert "curve digitisation" in evaluate.format_table(report)

    def broken(truth, table):
        raise RuntimeError("not finished yet")

    monkeypatch.setattr(evaluate, "digitize_api",
                        lambda: SimpleNamespace(trace_curves=fake.trace_curves, score_curves=broken))
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters=_fakes())
    assert report["pipelines"]["joint"]["per_class"]["curve1"]["f1"] == 1.0
    dz = report["pipelines"]["joint"]["digitize"]
    assert dz["failed_samples"] == 2 and "not finished yet" in dz["errors"][0]


def test_jsonable_and_report_round_trip(tmp_path):
    data = {"a": np.float32(0.5), "b": math.nan, "c": np.arange(3), "d": Path("x"), "e": (np.int64(2),)}
    out = evaluate.write_report(data, tmp_path / "r.json")
    assert evaluate.load_report(out) == {"a": 0.5, "b": None, "c": [0, 1, 2], "d": "x", "e": [2]}
    with pytest.raises(ConfigError, match="no such report"):
        evaluate.load_report(tmp_path / "nope.json")


@pytest.mark.slow
def test_real_synth_and_digitize_with_a_truth_segmenter(tmp_path, monkeypatch):
    """Integration: a generated log, scored with a segmenter that returns its truth,
    gets pixel F1 1.0 and curves traced from those labels."""
    synth = pytest.importorskip("veer.synth")
    monkeypatch.setattr(evaluate, "digitize_api", _real_digitize_api)
    if evaluate.digitize_api() is None:
        pytest.skip("veer.digitize has no trace_curves/score_curves yet")
    masks = {}
    for i, (height, width) in enumerate(((512, 448), (480, 416))):   # two logs told apart by their size
        log = synth.generate_log(evaluate.DEFAULT_SEED + 1 + i, height=height, width=width)
        synth.save_log(log, tmp_path, f"real{i}")
        masks[(height, width)] = synth.load_truth(tmp_path / f"real{i}.{log.meta['ext']}").mask

    class TruthSegmenter:
        def segment(self, gray, **_):
            mask = masks[gray.shape[:2]]
            labels = np.where(mask == 255, 1, mask).astype(np.uint8)
            return SimpleNamespace(labels=labels, conflict=np.zeros_like(labels), device="truth")

    # This checks evaluate's wiring, so track finding (scored in test_digitize) is taken
    # out of the loop: with no tracks found on the scan, evaluate falls back to the truth's.
    import veer.digitize
    monkeypatch.setattr(veer.digitize, "find_tracks", lambda gray, **_: [])
    report = evaluate.evaluate_folder(tmp_path, modes="joint", segmenters={"joint": TruthSegmenter()},
                                      truth_curves=True)
    p = report["pipelines"]["joint"]
    assert p["per_class"]["background"]["f1"] == 1.0 and p["per_class"]["curve1"]["f1"] == 1.0
    dz = p["digitize"]
    assert dz["samples"] == 2 and "failed_samples" not in dz
    # wiring check, not a quality bar for the tracer: wrong labels would give ~0
    assert dz["mean_over_samples"]["curve1.within3"] > 0.5
    # the truth masks traced too: the digitiser's own error, reported beside the pipelines
    dt = report["digitize_truth"]
    assert dt["samples"] == 2 and dt["mean_over_samples"]["curve1.within3"] > 0.5
    assert report["samples"][0]["digitize_truth"]["tracks_from"] == "truth"
    table = evaluate.format_table(report)
    assert "curve digitisation" in table and "truth_mask curve1" in table
    lo, hi = dz["pooled"]["curve1"]["within3_interval"]
    assert lo <= dz["pooled"]["curve1"]["within3"] <= hi
    assert "(joint: 95 % intervals over the logs: curve1 within 3px" in table
    # the rows split by where the true curve runs (score_curves' row kinds), pooled and printed
    c2 = dz["pooled"]["curve2"]
    assert sum(c2[f"n_rows_{k}"] for k in ("own_ink", "ink_gap", "under_other")) == c2["n_truth_rows"]
    assert sum(c2[f"n_within_{k}"] for k in ("own_ink", "ink_gap", "under_other")) == c2["n_within"]
    assert "(joint: within 3px where the true curve runs: curve1 on its own ink" in table
    assert p["interval"]["macro_all"] == [1.0, 1.0]                   # truth labels: F1 1 on every log


def _have_weights(models_dir: Path) -> bool:
    try:
        from veer.weights import PIPELINES
        names = [n for group in PIPELINES.values() for n in group]
    except ImportError:
        names = ["joint", "binary_background", "binary_curve1", "binary_curve2"]
    return all((models_dir / f"{n}.pt").exists() for n in names)


@pytest.mark.slow
def test_end_to_end_with_real_models(tmp_path, models_dir):
    """Real synth + real segmenters on one small generated log."""
    if not _have_weights(models_dir):
        pytest.skip("trained weights are not in assets/models yet")
    synth = pytest.importorskip("veer.synth")
    pytest.importorskip("veer.infer")
    log = synth.generate_log(evaluate.DEFAULT_SEED, height=1024, width=768)
    synth.save_log(log, tmp_path, "e2e")
    report = evaluate.evaluate_folder(tmp_path, device="cpu")
    assert report["data"]["samples_scored"] == 1
    for mode in ("joint", "separate"):
        p = report["pipelines"][mode]
        assert p["per_class"]["background"]["f1"] > 0.95
        assert p["tolerant"]["macro_curves_f1"] > 0.5
    assert report["pipelines"]["separate"]["conflicts"]["pixels"] == 1024 * 768
    assert "macro (curves)" in evaluate.format_table(report)


@pytest.mark.slow
def test_real_segmenters_wiring_with_untrained_weights(tmp_path):
    """Real synth + real veer.infer with tiny untrained weights: checks the wiring
    (both pipelines run, the separate one reports a conflict map covering every
    pixel), not the scores."""
    synth = pytest.importorskip("veer.synth")
    pytest.importorskip("veer.infer")
    torch = pytest.importorskip("torch")
    from veer.model import build_model
    from veer.weights import PIPELINES, save_model

    torch.manual_seed(0)
    models = tmp_path / "models"
    cfg = {"widths": [4, 8], "blocks": [1], "attn_layers": 0}
    save_model(build_model(cfg, 3), PIPELINES["joint"][0], {"task": "joint"}, models_dir=models)
    for name in PIPELINES["separate"]:
        save_model(build_model(cfg, 1), name, {"task": "binary", "target": name.split("_", 1)[1]},
                   models_dir=models)
    log = synth.generate_log(evaluate.DEFAULT_SEED + 2, height=384, width=320)
    synth.save_log(log, tmp_path / "data", "wire")
    report = evaluate.evaluate_folder(tmp_path / "data", device="cpu", models_dir=models, digitize=False)
    assert report["data"]["samples_scored"] == 1 and report["device"].startswith("CPU")
    for mode in ("joint", "separate"):
        p = report["pipelines"][mode]
        assert sum(map(sum, p["confusion_matrix"])) == p["pixels"] == 384 * 320 - int((log.mask == 255).sum())
        assert p["seconds"] > 0
    c = report["pipelines"]["separate"]["conflicts"]
    assert c["pixels"] == 384 * 320 and c["agreed"] + c["conflict"] + c["gap"] == c["pixels"]
    # the report says which weights it scored, so a shipped report is not shown for other weights
    from veer import viz
    from veer.weights import load_card
    assert report["weights"] == {n: load_card(n, models)["sha256"] for names in PIPELINES.values() for n in names}
    assert viz.report_matches_models(report, models) and not viz.report_matches_models(report, tmp_path / "none")
    fakes = evaluate.evaluate_folder(tmp_path / "data", segmenters=_fakes(), digitize=False)
    assert fakes["weights"] is None                  # stand-ins: the report vouches for no weights


class SharedFake(FakeSegmenter):
    """A fake with pixels in doubt and a known run time, as the real segmenter gives."""

    cards = [{"sha256": "aaaa"}]
    views = 2

    def segment(self, gray, **kw):
        out = super().segment(gray, **kw)
        out.shared = out.labels == 1
        out.shared[:, :5] = False
        out.seconds = 0.25
        return out


def test_kept_labels_are_reused_and_score_the_same(data_dir, tmp_path):
    """--labels: a second run reads the labels back instead of running the models, and
    the report (figures, pixels in doubt, conflicts) does not change."""
    keep = tmp_path / "labels"
    segs = {m: SharedFake(m, shift=1, conflict_rows=[(3, 1)]) for m in ("joint", "separate")}
    first = evaluate.evaluate_folder(data_dir, segmenters=segs, labels_dir=keep)
    assert first["labels_cache"] == {"dir": str(keep), "reused": 0, "computed": 4}
    assert len(list(keep.glob("*.npz"))) == 4 and not list(keep.glob("*.part"))

    again = {m: SharedFake(m, shift=1, conflict_rows=[(3, 1)]) for m in ("joint", "separate")}
    second = evaluate.evaluate_folder(data_dir, segmenters=again, labels_dir=keep)
    assert again["joint"].calls == 0 and again["separate"].calls == 0
    assert second["labels_cache"]["reused"] == 4 and second["labels_cache"]["computed"] == 0
    for mode in ("joint", "separate"):
        assert second["pipelines"][mode]["per_class"] == first["pipelines"][mode]["per_class"]
    assert second["pipelines"]["separate"]["conflicts"] == first["pipelines"]["separate"]["conflicts"]
    # the stored seconds are those of the run that made the labels, not of reading them
    assert second["timing"]["joint_seconds"] == pytest.approx(first["timing"]["joint_seconds"])

    # what came back is what went in, pixels in doubt included
    cache = evaluate.LabelCache(SharedFake("joint"), "joint", keep)
    gray = np.full((40, 30), 255, np.uint8)
    gray[:, 12] = C1_INK
    made = cache.segment(gray)
    back = evaluate.LabelCache(SharedFake("joint"), "joint", keep).segment(gray)
    assert back.cached and np.array_equal(back.labels, made.labels)
    assert np.array_equal(back.shared, made.shared) and back.shared.any()


def test_kept_labels_are_not_reused_for_other_weights_or_views(data_dir, tmp_path):
    keep = tmp_path / "labels"
    evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": SharedFake("joint")},
                             labels_dir=keep)
    # the plain scale keeps the old key: labels kept before scales existed are still reused
    plain = SharedFake("joint")
    plain.scales = (1.0,)
    evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": plain}, labels_dir=keep)
    assert plain.calls == 0

    other_weights = SharedFake("joint")
    other_weights.cards = [{"sha256": "bbbb"}]
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": other_weights},
                                      labels_dir=keep)
    assert other_weights.calls == 2 and report["labels_cache"]["computed"] == 2

    one_view = SharedFake("joint")
    one_view.views = 1
    evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": one_view}, labels_dir=keep)
    assert one_view.calls == 2

    two_scales = SharedFake("joint")
    two_scales.scales = (1.0, 1.3)
    evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": two_scales}, labels_dir=keep)
    assert two_scales.calls == 2

    # the same scales with the enlarged tiles in one view only are other labels
    fewer = SharedFake("joint")
    fewer.scales, fewer.scale_views = (1.0, 1.3), 1
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": fewer}, labels_dir=keep)
    assert fewer.calls == 2
    assert report["scale_views"] == {"joint": 1} and report["views"] == {"joint": 2}
    assert "scales per tile: joint 1 + 1.3 (1.3 in 1 view)" in evaluate.format_table(report)
    # and once kept, they are reused
    again = SharedFake("joint")
    again.scales, again.scale_views = (1.0, 1.3), 1
    evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": again}, labels_dir=keep)
    assert again.calls == 0


def test_a_damaged_kept_label_file_is_computed_again(data_dir, tmp_path):
    keep = tmp_path / "labels"
    evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": SharedFake("joint")},
                             labels_dir=keep)
    for f in keep.glob("*.npz"):
        f.write_bytes(b"not an npz")
    seg = SharedFake("joint")
    report = evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": seg}, labels_dir=keep)
    assert seg.calls == 2 and report["pipelines"]["joint"]["per_class"]["curve1"]["f1"] == 1.0


def test_a_labels_folder_that_cannot_be_made_is_one_clear_error(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(evaluate.ConfigError, match="--labels"):
        evaluate.evaluate_folder(data_dir, modes="joint", segmenters={"joint": SharedFake("joint")},
                                 labels_dir=blocker / "sub")


def test_cli_keeps_labels_and_says_what_it_reused(data_dir, tmp_path, monkeypatch, capsys):
    segs = {m: SharedFake(m) for m in ("joint", "separate")}
    monkeypatch.setattr(evaluate, "get_segmenter", lambda mode, device="auto", models_dir=None, flip=True, views=None, scales=None, scale_views=None: segs[mode])
    keep = tmp_path / "keep"
    assert main(["evaluate", "--data", str(data_dir), "--labels", str(keep), "--no-digitize"]) == 0
    assert "0 reused, 4 computed" in capsys.readouterr().out
    assert main(["evaluate", "--data", str(data_dir), "--labels", str(keep), "--no-digitize"]) == 0
    assert "4 reused, 0 computed" in capsys.readouterr().out
    assert segs["joint"].calls == 2 and segs["separate"].calls == 2  # the first run only
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["evaluate", "--data", str(data_dir), "--labels", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err
    assert "--labels" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
