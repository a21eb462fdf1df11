"""The benchmark: figures, table, JSON, and the child-process measurements."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pytest

from veer import bench
from veer.classes import write_mask
from veer.errors import VeerError


def canned_segment(**over):
    fig = {
        "mode": "joint", "height": 17864, "width": 1664, "megapixels": 29.73, "weights": "shipped",
        "device": "CPU (2 threads)", "threads": 2, "tiles": 160, "tile": [512, 464], "max_tile": [512, 512],
        "overlap": 0.125, "batch": 2, "band_rows": 1024, "compute_factor": 1.28,
        "model_load_s": 0.2, "read_s": 0.5, "segment_s": 15.0, "segment_cpu_s": 29.0, "write_s": 1.5, "end_to_end_s": 17.0,
        "mpx_per_s": 1.75, "segment_mpx_per_s": 1.98, "peak_rss_mb": 900.0, "rss_after_import_mb": 250.0,
        "rss_ready_mb": 300.0, "gmac_per_mpx": 8.1, "matmul_gflops": 33.0, "gflop_per_s": 41.0,
        "peak_fraction": 0.6, "speedup": 2.5, "generate_log_s": 4.0,
        "speedup_vs_full_run": 2.4,
        "naive": {"rounds": 3, "tiles_timed": 24, "tiles": 160, "tile_s": 0.23, "engine_tile_s": 0.09,
                  "speedup": 2.5, "finalize_s": 1.2, "segment_s_est": 37.5, "peak_rss_mb": 1500.0},
    }
    fig.update(over)
    return fig


def test_matmul_peak_is_measured():
    assert bench.matmul_gflops(n=128, reps=2) > 0.01


def test_table_shows_every_figure_and_marks_targets():
    text = bench.table({"segment": canned_segment(), "synth": {"tiles_per_s": 321.0, "tile_size": 256}})
    for needle in ("1664 x 17864", "17.00 s", "29.0 CPU-s", "900 MB", "2.50x", "8.10 GMAC/Mpx", "321 tiles/s",
                   "24 of 160 tiles", "% of the fp32 matmul peak"):
        assert needle in text
    assert "MISSED" not in text and text.count("[target met]") == 3
    slow = bench.table({"segment": canned_segment(end_to_end_s=40.0, speedup=1.3, peak_rss_mb=3000.0)})
    assert slow.count("[target MISSED]") == 3
    scaled = bench.table({"segment": canned_segment(views=2, scales=[1.0, 1.3], compute_factor=6.9,
                                                    overlap_factor=1.28)})
    assert "each tile at scales 1 + 1.3" in scaled and "x6.90 overlap, views and scales" in scaled
    fewer = bench.table({"segment": canned_segment(views=2, scales=[1.0, 1.3], scale_views=1, compute_factor=4.7,
                                                   overlap_factor=1.28)})
    assert "each tile at scales 1 + 1.3 (1.3 in 1 view)" in fewer


def test_run_prints_the_table_and_saves_json(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_segment(**kw):
        seen.update(kw)
        return canned_segment(height=kw["height"], width=kw["width"])

    monkeypatch.setattr(bench, "bench_segment", fake_segment)
    monkeypatch.setattr(bench, "bench_synth", lambda: {"tiles_per_s": 123.0, "tile_size": 256, "tiles": 200})
    monkeypatch.setattr(bench, "BENCH_JSON", tmp_path / "assets" / "bench.json")
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "figures.json"
    args = parser.parse_args(["--what", "all", "--height", "4000", "--json", str(out), "--save"])
    assert bench.run(args) == 0
    printed = capsys.readouterr().out
    assert "end to end" in printed and "123 tiles/s" in printed
    assert seen["height"] == 4000 and seen["width"] == 1664 and seen["mode"] == "joint"
    for path in (out, tmp_path / "assets" / "bench.json"):
        data = json.loads(path.read_text())
        assert data["segment"]["height"] == 4000 and data["synth"]["tiles_per_s"] == 123.0
        assert data["machine"]["cores"] >= 1 and data["targets"]["end_to_end_s"] == 25.0


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch

    from veer.model import build_model
    from veer.weights import save_model

    folder = tmp_path_factory.mktemp("bench") / "models"
    folder.mkdir()
    torch.manual_seed(0)
    save_model(build_model({"widths": [4, 8], "blocks": [0], "attn_layers": 0}, 3), "joint",
               {"task": "joint"}, models_dir=folder)
    return folder


@pytest.mark.slow
def test_bench_segment_measures_engine_and_naive_in_child_processes(tiny_models):
    rng = np.random.default_rng(0)
    gray = np.full((260, 150), 235, np.uint8)
    gray[rng.random(gray.shape) < 0.05] = 20
    fig = bench.bench_segment(log=gray, models_dir=str(tiny_models), tile=64, overlap=0.25, batch=4,
                              naive_tiles=16, device="cpu", say=lambda _: None, matmul_n=256)
    assert (fig["height"], fig["width"]) == (260, 150)
    nv = fig["naive"]
    assert fig["tiles"] == nv["tiles"] > 3 and nv["strip_tile"] == fig["tile"]  # same tiles both ways
    assert nv["rounds"] >= 2 and nv["tiles_timed"] % nv["rounds"] == 0 and nv["tiles_timed"] <= 16
    assert fig["segment_s"] > 0 and fig["end_to_end_s"] >= fig["segment_s"]
    assert fig["speedup"] == pytest.approx(nv["tile_s"] / nv["engine_tile_s"])
    assert fig["speedup_vs_full_run"] == pytest.approx(nv["segment_s_est"] / fig["segment_s"])
    assert fig["peak_rss_mb"] >= fig["rss_after_import_mb"] > 10
    assert fig["gmac_per_mpx"] > 0 and fig["matmul_gflops"] > 0 and fig["compute_factor"] > 1
    assert sum(fig["label_shares"]) == pytest.approx(1.0)
    assert fig["weights"] == "shipped"


@pytest.mark.slow
def test_bench_runs_the_scales_asked_both_ways(tiny_models):
    gray = np.full((140, 120), 235, np.uint8)
    gray[:, 50:53] = 20
    fig = bench.bench_segment(log=gray, models_dir=str(tiny_models), tile=64, overlap=0.25, batch=4,
                              naive_tiles=4, device="cpu", say=lambda _: None, matmul_n=128, scales=(1.0, 1.5))
    assert fig["scales"] == [1.0, 1.5] and fig["views"] == 2
    assert fig["compute_factor"] == pytest.approx(fig["overlap_factor"] * 2 * (1 + 1.5 ** 2))
    assert fig["naive"]["tiles_timed"] >= 1 and fig["speedup"] > 0
    # the enlarged tile in one view: both ways run the same, cheaper passes
    fewer = bench.bench_segment(log=gray, models_dir=str(tiny_models), tile=64, overlap=0.25, batch=4,
                                naive_tiles=4, device="cpu", say=lambda _: None, matmul_n=128,
                                scales=(1.0, 1.5), scale_views=1)
    assert fewer["scale_views"] == 1
    assert fewer["compute_factor"] == pytest.approx(fewer["overlap_factor"] * (2 + 1.5 ** 2))
    assert fewer["naive"]["tiles_timed"] >= 1 and fewer["speedup"] > 0


@pytest.mark.slow
def test_bench_segment_without_weights_is_one_clear_error(tmp_path):
    with pytest.raises(VeerError, match="joint"):
        bench.bench_segment(log=np.full((40, 40), 255, np.uint8), models_dir=str(tmp_path), device="cpu",
                            naive_tiles=1, say=lambda _: None)


# --------------------------------------------------------------------------- the load test (many sessions)


def tiny_upload():
    """A small scan (PNG bytes) with a truth mask: thin vertical strokes on paper."""
    from veer.io import png_bytes

    rng = np.random.default_rng(3)
    gray = np.full((200, 150), 235, np.uint8)
    gray[rng.random(gray.shape) < 0.03] = 40
    truth = np.zeros(gray.shape, np.uint8)
    gray[:, 60:63], truth[:, 60:63] = 20, 1
    gray[::6, 100:102], truth[::6, 100:102] = 20, 2
    truth[10:12, 60:63] = 255
    return png_bytes(gray), truth


def test_load_test_queues_sessions_and_every_result_equals_a_single_run(tiny_models, monkeypatch):
    from veer import infer, loadtest

    real_run = infer.Segmenter._run

    def held_run(self, *args, **kwargs):  # hold the slot long enough that the other sessions must queue
        time.sleep(0.4)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(infer.Segmenter, "_run", held_run)
    data, truth = tiny_upload()
    limit_before = infer.queue_status()["limit"]
    fig = loadtest.load_test(sessions=3, max_concurrent_runs=1, data=data, name="tiny.png", truth=truth,
                             models_dir=tiny_models, tile=64, overlap=0.25, batch=2, device="cpu",
                             say=lambda _: None)
    assert set(loadtest.FIGURE_KEYS) <= set(fig)
    assert fig["ok"] and fig["failed"] == 0 and fig["errors"] == []
    assert fig["identical"] == fig["scores_identical"] == fig["sessions"] == 3
    assert fig["max_concurrent"] == 1 and fig["segmenters"] == 1  # one shared segmenter
    assert fig["queued"] >= 1 and 1 <= fig["max_queue_position"] <= 2
    assert fig["tiles"] > 3 and (fig["height"], fig["width"]) == (200, 150)
    assert fig["wall_s"] >= 3 * 0.4 and fig["latency_max_s"] >= fig["latency_median_s"] > 0
    assert fig["wait_max_s"] >= 0.3  # the last one waited for at least one other run
    assert fig["peak_rss_mb"] >= fig["single_peak_rss_mb"] > 10 and fig["rss_growth_mb"] >= 0
    assert fig["sampled_rss_mb"]["load_peak"] > 10
    assert len(fig["per_session"]) == 3 and all(s["identical"] for s in fig["per_session"])
    assert infer.queue_status()["limit"] == limit_before  # the gate is restored
    text = loadtest.table(fig)
    for needle in ("3/3 (scores 3/3)", "at most 1 segmenting", "largest queue position", "peak memory", "ok"):
        assert needle in text
    json.dumps(fig)  # JSON-able as it is


def test_load_test_separate_pipeline_runs_truly_concurrently_and_identically():
    import torch

    from veer import infer, loadtest
    from veer.model import build_model

    torch.manual_seed(1)
    models = [build_model({"widths": [4, 8], "blocks": [0], "attn_layers": 0}, 1) for _ in range(3)]
    seg = infer.Segmenter.from_models("separate", models, "cpu", tile=64, overlap=0.25, batch_size=2)
    data, truth = tiny_upload()
    fig = loadtest.load_test(sessions=3, max_concurrent_runs=3, data=data, name="tiny.png", truth=truth,
                             mode="separate", get_segmenter=lambda: seg, say=lambda _: None)
    assert fig["ok"] and fig["identical"] == 3 and fig["scores_identical"] == 3
    assert fig["queued"] == 0 and fig["max_queue_position"] == 0 and fig["max_concurrent"] == 3


def test_load_verb_prints_writes_json_and_fails_when_results_differ(tiny_models, tmp_path, monkeypatch, capsys):
    from veer import loadtest

    monkeypatch.setattr(bench, "BENCH_JSON", tmp_path / "bench.json")
    (tmp_path / "bench.json").write_text(json.dumps({"segment": {"end_to_end_s": 20.0}}))
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "load.json"
    args = parser.parse_args(["--what", "load", "--sessions", "2", "--max-concurrent", "1", "--height", "256",
                              "--width", "256", "--models", str(tiny_models), "--tile", "64", "--device", "cpu",
                              "--json", str(out), "--save"])
    assert bench.run(args) == 0
    printed = capsys.readouterr().out
    assert "identical" in printed and "2/2" in printed and "256 x 256 px" in printed
    load = json.loads(out.read_text())["load"]
    assert load["sessions"] == 2 and load["ok"] and set(loadtest.FIGURE_KEYS) <= set(load)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["segment"]["end_to_end_s"] == 20.0 and saved["load"]["identical"] == 2  # merged, not replaced

    data, truth = tiny_upload()  # a scan file with its truth mask beside it, as the samples have
    (tmp_path / "tiny.png").write_bytes(data)
    write_mask(tmp_path / "tiny.mask.png", truth, allow_ignore=True)
    real = loadtest.load_test
    monkeypatch.setattr(loadtest, "load_test", lambda **kw: {**real(**kw), "identical": 1, "ok": False})
    args = parser.parse_args(["--what", "load", "--sessions", "2", "--sample", str(tmp_path / "tiny.png"),
                              "--models", str(tiny_models), "--tile", "64", "--device", "cpu"])
    assert bench.run(args) == 1
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "tiny.png: 150 x 200 px" in printed and "(scores 2/2)" in printed
