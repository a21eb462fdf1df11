"""veer.batch: inputs, output names, manifest, per-scan work, and whole runs on a Dask LocalCluster.

The cluster tests use the batch module's test-only hook (``segmenter=``) so
the workers run a model-free segmenter instead of the trained weights; one
test runs the shipped models and skips when they are absent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from veer import batch
from veer.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
MODELS = ROOT / "assets" / "models"


# ------------------------------------------------------------------ helpers (also run on workers)

class SlowSegmenter(batch.ThresholdSegmenter):
    """The threshold segmenter, slowed down so a run can be killed half way."""

    def segment(self, gray, **kw):
        time.sleep(0.5)
        return super().segment(gray, **kw)


def slow_segmenter(mode, device="auto"):
    return SlowSegmenter(mode, device)


class CrashOnceSegmenter(batch.ThresholdSegmenter):
    """Kills its worker process the first time any worker segments (marker file = already crashed)."""

    def __init__(self, mode, device, marker):
        super().__init__(mode, device)
        self.marker = marker

    def segment(self, gray, **kw):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().segment(gray, **kw)
        os.close(fd)
        os._exit(17)  # a hard crash: no exception, the process is gone


class CrashFactory:
    def __init__(self, marker):
        self.marker = str(marker)

    def __call__(self, mode, device="auto"):
        return CrashOnceSegmenter(mode, device, self.marker)


@pytest.fixture(scope="module")
def make_scans(tmp_path_factory):
    """make_scans(folder, n): ``n`` small synthetic logs (256 x 512, veer.synth) copied into
    ``folder``; each is generated once per module (the generator costs ~0.5 s a log).

    Only logs whose track borders veer.digitize finds are kept (a few synthetic
    styles have none at this small size), so every scan but the corrupt one
    the tests add must come out ``done``.
    """
    import shutil

    from veer.digitize import find_tracks
    from veer.io import read_image
    from veer.synth import generate_log, save_log

    src = tmp_path_factory.mktemp("synth")
    cache: list[Path] = []
    seeds = iter(range(100, 1000))

    def make(folder: Path, n: int) -> list[Path]:
        while len(cache) < n:
            i = len(cache)
            path = Path(save_log(generate_log(next(seeds), height=256, width=512), src, f"scan{i:04d}")["image"])
            if find_tracks(read_image(path)):
                cache.append(path)
        folder.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy2(p, folder / p.name)) for p in cache[:n]]

    return make


def manifest_lines(out: Path) -> list[dict]:
    path = out / batch.MANIFEST
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def check_outputs(out: Path, stem: str, mode: str = "joint", shape=None) -> None:
    from veer.classes import read_mask

    mask = read_mask(out / f"{stem}.mask.png")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}
    if shape is not None:
        assert mask.shape == shape
    if mode == "separate":
        assert (out / f"{stem}.conflict.png").exists()
    csv = out / f"{stem}.curves.csv"
    assert csv.exists() and csv.stat().st_size > 0
    import pandas as pd

    assert len(pd.read_csv(csv)) > 0


@pytest.fixture(scope="module")
def client():
    """One LocalCluster of 2 worker processes for the module's cluster tests."""
    import logging

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


# ------------------------------------------------------------------ fast unit tests

