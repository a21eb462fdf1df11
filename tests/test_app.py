"""The dashboard under Streamlit's AppTest: every page runs, and the pages do what a user asks.

The live page's mechanics (segment, score, upload, errors) are tested with
tiny untrained networks of the shipped architecture written to a temporary
folder, and a small synthetic log, so they run in seconds whatever is shipped
in assets/. One slow test uses the shipped models and samples when present.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from veer import viz

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
LIVE = "pages/live_segmentation.py"
TINY = {"widths": [4, 8, 16, 32, 64], "blocks": [0, 1, 1, 1], "attn_layers": 1}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Untrained tiny networks for both pipelines, with cards and histories."""
    import torch

    from veer.model import build_model
    from veer.weights import PIPELINES, save_history, save_model

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    for pipe, names in PIPELINES.items():
        for name in names:
            joint = pipe == "joint"
            target = None if joint else name.split("_", 1)[1]
            model = build_model(TINY, out_channels=3 if joint else 1)
            per = ({"background": {"f1": 0.9, "iou": 0.8}, "curve1": {"f1": 0.4, "iou": 0.3},
                    "curve2": {"f1": 0.3, "iou": 0.2}} if joint
                   else {f"not_{target}": {"f1": 0.9, "iou": 0.8}, target: {"f1": 0.3, "iou": 0.2}})
            save_model(model, name, {"task": "joint" if joint else "binary", "target": target,
                                     "training": {"steps": 2}, "validation": {"per_class": per}}, folder)
            save_history(name, [{"step": s, "loss": 1.0 / s, "val_macro_f1": 0.1 * s, "val": per}
                                for s in (1, 2)], folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """One small synthetic log with its truth, in its own folder."""
    from veer.synth import generate_log, save_log

    folder = tmp_path_factory.mktemp("samples")
    paths = save_log(generate_log(7, height=288, width=320, style=None), folder, "tiny")
    return paths["image"]


@pytest.fixture
def dashboard(monkeypatch, tiny_models, tiny_sample):
    """The app pointed at the tiny models and the tiny sample."""
    monkeypatch.setattr(viz, "MODELS_DIR", tiny_models)
    monkeypatch.setattr(viz, "SAMPLES_DIR", tiny_sample.parent)
    return tiny_models


def open_page(page: str | None = None, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [m.value for m in at.info]
    parts += [m.value for m in at.error] + [m.value for m in at.warning]
    return "\n".join(str(p) for p in parts)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- every page runs

@pytest.mark.parametrize("page", [None, "pages/home.py", LIVE, "pages/results_explorer.py",
                                  "pages/decision_lever.py"])
def test_every_page_runs_without_models_or_samples(page, monkeypatch, tmp_path):
    monkeypatch.setattr(viz, "MODELS_DIR", tmp_path / "no_models")
    monkeypatch.setattr(viz, "SAMPLES_DIR", tmp_path / "no_samples")
    at = open_page(page)
    no_exception(at)
    assert at.title  # every page has a title
    shown = texts(at)
    if page in (None, "pages/home.py"):
        assert "No trained models" in shown
    if page == LIVE:
        assert "No bundled samples" in shown


def test_home_shows_device_legend_and_model_figures(dashboard):
    at = open_page()
    no_exception(at)
    shown = texts(at)
    assert "Curve 1 (solid)" in shown and "Curve 2 (dashed/dotted)" in shown
    assert "CPU" in shown or "GPU" in shown
    assert any(p in shown for p in ("fp32", "bf16", "fp16"))   # and the arithmetic it uses
    labels = {m.label for m in at.metric}
    assert "Joint F1, mean of 3 classes" in labels
    assert any(m.value == "0.533" for m in at.metric)  # mean of the card's 0.9 / 0.4 / 0.3
    assert at.dataframe and "binary_curve2" in set(at.dataframe[0].value["model"])


def test_home_shows_the_shipped_report_to_three_places(dashboard, monkeypatch):
    """The headline figure comes from the evaluation report made with these weights; 0.927 must not read 0.93."""
    report = {"pipelines": {"joint": {"macro_all": {"f1": 0.9272, "iou": 0.8691},
                                      "macro_curves": {"f1": 0.8916, "iou": 0.8047}}}}
    monkeypatch.setattr(viz, "find_report", lambda assets=None, models_dir=None: (report, None))
    at = open_page()
    no_exception(at)
    values = {m.label: m.value for m in at.metric}
    assert values["Joint F1, mean of 3 classes"] == "0.927" and values["Joint F1, curves only"] == "0.892"
    assert "Figures from the evaluation report" in texts(at)


# --------------------------------------------------------------------------- the decision lever

def verdict(at: AppTest) -> str:
    heads = [m.value for m in at.markdown if "Verdict:" in str(m.value)]
    assert len(heads) == 1
    return heads[0]


def test_lever_moves_the_verdict_where_it_should():
    at = open_page("pages/decision_lever.py")
    no_exception(at)
    assert at.slider(key="lever").value == 2
    assert "SEMANTIC (clear)" in verdict(at)
    assert "rule of thumb" in texts(at)
    at.slider(key="lever").set_value(12).run()
    assert "SEMANTIC" in verdict(at)
    at.slider(key="lever").set_value(20).run()
    assert "INSTANCE" in verdict(at)
    at.slider(key="lever").set_value(40).run()
    assert "INSTANCE" in verdict(at)
    no_exception(at)


def test_answers_move_the_verdict_for_two_objects():
    at = open_page("pages/decision_lever.py")
    at.radio(key="q_named").set_value("Anonymous, countable duplicates").run()
    assert "INSTANCE" in verdict(at)
    at.radio(key="q_named").set_value("Named (each a different known thing)").run()
    at.radio(key="q_known").set_value("No").run()
    assert "INSTANCE" in verdict(at)
    at.radio(key="q_known").set_value("Yes").run()
    assert "SEMANTIC" in verdict(at)


def test_demo_counts_follow_the_lever():
    at = open_page("pages/decision_lever.py")
    drawn = {m.label: m.value for m in at.metric}
    assert drawn["Traces drawn"] == "2" and drawn["Components found"] == "2"
    at.slider(key="lever").set_value(40).run()
    after = {m.label: m.value for m in at.metric}
    assert after["Traces drawn"] == "40"
    assert int(after["Components found"]) < 40 and int(after["Traces fused at crossings"]) > 0


# --------------------------------------------------------------------------- the live page

def scores_table(at: AppTest):
    for df in at.dataframe:
        value = df.value
        if "f1" in value.columns and "tolerant f1" in value.columns:
            return value
    return None


@pytest.mark.slow
def test_a_bundled_sample_segments_and_shows_scores(dashboard):
    at = open_page(LIVE)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    labels = {m.label for m in at.metric}
    assert {viz.PIPELINE_LABELS["joint"], viz.PIPELINE_LABELS["separate"], "Device"} <= labels
    table = scores_table(at)
    assert table is not None
    assert set(table["class"]) >= {"curve1", "curve2", "mean (3 classes)", "mean (curves only)"}
    assert len(set(table["pipeline"])) == 2
    shown = texts(at)
    assert "by construction" in shown and "0 pixels claimed twice" in shown
    assert "claimed by two or more masks" in " ".join(m.label for m in at.metric)
    assert at.get("download_button")


@pytest.mark.slow
def test_display_changes_never_rerun_the_models(dashboard, monkeypatch):
    at = open_page(LIVE)
    no_exception(at)
    import veer.infer

    def refuse(*args, **kwargs):
        raise AssertionError("a display change ran a model")

    monkeypatch.setattr(veer.infer.Segmenter, "segment", refuse)
    at.slider(key="alpha").set_value(0.3).run()
    at.button_group(key="classes").set_value([1]).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert scores_table(at) is not None


@pytest.mark.slow
def test_sharper_strokes_runs_an_enlarged_pass_and_says_so(dashboard, monkeypatch):
    at = open_page(LIVE)
    no_exception(at)
    plain = scores_table(at).copy()
    import veer.infer

    asked = []
    real = veer.infer.Segmenter.segment

    def spy(self, gray, **kw):
        asked.append((self.mode, self.scales, self.views_at(1.3)))
        return real(self, gray, **kw)

    monkeypatch.setattr(veer.infer.Segmenter, "segment", spy)
    at.toggle(key="sharper").set_value(True).run()
    no_exception(at)
    assert sorted(asked) == [("joint", viz.SHARPER_SCALES, 1), ("separate", viz.SHARPER_SCALES, 1)]
    assert "each tile also at 1.3x, in one view" in texts(at)
    sharper = scores_table(at)
    assert not sharper["f1"].equals(plain["f1"]), "the enlarged pass changes the labels"
    # back to the plain pass: answered from the store, no model runs
    asked.clear()
    at.toggle(key="sharper").set_value(False).run()
    assert asked == [] and scores_table(at)["f1"].equals(plain["f1"])


@pytest.mark.slow
def test_an_uploaded_scan_and_mask_segment_and_score(dashboard, tiny_sample):
    from veer.synth import load_truth

    at = open_page(LIVE)
    at.radio(key="source").set_value("Upload a scan").run()
    gray = np.asarray(Image.open(tiny_sample).convert("L"))[:160, :200]
    at.file_uploader(key="upload").upload("my scan.png", png(gray), "image/png")
    at.run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert "my scan.png" in texts(at) and "no truth" in texts(at)
    assert scores_table(at) is None
    truth = np.asarray(load_truth(tiny_sample).mask)[:160, :200]
    at.file_uploader(key="truth_upload").upload("truth.png", png(truth), "image/png")
    at.run()
    no_exception(at)
    assert scores_table(at) is not None


@pytest.mark.slow
def test_a_multi_page_tiff_offers_a_page_picker(dashboard):
    at = open_page(LIVE)
    at.radio(key="source").set_value("Upload a scan").run()
    pages = [Image.fromarray(np.full((64, 96), v, np.uint8)) for v in (255, 200)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    at.file_uploader(key="upload").upload("two.tif", buf.getvalue(), "image/tiff")
    at.run()
    no_exception(at)
    assert "page 1 of 2" in texts(at)
    at.number_input(key="page").set_value(2).run()
    no_exception(at)
    assert "page 2 of 2" in texts(at)


@pytest.mark.parametrize("name,data", [
    ("broken.png", b"this is not an image"),
    ("empty.png", b""),
    ("truncated.png", None),
])
def test_a_bad_upload_shows_an_error_not_a_traceback(dashboard, name, data):
    if data is None:
        data = png(np.zeros((50, 50), np.uint8))[:60]
    at = open_page(LIVE)
    at.radio(key="source").set_value("Upload a scan").run()
    at.file_uploader(key="upload").upload(name, data, "image/png")
    at.run()
    no_exception(at)
    assert at.error, "a bad file must say what is wrong"
    assert name in at.error[0].value
    assert "Traceback" not in at.error[0].value


def test_a_mask_of_the_wrong_size_is_refused_with_a_message(dashboard, monkeypatch):
    # no model is needed to check the mask: make segmentation fail fast and visibly
    at = open_page(LIVE)
    at.radio(key="source").set_value("Upload a scan").run()
    at.file_uploader(key="upload").upload("scan.png", png(np.full((40, 60), 255, np.uint8)), "image/png")
    at.file_uploader(key="truth_upload").upload("mask.png", png(np.zeros((10, 10), np.uint8)), "image/png")
    at.run()
    no_exception(at)
    errors = " ".join(e.value for e in at.error)
    assert "Truth mask not used" in errors and "same size" in errors


def test_missing_models_are_reported_per_pipeline(monkeypatch, tmp_path, tiny_sample):
    monkeypatch.setattr(viz, "MODELS_DIR", tmp_path / "empty")
    monkeypatch.setattr(viz, "SAMPLES_DIR", tiny_sample.parent)
    at = open_page(LIVE)
    no_exception(at)
    errors = " ".join(e.value for e in at.error)
    assert "could not run" in errors and "retrain with" in errors


@pytest.mark.slow
def test_the_digitise_panel_traces_calibrates_and_offers_las(dashboard):
    at = open_page(LIVE)
    no_exception(at)
    labels = {b.label for b in at.get("download_button")}
    assert "Curves per row (CSV)" in labels
    # the sample's truth fills in the depth calibration, so LAS is offered
    assert "Curves by depth (LAS 2.0)" in labels
    assert any("Depth: depth =" in c.value for c in at.caption)
    # widgets in a form apply when the form is submitted
    at.text_input[0].set_value("10:abc")
    at.form_submit_button[0].click()
    at.run()
    no_exception(at)
    assert any("ROW:DEPTH" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input[0].set_value("")
    at.form_submit_button[0].click()
    at.run()
    no_exception(at)
    labels = {b.label for b in at.get("download_button")}
    assert "Curves per row (CSV)" in labels and "Curves by depth (LAS 2.0)" not in labels


# --------------------------------------------------------------------------- the results explorer

def test_results_explorer_shows_histories_comparison_and_bench_note(dashboard):
    at = open_page("pages/results_explorer.py")
    no_exception(at)
    assert at.selectbox(key="history_model").options
    shown = texts(at)
    assert "does not say which mask is which class" in shown
    if not (ROOT / "assets" / "bench.json").exists():
        assert "assets/bench.json is absent" in shown
    at.radio(key="eval_source").set_value("Model cards (validation tiles)").run()
    no_exception(at)
    means = [df.value for df in at.dataframe if "source" in df.value.columns]
    assert means and {"veer joint", "archive joint"} <= set(means[0]["source"])


@pytest.fixture
def two_logs(tiny_sample, tmp_path) -> Path:
    """The tiny sample and a second small log in one folder: enough logs for a spread over them."""
    import shutil

    from veer.synth import generate_log, save_log

    folder = tmp_path / "two_logs"
    folder.mkdir()
    for f in tiny_sample.parent.glob("tiny*"):
        shutil.copy(f, folder / f.name)
    save_log(generate_log(8, height=256, width=288, style=None), folder, "second")
    return folder


def spread_table(at: AppTest):
    """The results page's table of F1 intervals over the logs, or None."""
    tables = [df.value for df in at.dataframe if "95 % interval, low" in df.value.columns]
    return tables[0] if tables else None


@pytest.mark.slow
def test_results_explorer_runs_an_evaluation_on_the_bundled_samples(dashboard, two_logs, monkeypatch):
    monkeypatch.setattr(viz, "SAMPLES_DIR", two_logs)
    monkeypatch.setattr(viz, "find_report", lambda assets=None: (None, None))
    at = open_page("pages/results_explorer.py")
    at.radio(key="eval_source").set_value("Bundled samples").run()
    at.button(key="run_bundled").click().run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    per_sample = [df.value for df in at.dataframe if "sample" in df.value.columns]
    assert per_sample and {"tiny.png", "second.png"} <= set(per_sample[0]["sample"])
    assert any("Confusion" in str(h.value) for h in at.header)
    spread = spread_table(at)
    assert spread is not None and set(spread["pipeline"]) == {viz.PIPELINE_LABELS["joint"],
                                                              viz.PIPELINE_LABELS["separate"]}
    assert set(spread["logs"]) == {"2"} and len(spread) == 6
    assert any("hang on the logs drawn" in str(h.value) for h in at.subheader)
    # the curves traced from each pipeline's labels, against the targets, and where their rows are lost
    assert any("Digitised curves" in str(h.value) for h in at.header)
    curves = [df.value for df in at.dataframe if "traced from" in df.value.columns]
    assert curves and set(curves[0]["traced from"]) == {viz.PIPELINE_LABELS["joint"],
                                                         viz.PIPELINE_LABELS["separate"], "target"}
    assert any("Where the rows are lost" in str(h.value) for h in at.subheader)


def test_results_explorer_opens_on_the_shipped_report(dashboard, two_logs, tmp_path, monkeypatch):
    """A stakeholder sees the shipped evaluation (both pipelines, per log, the spread) without running one."""
    from types import SimpleNamespace

    from veer.evaluate import evaluate_folder, load_report, write_report
    from veer.synth import find_samples, load_truth

    truth = {m.shape: m for m in (load_truth(p).mask for p in find_samples(two_logs))}

    class TruthSegmenter:
        def __init__(self, mode):
            self.mode = mode

        def segment(self, gray, **_):
            mask = truth[gray.shape[:2]]
            labels = np.where(mask == 255, 1, mask).astype(np.uint8)
            return SimpleNamespace(labels=labels, conflict=np.zeros_like(labels) if self.mode == "separate" else None,
                                   device="truth", mode=self.mode)

    report = evaluate_folder(two_logs, segmenters={m: TruthSegmenter(m) for m in ("joint", "separate")},
                             digitize=False)
    assert report["data"]["samples_scored"] == 2
    path = write_report(report, tmp_path / "evaluation.json")
    monkeypatch.setattr(viz, "find_report", lambda assets=None: (load_report(path), path))
    at = open_page("pages/results_explorer.py")
    no_exception(at)
    assert at.radio(key="eval_source").value == "Shipped evaluation report"
    assert any("evaluation.json" in str(c.value) for c in at.caption)
    per_sample = [df.value for df in at.dataframe if "sample" in df.value.columns]
    assert per_sample and {"tiny.png", "second.png"} <= set(per_sample[0]["sample"])
    spread = spread_table(at)
    assert spread is not None and set(spread["95 % interval, low"]) == {"1.000"}   # truth labels: F1 1 on each log
    assert not any("Digitised curves" in str(h.value) for h in at.header)   # a report without curve scores


# --------------------------------------------------------------------------- the shipped models

@pytest.mark.slow
def test_shipped_models_segment_a_bundled_sample(root):
    from veer.synth import find_samples

    samples = find_samples(root / "assets" / "samples")
    cards = [root / "assets" / "models" / f"{n}.json" for n in ("joint", "binary_background",
                                                                "binary_curve1", "binary_curve2")]
    if not samples or not all(c.exists() for c in cards):
        pytest.skip("no shipped models or samples in assets/ (train them and run python -m veer synth)")
    at = open_page(LIVE, timeout=600)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    table = scores_table(at)
    assert table is not None
    joint = table[(table["pipeline"] == viz.PIPELINE_LABELS["joint"]) & (table["class"] == "mean (curves only)")]
    assert float(joint["f1"].iloc[0]) > 0.15  # trained weights find the curves (untrained: about 0)


# --------------------------------------------------------------------------- the results explorer: batch runs

def frame_with(at: AppTest, *columns: str):
    """The first table on the page that has all of ``columns``, or None."""
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    return None


def open_batch_page(monkeypatch, tmp_path, folder: str | None) -> AppTest:
    monkeypatch.setattr(viz, "MODELS_DIR", tmp_path / "no_models")  # the other sections stay quick
    monkeypatch.setattr(viz, "SAMPLES_DIR", tmp_path / "no_samples")
    at = open_page("pages/results_explorer.py")
    no_exception(at)
    if folder is not None:
        at.text_input(key="batch_dir").set_value(folder).run()
        no_exception(at)
    return at


def test_results_explorer_opens_a_batch_and_browses_its_scans(monkeypatch, tmp_path, batch_run):
    import pandas as pd

    out = batch_run["out"]
    at = open_batch_page(monkeypatch, tmp_path, None)
    assert at.text_input(key="batch_dir").value == ""
    assert "python -m veer batch SCANS... --out results/" in texts(at)  # the hint, before any folder
    at.text_input(key="batch_dir").set_value(str(out)).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]

    summary = frame_with(at, "stem", "status", "las_note")
    assert summary is not None and list(summary["stem"]) == ["corrupt", "scan0000", "scan0001"]
    assert list(summary["status"]) == ["failed", "done", "done"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Scans done"] == "2 of 3" and metrics["Scans failed"] == "1"
    assert metrics["Megapixels"] == "0.3"
    assert metrics["Mean coverage, curve 1 / curve 2"].endswith(" / 0.00")
    assert "CPU (threshold, test-only)" in texts(at)
    failures = [df.value for df in at.dataframe if list(df.value.columns) == ["stem", "input", "error"]]
    assert len(failures) == 1 and list(failures[0]["stem"]) == ["corrupt"]
    assert "corrupt.tif" in failures[0]["error"].iloc[0]

    scan = at.selectbox(key="batch_scan")
    assert scan.options == ["scan0000", "scan0001"] and scan.value == "scan0000"
    assert at.get("plotly_chart")
    curves = frame_with(at, "row", "track", "curve1_x")
    pd.testing.assert_frame_equal(curves, pd.read_csv(out / "scan0000.curves.csv"), check_dtype=False)
    labels = {b.label for b in at.get("download_button")}
    assert {"Batch summary (CSV)", "Mask (PNG)", "Curves (CSV)", "Curves by depth (LAS 2.0)"} <= labels
    assert "Conflict map (PNG)" not in labels  # a joint run writes none

    at.selectbox(key="batch_scan").set_value("scan0001").run()
    no_exception(at)
    curves = frame_with(at, "row", "track", "curve1_x")
    pd.testing.assert_frame_equal(curves, pd.read_csv(out / "scan0001.curves.csv"), check_dtype=False)


@pytest.mark.parametrize("kind", ["missing folder", "damaged summary"])
def test_results_explorer_shows_a_bad_batch_folder_as_an_error(kind, monkeypatch, tmp_path, batch_run):
    import shutil

    if kind == "missing folder":
        folder, says = tmp_path / "no_such_batch", "no such folder"
    else:
        folder, says = Path(shutil.copytree(batch_run["out"], tmp_path / "damaged")), "damaged"
        (folder / "summary.parquet").unlink()
        (folder / "summary.csv").write_bytes(bytes(range(256)) * 8)
    at = open_batch_page(monkeypatch, tmp_path, str(folder))
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and says in errors[0] and str(folder) in errors[0]
    assert "Traceback" not in errors[0]
    assert frame_with(at, "stem", "status") is None  # no summary, no scan picker
    assert "batch_scan" not in {s.key for s in at.selectbox}
