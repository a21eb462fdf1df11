"""OpenVINO on the CPU: same answers as PyTorch, any size, a disk cache, threads, the choice.

Small random VeerNets (the real architecture, attention included) keep these
quick; the shipped weights are compared on a bundled sample in a slow test.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from tests.conftest import assert_threads_match_one_caller
from veer import openvino_engine
from veer.errors import ConfigError
from veer.infer import Segmenter
from veer.model import build_model

pytest.importorskip("openvino")

SMALL = {"widths": [4, 8, 16], "blocks": [0, 1], "attn_layers": 1, "attn_heads": 2}


def small_net(out_channels: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(SMALL, out_channels).eval()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VEER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VEER_BACKEND", raising=False)
    yield


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 1, 50, 37), (2, 1, 17, 130)])
def test_logits_match_pytorch_at_any_size(shape, rng):
    model = small_net()
    nets = openvino_engine.OpenVinoNets([model], "fp32")
    x = rng.random(shape, dtype=np.float32)
    got = nets.run(x)[0]
    assert got.shape == (shape[0], 3, shape[2], shape[3])
    np.testing.assert_allclose(got, torch_logits(model, x), atol=2e-4, rtol=1e-4)


def test_each_image_of_a_batch_is_its_own(rng):
    """Images run on different infer requests; none may get another's answer."""
    model = small_net()
    nets = openvino_engine.OpenVinoNets([model], "fp32", streams=2)
    x = rng.random((5, 1, 32, 48), dtype=np.float32)
    batch = nets.run(x)[0]
    for i in range(5):
        np.testing.assert_allclose(batch[i], nets.run(x[i:i + 1])[0][0], atol=1e-6)


def test_the_converted_network_is_kept_on_disk_and_a_damaged_one_rebuilt(rng):
    model = small_net()
    x = rng.random((1, 1, 32, 32), dtype=np.float32)
    first = openvino_engine.OpenVinoNets([model], "fp32").run(x)[0]
    files = sorted((openvino_engine.cache_dir() / "openvino").glob("*"))
    assert [f.suffix for f in files] == [".bin", ".xml"]
    assert files[0].stem == openvino_engine.model_key(model)
    again = openvino_engine.OpenVinoNets([model], "fp32").run(x)[0]   # read back from the cache
    np.testing.assert_array_equal(again, first)
    files[1].write_text("<not a model")
    rebuilt = openvino_engine.OpenVinoNets([model], "fp32").run(x)[0]
    np.testing.assert_array_equal(rebuilt, first)
    assert files[1].read_text().startswith("<?xml")