def test_expand_inputs_folders_globs_and_exclusions(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    for rel in ("a/x.png", "a/deep/y.TIF", "a/deep/z.jpeg", "a/notes.txt", "a/.hidden.png",
                "a/x.mask.png", "out/old.png", "b.gif"):
        (tmp_path / rel).write_bytes(b"x")
    got = batch.expand_inputs([tmp_path / "a", str(tmp_path / "*.gif"), tmp_path], exclude=tmp_path / "out")
    names = sorted(p.name for p in got)
    assert names == ["b.gif", "x.png", "y.TIF", "z.jpeg"]
    assert len(got) == len(set(got))
    # an explicit file is taken even if it looks like a mask
    assert [p.name for p in batch.expand_inputs([tmp_path / "a" / "x.mask.png"])] == ["x.mask.png"]
    with pytest.raises(ConfigError, match="no such file"):
        batch.expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(ConfigError, match="matches no image"):
        batch.expand_inputs([str(tmp_path / "*.bmp")])


def test_assign_stems_unique_stable_and_never_over_inputs(tmp_path):
    a, b, c = tmp_path / "one" / "log.tif", tmp_path / "two" / "log.png", tmp_path / "solo.png"
    stems = batch.assign_stems([a, b, c], tmp_path / "out")
    assert stems[c] == "solo"
    assert stems[a] != stems[b] and stems[a].startswith("log-") and stems[b].startswith("log-")
    # a scan known from the manifest keeps its stem; a new claimant of it is renamed
    d = tmp_path / "three" / "solo.png"
    again = batch.assign_stems([c, d], tmp_path / "out", known={str(c): "solo"})
    assert again[c] == "solo" and again[d] != "solo"
    # case-insensitive file systems: Log and log clash
    e, f = tmp_path / "Log.png", tmp_path / "x" / "log.png"
    s2 = batch.assign_stems([e, f], tmp_path)
    assert s2[e].lower() != s2[f].lower()
    # outputs written beside the inputs never replace an input
    g, h = tmp_path / "scan.png", tmp_path / "scan.mask.png"
    s3 = batch.assign_stems([g, h], tmp_path)
    outs = {p for s in s3.values() for p in batch.output_paths(tmp_path, s, "separate", True).values()}
    assert g not in outs and h not in outs


def test_manifest_survives_a_line_cut_short(tmp_path):
    m = batch.Manifest(tmp_path)
    m.append({"input": "/a.png", "stem": "a", "status": "done"})
    m.close()
    with open(tmp_path / batch.MANIFEST, "a") as fh:
        fh.write('{"input": "/b.png", "sta')  # killed mid-line
    m2 = batch.Manifest(tmp_path)
    assert set(m2.entries) == {"/a.png"}
    m2.append({"input": "/c.png", "stem": "c", "status": "done"})
    m2.close()
    assert set(batch.Manifest(tmp_path).entries) == {"/a.png", "/c.png"}


def test_process_scan_writes_outputs_and_returns_user_errors(tmp_path, make_scans):
    scan = make_scans(tmp_path / "in", 1)[0]
    out = tmp_path / "out"
    out.mkdir()
    opts = batch.BatchOptions(mode="separate", segmenter="threshold")
    job = batch.ScanJob(input=str(scan), stem="s", out_dir=str(out), size=scan.stat().st_size, mtime_ns=0)
    rec = batch.process_scan(job, opts)
    assert rec["status"] == "done", rec["error"]
    check_outputs(out, "s", "separate", shape=(256, 512))
    assert rec["width"] == 512 and rec["height"] == 256 and rec["megapixels"] == pytest.approx(0.131, abs=1e-3)
    assert 0 < rec["coverage_curve1"] <= 1 and rec["conflict_share"] == 0.0
    assert rec["sha256"] == batch.sha256_file(scan)
    # the same job with the known checksum and outputs in place: nothing to do
    job2 = batch.ScanJob(**{**job.__dict__, "known_sha256": rec["sha256"], "known_outputs": rec["outputs"]})
    assert batch.process_scan(job2, opts)["status"] == "skipped"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    rec = batch.process_scan(batch.ScanJob(str(bad), "bad", str(out), 10, 0), opts)
    assert rec["status"] == "failed" and "bad.png" in rec["error"]
    assert not list(out.glob("bad.*")) and not list(out.glob(".*.part"))


def test_cli_errors_are_one_line(tmp_path, capsys):
    from veer.cli import main

    assert main(["batch", "--out", str(tmp_path)]) == 1
    assert "give at least one INPUT" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err


def test_load_summary_without_a_batch_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no batch summary"):
        batch.load_summary(tmp_path)


# ------------------------------------------------------------------ reading a finished batch (results page)

def copy_batch(batch_run, dest: Path) -> Path:
    """A private copy of the shared batch output (its summary still names the original's files)."""
    import shutil

    return Path(shutil.copytree(batch_run["out"], dest))


def test_open_batch_gives_the_summary_headline_figures_and_failures(batch_run, tmp_path):
    import pandas as pd

    df = batch.open_batch(batch_run["out"])
    assert list(df["stem"]) == ["corrupt", "scan0000", "scan0001"]
    assert list(df["status"]) == ["failed", "done", "done"]
    done = df[df["status"] == "done"]
    figs = batch.batch_figures(df)
    assert {k: figs[k] for k in ("scans", "done", "skipped", "failed")} == {"scans": 3, "done": 2, "skipped": 0,
                                                                          "failed": 1}
    assert figs["megapixels"] == pytest.approx(2 * 256 * 512 / 1e6, abs=1e-3)
    assert figs["median_seconds"] == pytest.approx(float(done["seconds"].median())) and figs["median_seconds"] > 0
    assert figs["devices"] == ["CPU (threshold, test-only)"]
    assert figs["coverage_curve1"] == pytest.approx(float(done["coverage_curve1"].mean()))
    assert 0 < figs["coverage_curve1"] <= 1
    assert figs["coverage_curve2"] == 0.0  # the threshold segmenter never labels curve2
    failures = batch.batch_failures(df)
    assert list(failures.columns) == ["stem", "input", "error"] and list(failures["stem"]) == ["corrupt"]
    assert failures["input"][0] == str(batch_run["corrupt"].resolve()) and "corrupt.tif" in failures["error"][0]
    assert batch.browsable_scans(df) == ["scan0000", "scan0001"]
    # a run killed before it wrote its summary: the same figures from the manifest
    copy = copy_batch(batch_run, tmp_path / "killed")
    (copy / batch.SUMMARY_CSV).unlink()
    (copy / batch.SUMMARY_PARQUET).unlink()
    again = batch.open_batch(copy)  # in the order the scans finished
    assert dict(zip(again["stem"], again["status"])) == dict(zip(df["stem"], df["status"]))
    assert batch.batch_figures(again) == figs
    # the CSV alone (no pyarrow, or the parquet file gone) reads back the same table
    copy2 = copy_batch(batch_run, tmp_path / "csv_only")
    (copy2 / batch.SUMMARY_PARQUET).unlink()
    pd.testing.assert_frame_equal(batch.open_batch(copy2), df, check_dtype=False)


def test_open_scan_reads_its_mask_curves_and_files_inside_the_folder(batch_run, tmp_path):
    import base64
    import io

    import pandas as pd

    from veer import viz
    from veer.classes import CLASSES, colorize, read_mask

    out = batch_run["out"]
    df = batch.open_batch(out)
    outputs = batch.scan_outputs(out, df, "scan0000")
    assert outputs == {"mask": out / "scan0000.mask.png", "curves_csv": out / "scan0000.curves.csv",
                       "las": out / "scan0000.las"}  # joint mode: no conflict map
    view = batch.open_scan(out, df, "scan0000")
    assert view.stem == "scan0000" and view.row["status"] == "done" and view.row["width"] == 512
    np.testing.assert_array_equal(view.labels, read_mask(out / "scan0000.mask.png"))
    assert view.labels.shape == (256, 512) and set(np.unique(view.labels)) == {0, 1}
    assert view.conflict is None
    pd.testing.assert_frame_equal(view.curves, pd.read_csv(out / "scan0000.curves.csv"))
    assert {"row", "track", "curve1_x", "depth"} <= set(view.curves.columns) and len(view.curves) >= 256
    assert view.files == {k: p.read_bytes() for k, p in outputs.items()}
    assert view.files["las"].lstrip().startswith(b"~V")

    # the figure: the mask in the class colours, pixel for pixel, with the class legend
    fig = viz.mask_figure(view.labels, title="scan0000")
    images = [t for t in fig.data if t.type == "image"]
    assert len(images) == 1
    png = base64.b64decode(images[0].source.split(",", 1)[1])
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    np.testing.assert_array_equal(shown, colorize(view.labels))
    assert {t.name for t in fig.data if t.type == "scatter"} == {c.label for c in CLASSES}

    # a folder moved elsewhere still opens: its files are found by name inside it
    moved = copy_batch(batch_run, tmp_path / "moved")
    assert set(batch.scan_outputs(moved, df, "scan0001").values()) == {
        moved / "scan0001.mask.png", moved / "scan0001.curves.csv", moved / "scan0001.las"}


def test_a_separate_mode_scan_shows_its_conflict_map(batch_run, tmp_path):
    from veer import viz

    out = tmp_path / "sep"
    out.mkdir()
    scan = batch_run["scans"][0]
    job = batch.ScanJob(input=str(scan), stem="s", out_dir=str(out), size=scan.stat().st_size, mtime_ns=0)
    rec = batch.process_scan(job, batch.BatchOptions(mode="separate", segmenter="threshold"))
    assert rec["status"] == "done", rec["error"]
    batch.write_summary(batch.summary_frame([rec]), out)
    df = batch.open_batch(out)
    assert set(batch.scan_outputs(out, df, "s")) == {"mask", "conflict", "curves_csv"}  # no calibration: no LAS
    view = batch.open_scan(out, df, "s")
    assert view.conflict is not None and view.conflict.shape == view.labels.shape
    assert not view.conflict.any()  # the threshold segmenter's masks never disagree
    fig = viz.mask_figure(view.labels, view.conflict)
    assert len([t for t in fig.data if t.type == "image"]) == 2
    assert set(viz.CONFLICT_LABELS.values()) <= {t.name for t in fig.data if t.type == "scatter"}


def _bad_folder(kind: str, tmp_path: Path, batch_run) -> tuple[str, str]:
    """(folder as typed, what the error must say) for each way of giving a bad batch folder."""
    if kind == "empty text":
        return "  ", "give the output folder"
    if kind == "missing":
        return str(tmp_path / "nope"), "no such folder"
    if kind == "a file":
        (tmp_path / "f.csv").write_text("x")
        return str(tmp_path / "f.csv"), "not a folder"
    if kind == "no summary":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty"), "no batch summary"
    copy = copy_batch(batch_run, tmp_path / "b")
    (copy / batch.SUMMARY_PARQUET).unlink()
    csv = copy / batch.SUMMARY_CSV
    if kind == "binary csv":
        csv.write_bytes(bytes(range(256)) * 8)
        return str(copy), "damaged"
    if kind == "empty csv":
        csv.write_bytes(b"")
        return str(copy), "damaged"
    if kind == "foreign csv":
        csv.write_text("a,b\n1,2\n")
        return str(copy), "not a veer batch summary"
    if kind == "damaged parquet":
        csv.unlink()
        (copy / batch.SUMMARY_PARQUET).write_bytes(b"PAR1 cut short")
        return str(copy), "damaged"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["empty text", "missing", "a file", "no summary", "binary csv", "empty csv",
                                  "foreign csv", "damaged parquet"])
