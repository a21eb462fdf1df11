"""The segmenter: tiling, blending, bands, sizes, progress, cancellation, threads, CLI.

Tiny random-weight stand-in networks keep these fast; two of them have a known
receptive field, so what tiling may and may not change is exact:

* ``PointNet`` (1x1 convolutions): each output pixel depends on its own input
  pixel only, so any tiling must give the whole-image result.
* ``LocalNet`` (two 3x3 convolutions): a pixel depends on a 5x5 window, so
  tiling may change only pixels within 2 px of an inner tile border.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.conftest import assert_threads_match_one_caller
from veer import infer
from veer.infer import Cancelled, Segmenter, gaussian_weights, plan_tiles, queue_status
from veer.errors import ConfigError, VeerError


class PointNet(nn.Module):
    def __init__(self, out_channels: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Conv2d(1, 8, 1)
        self.b = nn.Conv2d(8, out_channels, 1)
        with torch.no_grad():
            self.a.weight.mul_(6.0)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x - 0.5))) * 3.0


class LocalNet(nn.Module):
    radius = 2

    def __init__(self, out_channels: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Conv2d(1, 6, 3, padding=1)
        self.b = nn.Conv2d(6, out_channels, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x * 4.0 - 2.0))) * 2.0


class EdgeNet(PointNet):
    """PointNet that answers curve2 with certainty on the outer 3 px ring of its input:
    a caricature of a network that is unreliable at its tile borders."""

    def forward(self, x):
        out = super().forward(x)
        ring = torch.ones_like(x[:, :1])
        ring[..., 3:-3, 3:-3] = 0.0
        return out + 40.0 * ring * torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)


def whole_image_probs(models, gray: np.ndarray, mode: str = "joint", flip: bool = True) -> np.ndarray:
    """The reference: one pass of the network(s) over the whole image (and one over its mirror,
    mapped back and averaged, as the segmenter does by default)."""
    x = torch.from_numpy(gray).float().div(255.0)[None, None]

    def view(t):
        with torch.no_grad():
            outs = [m.eval()(t) for m in models]
        if mode == "joint":
            return torch.softmax(outs[0], 1)
        return torch.sigmoid(torch.cat(outs, 1))

    p = view(x)
    if flip:
        p = (p + torch.flip(view(torch.flip(x, dims=[3])), dims=[3])) / 2
    return p[0].numpy()


@pytest.fixture
def gray(rng):
    return rng.integers(0, 256, size=(150, 230), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _free_gate():
    infer.set_max_concurrent(1)
    yield
    infer.set_max_concurrent(1)
    assert queue_status()["running"] == 0


def seg_for(model, **kw) -> Segmenter:
    kw.setdefault("tile", 64)
    kw.setdefault("overlap", 0.25)
    kw.setdefault("batch_size", 3)
    kw.setdefault("precision", "fp32")  # exact comparisons; bf16 is tested on its own
    return Segmenter.from_models("joint", model, "cpu", **kw)


# --------------------------------------------------------------------------- tiling plan


@pytest.mark.parametrize("length", [1, 2, 15, 63, 64, 65, 100, 129, 230, 1000, 1664])
@pytest.mark.parametrize("tile,overlap", [(64, 0.25), (64, 0.0), (48, 0.5), (512, 0.125)])
def test_tiles_cover_every_pixel_with_the_overlap_asked(length, tile, overlap):
    plan = plan_tiles(length, 7, tile, overlap, align=16)
    size, starts = plan.tile_h, plan.ys
    assert size <= tile and starts[0] == 0 and starts[-1] + size == length
    if length <= tile:
        assert starts == (0,) and size == length
    else:
        assert size % 16 == 0
        gaps = np.diff(starts)
        assert (gaps > 0).all()
        assert (size - gaps >= np.ceil(overlap * tile)).all()  # neighbours overlap enough


def test_tile_shrinks_to_fit_a_log_width():
    plan = plan_tiles(17864, 1664, 512, 0.125, align=16)
    assert len(plan.xs) == 4 and plan.tile_w < 512  # four columns, narrower than 512
    assert plan.compute_factor < 1.35


def test_gaussian_weight_map():
    w = gaussian_weights(65, 33)
    assert w.dtype == np.float32 and w.shape == (65, 33)
    assert w[32, 16] == pytest.approx(1.0) and w.min() > 0
    np.testing.assert_allclose(w, w[::-1, ::-1], rtol=1e-6)
    # sigma = tile / 8: one sigma from the centre the weight is exp(-1/2)
    assert w[32 + 8, 16] == pytest.approx(np.exp(-0.5 * (8 / (65 / 8)) ** 2), rel=1e-5)


# --------------------------------------------------------------------------- correctness


def test_tiled_equals_whole_image_for_a_pointwise_model(gray):
    model = PointNet()
    ref = whole_image_probs([model], gray)
    res = seg_for(model).segment(gray, return_probs=True)
    assert res.tiles > 4
    assert res.labels.dtype == np.uint8 and res.labels.shape == gray.shape
    assert np.abs(res.probs - ref).max() < 1e-5
    assert np.array_equal(res.labels, ref.argmax(0))


def test_the_mirror_view_is_averaged_in_and_can_be_switched_off(rng):
    # one tile covers the image, so each way is exactly one pass of the network per view
    model = LocalNet()
    img = rng.integers(0, 256, size=(40, 56), dtype=np.uint8)
    both = seg_for(model, tile=64).segment(img, return_probs=True)
    one = seg_for(model, tile=64, flip=False).segment(img, return_probs=True)
    assert np.abs(both.probs - whole_image_probs([model], img)).max() < 1e-5
    assert np.abs(one.probs - whole_image_probs([model], img, flip=False)).max() < 1e-5
    assert np.abs(both.probs - one.probs).max() > 1e-3, "the mirror view changes the probabilities"
    # averaged over both views, the answer on a mirrored scan is the mirrored answer
    mirrored = seg_for(model, tile=64).segment(img[:, ::-1].copy(), return_probs=True)
    assert np.abs(mirrored.probs[:, :, ::-1] - both.probs).max() < 1e-5
    assert seg_for(model).views == 2 and seg_for(model, flip=False).views == 1


def test_four_views_add_the_scan_upside_down(rng):
    model = LocalNet()
    img = rng.integers(0, 256, size=(40, 56), dtype=np.uint8)
    x = torch.from_numpy(img).float().div(255.0)[None, None]

    def view(t):
        with torch.no_grad():
            return torch.softmax(model.eval()(t), 1)

    ref = sum(torch.flip(view(torch.flip(x, dims=f)), dims=f) if f else view(x)
              for f in [(), (3,), (2,), (2, 3)]) / 4
    four = seg_for(model, tile=64, views=4)
    assert four.views == 4
    got = four.segment(img, return_probs=True)
    assert np.abs(got.probs - ref[0].numpy()).max() < 1e-5
    # averaged over all four, the answer is the same for the scan turned any of those ways
    flipped = four.segment(img[::-1, ::-1].copy(), return_probs=True)
    assert np.abs(flipped.probs[:, ::-1, ::-1] - got.probs).max() < 1e-5
    with pytest.raises(ConfigError, match="views must be one of 1, 2, 4"):
        seg_for(model, views=3)


def test_scales_are_parsed_checked_and_sorted():
    assert infer.scales_for(None) == infer.DEFAULT_SCALES
    assert infer.scales_for("1.3, 1") == (1.0, 1.3)
    assert infer.scales_for([1, 1.0, 1.25]) == (1.0, 1.25)
    for bad in ("0.2", "1,3", "", "a,b", [1, float("nan")]):
        with pytest.raises(ConfigError, match="scale"):
            infer.scales_for(bad)


def test_an_enlarged_pass_is_brought_back_to_the_scans_own_grid(rng):
    # A pointwise network answers the same wherever the ink is, so its answer at 1.4x,
    # brought back, must put a vertical stroke where the plain pass puts it (no shift).
    model = PointNet()
    img = np.full((48, 60), 235, np.uint8)
    img[:, 10:13] = 20   # off the middle: a grid mapped back wrongly shifts it most there
    plain = seg_for(model, tile=64, flip=False).segment(img, return_probs=True).probs
    big = seg_for(model, tile=64, flip=False, scales=(1.4,))
    assert big.scales == (1.4,) and big.passes == pytest.approx(1.96)
    enlarged = big.segment(img, return_probs=True).probs
    assert enlarged.shape == plain.shape

    def centre(probs):   # centroid of the curve1 probability near the stroke, above the paper's level
        row = probs[1].mean(0)
        profile = np.clip(row[4:19] - np.median(row[30:]), 0, None)
        return 4 + float(profile @ np.arange(profile.size) / profile.sum())

    centre = [centre(plain), centre(enlarged)]
    assert abs(centre[0] - 11.0) < 0.05
    assert abs(centre[1] - centre[0]) < 0.1, centre
    # far from the stroke, paper is paper at either scale
    assert np.abs(enlarged[:, :, 25:] - plain[:, :, 25:]).max() < 1e-4


def test_several_scales_are_averaged(rng):
    model = LocalNet()
    img = rng.integers(0, 256, size=(40, 56), dtype=np.uint8)
    one = seg_for(model, tile=64).segment(img, return_probs=True).probs
    big = seg_for(model, tile=64, scales=(1.3,)).segment(img, return_probs=True).probs
    both_seg = seg_for(model, tile=64, scales="1,1.3")
    assert both_seg.scales == (1.0, 1.3) and both_seg.passes == pytest.approx(2 * (1 + 1.69))
    both = both_seg.segment(img, return_probs=True)
    assert np.abs(both.probs - (one + big) / 2).max() < 1e-5
    assert np.abs(big - one).max() > 1e-2, "the enlarged pass sees the scan differently"
    assert np.array_equal(both.labels, both.probs.argmax(0))
    # the default runs the tile as it is only
    assert np.array_equal(seg_for(model, tile=64, scales=(1.0,)).segment(img).labels,
                          seg_for(model, tile=64).segment(img).labels)


def test_enlarged_scales_may_run_fewer_views(rng):
    # scale_views=1: the tile as it is in its two views (itself and mirrored), the 1.3x tile once
    model = LocalNet()
    img = rng.integers(0, 256, size=(40, 56), dtype=np.uint8)
    one = seg_for(model, tile=64).segment(img, return_probs=True).probs             # 2 views at 1
    big1 = seg_for(model, tile=64, flip=False, scales=(1.3,)).segment(img, return_probs=True).probs
    big2 = seg_for(model, tile=64, scales=(1.3,)).segment(img, return_probs=True).probs
    assert np.abs(big2 - big1).max() > 1e-3, "the mirror is a second opinion at 1.3 too"
    mixed = seg_for(model, tile=64, scales="1,1.3", scale_views=1)
    assert mixed.views == 2 and mixed.scale_views == 1
    assert (mixed.views_at(1.0), mixed.views_at(1.3)) == (2, 1)
    assert mixed.passes == pytest.approx(2 + 1.69)
    got = mixed.segment(img, return_probs=True)
    assert np.abs(got.probs - (one + big1) / 2).max() < 1e-5
    # by default every scale runs the same views
    assert seg_for(model, tile=64, scales="1,1.3").scale_views == 2
    # and without a scale other than 1 there is no other view count to keep
    assert seg_for(model, tile=64, scale_views=1).scale_views == 2
    with pytest.raises(ConfigError, match="views must be one of 1, 2, 4"):
        seg_for(model, scales="1,1.3", scale_views=3)


def test_scales_text_names_fewer_views_at_the_enlarged_scales():
    assert infer.scales_text((1.0, 1.3)) == "1 + 1.3"
    assert infer.scales_text((1.0, 1.3), 2, 2) == "1 + 1.3"
    assert infer.scales_text((1.0, 1.3), 2, 1) == "1 + 1.3 (1.3 in 1 view)"
    assert infer.scales_text((1.0, 1.2, 1.4), 1, 4) == "1 + 1.2 + 1.4 (1.2, 1.4 in 4 views)"


def test_tiled_differs_from_whole_image_only_near_inner_tile_borders(gray):
    model = LocalNet()
    seg = seg_for(model)
    plan = seg.plan(*gray.shape)
    ref = whole_image_probs([model], gray)
    res = seg.segment(gray, return_probs=True)
    r = LocalNet.radius
    near = np.zeros(gray.shape, bool)
    for y in plan.ys:
        for edge in (y, y + plan.tile_h):
            if 0 < edge < gray.shape[0]:
                near[max(edge - r, 0):edge + r] = True
    for x in plan.xs:
        for edge in (x, x + plan.tile_w):
            if 0 < edge < gray.shape[1]:
                near[:, max(edge - r, 0):edge + r] = True
    diff = np.abs(res.probs - ref).max(0)
    assert diff[~near].max() < 1e-5
    assert diff.max() < 0.05  # the Gaussian keeps border errors small
    assert (res.labels == ref.argmax(0)).mean() > 0.995


def test_gaussian_blending_hides_unreliable_tile_borders(gray):
    # The ring at the image's own border is in the reference too; at inner tile
    # borders only the Gaussian weighting keeps it out of the result.
    model = EdgeNet()
    ref = whole_image_probs([model], gray)
    res = seg_for(model).segment(gray, return_probs=True)
    assert np.abs(res.probs - ref).max() < 0.02
    assert np.array_equal(res.labels, ref.argmax(0))


def test_image_smaller_than_a_tile_is_one_exact_pass(rng):
    model = LocalNet()
    img = rng.integers(0, 256, size=(40, 57), dtype=np.uint8)
    res = seg_for(model).segment(img, return_probs=True)
    assert res.tiles == 1
    assert np.abs(res.probs - whole_image_probs([model], img)).max() < 1e-5


@pytest.mark.parametrize("band_rows", [1, 17, 64, 10_000])
def test_band_processing_gives_the_same_output_as_one_band(rng, band_rows):
    model = LocalNet()
    img = rng.integers(0, 256, size=(333, 90), dtype=np.uint8)
    one = seg_for(model, band_rows=10**6).segment(img, return_probs=True)
    banded = seg_for(model, band_rows=band_rows).segment(img, return_probs=True)
    assert np.array_equal(banded.labels, one.labels)
    assert np.array_equal(banded.probs, one.probs)


@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1), (5, 7), (65, 3), (64, 64), (129, 65)])
def test_any_size_works(shape, rng):
    model = PointNet()
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    res = seg_for(model).segment(img, return_probs=True)
    assert res.labels.shape == shape and res.labels.dtype == np.uint8
    assert set(np.unique(res.labels)) <= {0, 1, 2}
    assert res.probs.shape == (3, *shape)
    np.testing.assert_allclose(res.probs.sum(0), 1.0, atol=1e-5)
    assert np.abs(res.probs - whole_image_probs([model], img)).max() < 1e-5


def test_probabilities_only_on_request_and_in_smaller_dtypes(gray):
    seg = seg_for(PointNet())
    plain = seg.segment(gray)
    assert plain.probs is None and plain.conflict is None and plain.mode == "joint"
    f32 = seg.segment(gray, return_probs=True).probs
    f16 = seg.segment(gray, return_probs="float16").probs
    u8 = seg.segment(gray, return_probs="uint8").probs
    assert f16.dtype == np.float16 and u8.dtype == np.uint8
    assert np.abs(f16.astype(np.float32) - f32).max() < 1e-3
    assert np.abs(u8 / 255.0 - f32).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(seg.segment(gray, return_probs="uint8").labels, plain.labels)
    with pytest.raises(VeerError):
        seg.segment(gray, return_probs="int64")


def test_rejects_what_is_not_a_gray_image():
    seg = seg_for(PointNet())
    with pytest.raises(VeerError):
        seg.segment(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(VeerError):
        seg.segment(np.zeros((0, 5), np.uint8))
    rgb = np.full((10, 12, 3), 200, np.uint8)
    assert seg.segment(rgb).labels.shape == (10, 12)


def test_separate_pipeline_stitches_three_binary_models(gray):
    from veer.stitch import stitch

    models = [LocalNet(1, seed=s) for s in (1, 2, 3)]
    seg = Segmenter.from_models("separate", models, "cpu", tile=64, overlap=0.25, precision="fp32")
    res = seg.segment(gray, return_probs=True)
    assert res.mode == "separate" and res.conflict.shape == gray.shape
    assert res.conflict.dtype == np.uint8 and set(np.unique(res.conflict)) <= {0, 1, 2}
    assert len(np.unique(res.conflict)) >= 2  # random models disagree somewhere
    labels, conflict = stitch(res.probs)
    assert np.array_equal(res.labels, labels) and np.array_equal(res.conflict, conflict)
    ref = whole_image_probs(models, gray, "separate")
    assert (np.abs(res.probs - ref).max(0) < 1e-5).mean() > 0.8  # exact away from tile borders
    with pytest.raises(VeerError):
        Segmenter.from_models("separate", models[:2], "cpu")


@pytest.mark.parametrize("mode", ["joint", "separate"])
def test_curve1_pixels_that_may_be_curve2_are_marked_for_the_digitiser(gray, mode):
    models = [LocalNet(3, seed=4)] if mode == "joint" else [LocalNet(1, seed=s) for s in (1, 2, 3)]
    seg = Segmenter.from_models(mode, models, "cpu", tile=64, overlap=0.25, precision="fp32")
    res = seg.segment(gray, return_probs=True)
    assert res.shared.shape == gray.shape and res.shared.dtype == bool
    want = (res.labels == 1) & (res.probs[2] >= infer.SHARED_AT)
    assert (res.shared == want).mean() > 0.999     # the same rule, but for float rounding at the limit
    curve1 = res.labels == 1
    assert 0 < res.shared.sum() < curve1.sum(), "some curve1 pixels, not all, are in doubt"
    assert not res.shared[~curve1].any()


# --------------------------------------------------------------------------- progress, cancel, threads


def test_progress_counts_tiles(gray):
    seg = seg_for(PointNet(), batch_size=2)
    calls = []
    res = seg.segment(gray, progress=lambda d, t: calls.append((d, t)))
    total = seg.plan(*gray.shape).n_tiles
    assert res.tiles == total
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(calls) == 1 + -(-total // 2)


def test_cancel_stops_cleanly_and_frees_the_slot(gray):
    seg = seg_for(PointNet(), batch_size=1)
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 2:
            cancel.set()

    with pytest.raises(Cancelled):
        seg.segment(gray, progress=progress, cancel=cancel)
    assert isinstance(Cancelled("x"), VeerError)
    assert max(seen) == 2  # stopped at the next batch
    assert queue_status()["running"] == 0
    assert seg.segment(gray).labels.shape == gray.shape  # usable afterwards


def test_queued_call_is_reported_and_can_be_cancelled(gray):
    seg = seg_for(PointNet(), batch_size=1)
    infer.set_max_concurrent(1)
    inside, release = threading.Event(), threading.Event()

    def hold(done, total):
        inside.set()
        release.wait(10)

    first = threading.Thread(target=seg.segment, args=(gray,), kwargs={"progress": hold})
    first.start()
    assert inside.wait(10)
    positions, errors = [], []
    cancel = threading.Event()

    def second():
        try:
            seg.segment(gray, cancel=cancel, on_queued=positions.append)
        except Cancelled as exc:
            errors.append(exc)

    t2 = threading.Thread(target=second)
    t2.start()
    for _ in range(200):
        if positions:
            break
        threading.Event().wait(0.01)
    assert positions == [1] and queue_status()["queued"] == 1
    cancel.set()
    t2.join(10)
    assert errors and queue_status()["queued"] == 0
    release.set()
    first.join(10)
    assert not first.is_alive() and not t2.is_alive()


def test_threads_get_the_same_results_as_one_caller(rng):
    assert_threads_match_one_caller(seg_for(LocalNet(), batch_size=2), rng, 4)


# --------------------------------------------------------------------------- saved models, cache, CLI


def tiny_models_dir(tmp_path: Path) -> Path:
    """Save tiny random VeerNets under the shipped names (joint and the three binaries)."""
    from veer.model import build_model
    from veer.weights import PIPELINES, save_model

    folder = tmp_path / "models"
    folder.mkdir()
    config = {"widths": [4, 8], "blocks": [0], "attn_layers": 0}
    torch.manual_seed(0)
    for mode, names in PIPELINES.items():
        for name in names:
            model = build_model(config, 3 if mode == "joint" else 1)
            save_model(model, name, {"task": mode}, models_dir=folder)
    return folder


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory):
    return tiny_models_dir(tmp_path_factory.mktemp("infer"))


def test_get_segmenter_loads_once_and_is_shared_across_threads(models_folder):
    infer.clear_cache()
    got = []
    threads = [threading.Thread(target=lambda: got.append(infer.get_segmenter("separate", "cpu", models_folder)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 4 and all(s is got[0] for s in got)
    assert infer.get_segmenter("separate", "cpu", models_folder) is got[0]
    assert infer.get_segmenter("joint", "cpu", models_folder) is not got[0]
    assert [c["name"] for c in got[0].cards] == ["binary_background", "binary_curve1", "binary_curve2"]
    res = got[0].segment(np.full((20, 30), 255, np.uint8))
    assert res.conflict is not None and res.device.startswith("CPU")
    infer.clear_cache()


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(VeerError, match="joint"):
        Segmenter("joint", "cpu", tmp_path)


def _write_png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def test_segment_cli_writes_masks_and_reports_a_bad_file(tmp_path, models_folder, capsys, rng):
    from veer.cli import main

    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    one = _write_png(src / "a" / "log.png", rng.integers(0, 256, (70, 50), dtype=np.uint8))
    two = _write_png(src / "b" / "log.png", rng.integers(0, 256, (40, 90), dtype=np.uint8))
    bad = src / "log.png"  # same stem, listed first: a failed file must not take the name
    bad.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    code = main(["segment", str(bad), str(one), str(two), "--out", str(out), "--models", str(models_folder),
                 "--mode", "separate", "--overlay", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(bad) in errors[0] and "Traceback" not in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["log-2.conflict.png", "log-2.mask.png", "log-2.overlay.png",
                     "log.conflict.png", "log.mask.png", "log.overlay.png"]
    for stem, shape in (("log", (70, 50)), ("log-2", (40, 90))):
        mask = np.array(Image.open(out / f"{stem}.mask.png"))
        conflict = np.array(Image.open(out / f"{stem}.conflict.png"))
        ov = Image.open(out / f"{stem}.overlay.png")
        assert mask.shape == shape and set(np.unique(mask)) <= {0, 1, 2}
        assert conflict.shape == shape and set(np.unique(conflict)) <= {0, 1, 2}
        assert ov.mode == "RGB" and ov.size == (shape[1], shape[0])
    assert not list(out.glob("*.part"))


def test_segment_cli_runs_the_scales_asked_and_says_so(tmp_path, models_folder, capsys, rng):
    from veer.cli import main

    img = _write_png(tmp_path / "log.png", rng.integers(0, 256, (70, 50), dtype=np.uint8))
    assert main(["segment", str(img), "--out", str(tmp_path / "plain"), "--models", str(models_folder),
                 "--device", "cpu", "--backend", "torch"]) == 0
    assert main(["segment", str(img), "--out", str(tmp_path / "big"), "--models", str(models_folder),
                 "--device", "cpu", "--backend", "torch", "--scales", "1,1.5"]) == 0
    assert main(["segment", str(img), "--out", str(tmp_path / "mixed"), "--models", str(models_folder),
                 "--device", "cpu", "--backend", "torch", "--scales", "1,1.5", "--scale-views", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "scales" not in out[0] and "at scales 1 + 1.5," in out[1]
    assert "at scales 1 + 1.5 (1.5 in 1 view)" in out[2]
    plain, big = (np.array(Image.open(tmp_path / d / "log.mask.png")) for d in ("plain", "big"))
    assert plain.shape == big.shape == (70, 50) and set(np.unique(big)) <= {0, 1, 2}
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(img), "--out", str(tmp_path / "x"), "--scales", "1,9"])
    assert stop.value.code == 2 and "each scale must lie in" in capsys.readouterr().err


def test_segment_cli_never_overwrites_an_input(tmp_path, models_folder, rng):
    from veer.cli import main

    folder = tmp_path / "work"
    folder.mkdir()
    scan = _write_png(folder / "x.png", rng.integers(0, 256, (30, 40), dtype=np.uint8))
    # an input that sits exactly where the first scan's mask would go
    clash = _write_png(folder / "x.mask.png", np.full((30, 40), 255, np.uint8))
    before = clash.read_bytes()
    assert main(["segment", str(scan), str(clash), "--out", str(folder), "--models", str(models_folder),
                 "--device", "cpu"]) == 0
    assert clash.read_bytes() == before
    assert (folder / "x-2.mask.png").exists() and (folder / "x.mask.mask.png").exists()


def test_segment_cli_page_out_of_range_is_one_line(tmp_path, models_folder, capsys, rng):
    from veer.cli import main

    scan = _write_png(tmp_path / "s.png", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    code = main(["segment", str(scan), "--page", "3", "--out", str(tmp_path / "o"),
                 "--models", str(models_folder), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "s.png" in err and "page 3" in err and "Traceback" not in err


def test_cpu_worker_threads_give_the_same_result_as_one(rng):
    img = rng.integers(0, 256, size=(140, 130), dtype=np.uint8)
    one = seg_for(LocalNet(), batch_size=4, workers=1).segment(img, return_probs=True)
    two = seg_for(LocalNet(), batch_size=4, workers=2).segment(img, return_probs=True)
    assert np.abs(one.probs - two.probs).max() < 1e-6
    assert np.array_equal(one.labels, two.labels)


# --------------------------------------------------------------------------- precision


def test_precision_choice_and_its_effect(rng, monkeypatch):
    from veer import device as vdev
    from veer.errors import ConfigError

    cpu = torch.device("cpu")
    monkeypatch.delenv("VEER_PRECISION", raising=False)
    monkeypatch.setattr(vdev, "cpu_has_bf16", lambda: True)
    assert vdev.resolve_precision(cpu, "auto") == "bf16"       # native bf16: the fast path
    monkeypatch.setattr(vdev, "cpu_has_bf16", lambda: False)
    assert vdev.resolve_precision(cpu, "auto") == "fp32"       # emulated bf16 would be slower
    monkeypatch.setenv("VEER_PRECISION", "bf16")
    assert vdev.resolve_precision(cpu, "auto") == "bf16"       # the environment decides "auto"
    assert vdev.resolve_precision(cpu, "fp32") == "fp32"       # an explicit choice wins
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        vdev.resolve_precision(cpu, "fp16")
    with pytest.raises(ConfigError, match="unknown precision"):
        vdev.resolve_precision(cpu, "fp8")

    img = rng.integers(0, 256, size=(140, 130), dtype=np.uint8)
    full = seg_for(LocalNet(), precision="fp32").segment(img, return_probs=True)
    half = seg_for(LocalNet(), precision="bf16").segment(img, return_probs=True)
    assert full.device.endswith("fp32") and half.device.endswith("bf16")
    diff = np.abs(full.probs - half.probs)
    assert 0 < diff.max() < 0.05          # bf16 really ran, and stays close
    assert (full.labels == half.labels).mean() > 0.99
    again = seg_for(LocalNet(), precision="bf16").segment(img, return_probs=True)
    assert np.array_equal(again.probs, half.probs)               # and is deterministic


def test_cpu_batch_follows_the_precision():
    """fp32 on the CPU runs small batches (faster there); bf16 keeps larger ones; a given size wins."""
    assert seg_for(LocalNet(), batch_size=None, precision="fp32").batch_size == infer.CPU_FP32_BATCH == 2
    assert seg_for(LocalNet(), batch_size=None, precision="bf16").batch_size == infer.DEFAULT_BATCH["cpu"]
    assert seg_for(LocalNet(), batch_size=3, precision="fp32").batch_size == 3


# --------------------------------------------------------------------------- the CPU allocator


def test_allocator_tuning_is_once_per_process_and_can_be_turned_off(monkeypatch):
    import platform

    from veer import device as vdev

    monkeypatch.setattr(vdev, "_allocator_tuned", None)
    monkeypatch.setenv("VEER_MALLOC", "default")
    assert vdev.tune_cpu_allocator() is False and vdev.allocator_tuned() is False
    assert vdev.tune_cpu_allocator() is False                  # decided once per process

    monkeypatch.setattr(vdev, "_allocator_tuned", None)
    monkeypatch.delenv("VEER_MALLOC", raising=False)
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert vdev.tune_cpu_allocator() is glibc
    assert vdev.allocator_tuned() is glibc
    assert vdev.tune_cpu_allocator() is glibc                  # idempotent

    monkeypatch.setattr(vdev, "_allocator_tuned", None)
    seg_for(LocalNet())                                        # a CPU segmenter tunes it
    assert vdev.allocator_tuned() is glibc