def test_other_weights_get_their_own_cache_entry():
    a, b = small_net(seed=0), small_net(seed=1)
    assert openvino_engine.model_key(a) != openvino_engine.model_key(b)
    assert openvino_engine.model_key(a) == openvino_engine.model_key(small_net(seed=0))
    assert openvino_engine.model_key(small_net(1)) != openvino_engine.model_key(small_net(3))


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path, monkeypatch, rng):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VEER_CACHE_DIR", str(blocker))
    model = small_net()
    x = rng.random((1, 1, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(openvino_engine.OpenVinoNets([model]).run(x)[0], torch_logits(model, x),
                               atol=2e-4, rtol=1e-4)


def test_compiled_shapes_are_bounded(rng):
    nets = openvino_engine.OpenVinoNets([small_net()], "fp32")
    for k in range(openvino_engine.MAX_SHAPES + 2):
        nets.run(rng.random((1, 1, 16, 16 * (k + 1)), dtype=np.float32))
    shapes = nets.shapes()
    assert len(shapes) == openvino_engine.MAX_SHAPES
    assert shapes[-1] == (16, 16 * (openvino_engine.MAX_SHAPES + 2))   # the newest kept


@pytest.mark.parametrize("mode", ["joint", "separate"])
def test_the_segmenter_on_openvino_agrees_with_pytorch(mode, rng):
    models = [small_net(3)] if mode == "joint" else [small_net(1, seed=s) for s in range(3)]
    gray = rng.integers(0, 256, size=(150, 230), dtype=np.uint8)
    kw = dict(tile=64, overlap=0.25, batch_size=3, precision="fp32")
    ov = Segmenter.from_models(mode, models, "cpu", backend="openvino", **kw)
    pt = Segmenter.from_models(mode, models, "cpu", backend="torch", **kw)
    assert ov.backend == "openvino" and "OpenVINO" in ov.device_name
    assert pt.backend == "torch" and "OpenVINO" not in pt.device_name
    a = ov.segment(gray, return_probs=True)
    b = pt.segment(gray, return_probs=True)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
    close = np.abs(np.sort(b.probs, axis=0)[-1] - np.sort(b.probs, axis=0)[-2]) < 1e-3
    assert np.array_equal(a.labels[~close], b.labels[~close])
    if mode == "separate":
        assert a.conflict is not None and a.conflict.shape == gray.shape


def test_threads_on_openvino_get_the_same_results_as_one_caller(rng):
    seg = Segmenter.from_models("joint", small_net(), "cpu", backend="openvino", tile=64, overlap=0.25,
                                batch_size=2, precision="fp32")
    assert_threads_match_one_caller(seg, rng, 3, timeout=120)


def test_backend_choice(monkeypatch):
    net = small_net()
    other = torch.nn.Conv2d(1, 3, 1)
    cpu = torch.device("cpu")
    assert openvino_engine.resolve_backend(cpu, "auto", [net]) == "openvino"
    assert openvino_engine.resolve_backend(cpu, "auto", [other]) == "torch"   # not a VeerNet
    assert openvino_engine.resolve_backend(cpu, "torch", [net]) == "torch"
    monkeypatch.setenv("VEER_BACKEND", "torch")
    assert openvino_engine.resolve_backend(cpu, "auto", [net]) == "torch"
    assert openvino_engine.resolve_backend(cpu, "openvino", [net]) == "openvino"   # explicit wins
    monkeypatch.setattr(openvino_engine, "available", lambda: False)
    monkeypatch.setenv("VEER_BACKEND", "auto")
    assert openvino_engine.resolve_backend(cpu, "auto", [net]) == "torch"
    with pytest.raises(ConfigError, match="not installed"):
        openvino_engine.resolve_backend(cpu, "openvino", [net])
    with pytest.raises(ConfigError, match="unknown backend"):
        openvino_engine.resolve_backend(cpu, "tensorrt", [net])
    with pytest.raises(ConfigError, match="CPU only"):
        openvino_engine.resolve_backend(torch.device("cuda"), "openvino", [net])
    with pytest.raises(ConfigError, match="VeerNet"):
        openvino_engine.resolve_backend(cpu, "openvino", [other])


def test_segment_cli_takes_a_backend(tmp_path, capsys):
    from PIL import Image

    from veer.cli import main
    from veer.weights import PIPELINES, save_model

    folder = tmp_path / "models"
    folder.mkdir()
    for name in PIPELINES["joint"]:
        save_model(small_net(), name, {"task": "joint"}, models_dir=folder)
    img = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (70, 90), dtype=np.uint8)).save(img)
    masks = {}
    for backend in ("openvino", "torch"):
        out = tmp_path / backend
        assert main(["segment", str(img), "--out", str(out), "--models", str(folder),
                     "--backend", backend, "--precision", "fp32"]) == 0
        masks[backend] = np.asarray(Image.open(out / "scan.mask.png"))
    printed = capsys.readouterr().out
    assert "OpenVINO" in printed
    assert (masks["openvino"] == masks["torch"]).mean() > 0.999


@pytest.mark.slow
def test_shipped_joint_model_on_openvino_labels_a_sample_as_pytorch_does():
    from tests.conftest import SAMPLES
    from veer.io import read_scan

    gray = read_scan(SAMPLES / "sample_03_color.png").gray[:600]
    kw = dict(precision="fp32")
    a = Segmenter("joint", "cpu", backend="openvino", **kw).segment(gray).labels
    b = Segmenter("joint", "cpu", backend="torch", **kw).segment(gray).labels
    assert (a == b).mean() > 0.9999
    assert (a != 0).sum() > 1000   # the sample's curves are there


def test_auto_falls_back_to_pytorch_when_compiling_fails(monkeypatch, rng):
    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(openvino_engine, "OpenVinoNets", broken)
    seg = Segmenter.from_models("joint", small_net(), "cpu", tile=64, precision="fp32")
    assert seg.backend == "torch" and "OpenVINO" not in seg.device_name
    assert seg.segment(rng.integers(0, 256, (40, 50), dtype=np.uint8)).labels.shape == (40, 50)
    with pytest.raises(ConfigError, match="could not be compiled.*no CPU plugin"):
        Segmenter.from_models("joint", small_net(), "cpu", backend="openvino")


def test_the_dashboard_names_the_engine(monkeypatch):
    from veer.device import describe_compute

    assert describe_compute("cpu").endswith(f", OpenVINO {openvino_engine.version()}")
    assert "OpenVINO" not in describe_compute("cpu", backend="torch")
    monkeypatch.setenv("VEER_BACKEND", "torch")
    assert "OpenVINO" not in describe_compute("cpu")