def test_a_bad_batch_folder_is_a_one_line_error(kind, tmp_path, batch_run):
    folder, says = _bad_folder(kind, tmp_path, batch_run)
    with pytest.raises(ConfigError) as info:
        batch.open_batch(folder)
    message = str(info.value)
    assert says in message and "\n" not in message and "Traceback" not in message
    if folder.strip():
        assert folder in message  # names the folder or the file at fault


def test_open_scan_reports_missing_and_damaged_outputs(batch_run, tmp_path):
    from veer.errors import MaskError, VeerError

    copy = copy_batch(batch_run, tmp_path / "b")
    df = batch.open_batch(copy)
    (copy / "scan0000.mask.png").unlink()  # the original still exists: only the copy is looked in
    with pytest.raises(ConfigError, match="scan0000.mask.png"):
        batch.open_scan(copy, df, "scan0000")
    (copy / "scan0001.curves.csv").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ConfigError, match="curves CSV is damaged"):
        batch.open_scan(copy, df, "scan0001")
    (copy / "scan0001.mask.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    with pytest.raises(MaskError, match="scan0001.mask.png"):
        batch.open_scan(copy, df, "scan0001")
    with pytest.raises(VeerError, match="no such scan"):
        batch.open_scan(copy, df, "nope")


# ------------------------------------------------------------------ whole runs on a LocalCluster

@pytest.mark.slow
def test_cluster_batch_outputs_failures_and_resume(tmp_path, make_scans, client):
    scans = make_scans(tmp_path / "in", 20)
    corrupt = tmp_path / "in" / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + bytes(200))
    # two scans with the same stem in different folders
    (tmp_path / "in" / "sub").mkdir()
    dup = tmp_path / "in" / "sub" / scans[0].name
    dup.write_bytes(scans[1].read_bytes())
    out = tmp_path / "out"

    df = batch.run_batch([tmp_path / "in"], out, segmenter="threshold", client=client, progress=False)
    assert len(df) == 22
    assert (df["status"] == "failed").sum() == 1
    failed = df[df["status"] == "failed"].iloc[0]
    assert failed["input"] == str(corrupt.resolve()) and "corrupt.tif" in failed["error"]
    good = df[df["status"] == "done"]
    assert len(good) == 21 and good["stem"].is_unique
    for _, row in good.iterrows():
        check_outputs(out, row["stem"], shape=(256, 512))
        assert row["width"] == 512 and row["height"] == 256 and row["seconds"] > 0
        assert row["coverage_curve1"] > 0 and row["las_note"]  # no calibration: LAS explained
        assert row["worker"] != ""
    assert good["worker"].nunique() == 2  # both workers took scans
    assert not list(out.glob(".*.part"))
    # the summary on disk is the one returned
    loaded = batch.load_summary(out)
    assert list(loaded["stem"]) == list(df["stem"]) and list(loaded["status"]) == list(df["status"])
    assert (out / batch.SUMMARY_CSV).exists()

    # simulate an interrupted run: 5 scans never finished (no manifest line; some outputs gone),
    # one scan changed since, one only touched (same content, new mtime)
    entries = manifest_lines(out)
    lost = sorted(e["input"] for e in entries if e["status"] == "done")[:5]
    keep = [e for e in entries if e["input"] not in lost]
    (out / batch.MANIFEST).write_text("".join(json.dumps(e) + "\n" for e in keep))
    for e in entries:
        if e["input"] in lost[:3]:
            Path(e["outputs"]["mask"]).unlink()
    changed, touched = scans[10], scans[11]
    img = np.asarray(Image.open(changed)).copy()
    img[100:110, 200:210] = 0
    Image.fromarray(img).save(changed)
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    n_lines = len(manifest_lines(out))

    df2 = batch.run_batch([tmp_path / "in"], out, segmenter="threshold", client=client, progress=False)
    status = dict(zip(df2["input"], df2["status"]))
    redone = {k for k, v in status.items() if v == "done"}
    assert redone == set(lost) | {str(changed.resolve())}
    assert status[str(corrupt.resolve())] == "failed"  # failures are tried again
    assert status[str(touched.resolve())] == "skipped"
    assert sum(v == "skipped" for v in status.values()) == 22 - 1 - 6
    new_lines = manifest_lines(out)[n_lines:]
    assert sorted(e["input"] for e in new_lines if e["status"] == "done") == sorted(
        redone | {str(touched.resolve())})  # touched: figures kept, size/mtime refreshed
    for k in redone:
        check_outputs(out, df2.set_index("input").loc[k, "stem"])
    from veer.classes import read_mask

    row = df2.set_index("input").loc[str(changed.resolve())]
    assert row["sha256"] == batch.sha256_file(changed) != df.set_index("input").loc[row.name, "sha256"]
    assert (read_mask(out / f"{row['stem']}.mask.png")[100:110, 200:210] == 1).all()  # new content segmented
    # stems are stable across runs
    assert dict(zip(df["input"], df["stem"])) == dict(zip(df2["input"], df2["stem"]))

    # a third run has nothing left but the corrupt file
    df3 = batch.run_batch([tmp_path / "in"], out, segmenter="threshold", client=client, progress=False)
    assert (df3["status"] == "skipped").sum() == 21 and (df3["status"] == "failed").sum() == 1


@pytest.mark.slow
def test_cluster_survives_a_worker_dying(tmp_path, make_scans, client):
    scans = make_scans(tmp_path / "in", 4)
    marker = tmp_path / "crashed"
    df = batch.run_batch(scans, tmp_path / "out", segmenter=CrashFactory(marker), client=client,
                         progress=False)
    assert marker.exists()  # a worker really died
    assert list(df["status"]) == ["done"] * 4
    for stem in df["stem"]:
        check_outputs(tmp_path / "out", stem)


@pytest.mark.slow
def test_cluster_without_weights_fails_fast_naming_the_worker(tmp_path, client, make_scans):
    scans = make_scans(tmp_path / "in", 2)
    empty = tmp_path / "no-models"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"worker .*(joint|model)"):
        batch.run_batch(scans, tmp_path / "out", models_dir=empty, client=client, progress=False)
    assert not (tmp_path / "out" / batch.MANIFEST).exists()
    assert not list((tmp_path / "out").glob("*.mask.png"))


@pytest.mark.slow
def test_killed_cli_run_loses_nothing_and_rerun_does_only_the_rest(tmp_path, make_scans, client):
    scans = make_scans(tmp_path / "in", 10)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "veer", "batch", str(tmp_path / "in"), "--out", str(out), "--workers", "2",
         "--threads-per-worker", "1", "--no-progress", "--segmenter", "test_batch:slow_segmenter"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240  # cluster start on a loaded 2-core machine can be slow
        while time.time() < deadline and proc.poll() is None:
            if sum(e["status"] == "done" for e in manifest_lines(out)) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, at once
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = {e["input"] for e in manifest_lines(out) if e["status"] == "done"}
    assert 3 <= len(finished) < 10
    for e in manifest_lines(out):  # everything the manifest calls finished is complete
        check_outputs(out, e["stem"])

    df = batch.run_batch([tmp_path / "in"], out, segmenter="test_batch:slow_segmenter", client=client,
                         progress=False)
    status = dict(zip(df["input"], df["status"]))
    assert {k for k, v in status.items() if v == "skipped"} == finished
    assert {k for k, v in status.items() if v == "done"} == {str(p.resolve()) for p in scans} - finished
    assert not list(out.glob(".*.part"))  # temporaries of the killed run are gone


@pytest.mark.slow
@pytest.mark.skipif(not (MODELS / "joint.pt").exists(), reason="shipped model assets/models/joint.pt is absent")
def test_real_models_on_a_few_scans(tmp_path, make_scans, client):
    scans = make_scans(tmp_path / "in", 3)
    df = batch.run_batch(scans, tmp_path / "out", mode="joint", client=client, progress=False,
                         threads_per_worker=1)
    assert list(df["status"]) == ["done"] * 3, list(df["error"])
    for _, row in df.iterrows():
        check_outputs(tmp_path / "out", row["stem"], shape=(256, 512))
        assert row["device"]
