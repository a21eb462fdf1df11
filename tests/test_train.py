"""Training: checkpoints, resume, determinism, export, the same data for every task."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from veer.errors import ConfigError
from veer.train import (TrainConfig, augmented_tile, confusion_counts, default_workers, lr_at, scores, train,
                        training_batch, validation_set)
from veer.weights import load_card, load_history, load_model

TINY = {"widths": [8, 8, 16], "blocks": [1, 1], "attn_heads": 2}


def toy_tile(rng: np.random.Generator, size: int = 32):
    """A stand-in for veer.synth.sample_tile: a solid and a dashed vertical line on paper."""
    gray = np.full((size, size), 245, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    x1, x2 = rng.integers(2, size - 2, 2)
    gray[:, x1] = 20
    mask[:, x1] = 1
    rows = (np.arange(size) // 3) % 2 == 0
    gray[rows, x2] = 40
    mask[rows, x2] = np.where(mask[rows, x2] == 1, 255, 2)
    return gray, mask


def cfg(**kw) -> TrainConfig:
    base = dict(task="joint", steps=3, batch=2, tile=32, eval_every=2, checkpoint_every=1,
                val_tiles=2, warmup=1, model=TINY)
    base.update(kw)
    return TrainConfig(**base)


def run(c, out, models, **kw):
    return train(c, out, device="cpu", threads=1, sampler=toy_tile, models_dir=models,
                 progress=False, **kw)


def weights_of(path):
    return torch.load(path, weights_only=True)["model"]


def test_three_steps_checkpoint_resume_and_determinism(tmp_path):
    models = tmp_path / "models"
    full = run(cfg(), tmp_path / "a", models)
    assert full.step == 3 and (tmp_path / "a" / "checkpoint.pt").exists()
    again = run(cfg(), tmp_path / "b", tmp_path / "m2")
    wa, wb = weights_of(tmp_path / "a" / "checkpoint.pt"), weights_of(tmp_path / "b" / "checkpoint.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)           # same seed -> same weights

    part = run(cfg(), tmp_path / "c", tmp_path / "m3", stop_at=2)  # "interrupted" after 2 steps
    assert part.step == 2
    with pytest.raises(ConfigError, match="--resume"):
        run(cfg(), tmp_path / "c", tmp_path / "m3")               # never overwrites a run silently
    resumed = run(cfg(), tmp_path / "c", tmp_path / "m3", resume=True)
    assert resumed.step == 3
    wc = weights_of(tmp_path / "c" / "checkpoint.pt")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)           # resume == uninterrupted

    other = run(cfg(seed=1), tmp_path / "d", tmp_path / "m4")
    wd = weights_of(tmp_path / "d" / "checkpoint.pt")
    assert not all(torch.equal(wa[k], wd[k]) for k in wa)
    assert other.step == 3


def test_export_writes_model_card_and_history(tmp_path):
    models = tmp_path / "models"
    run(cfg(task="binary", target="curve2"), tmp_path / "run", models)
    model, card = load_model("binary_curve2", models)
    assert model.out_channels == 1
    assert card["task"] == "binary" and card["target"] == "curve2"
    t = card["training"]
    assert t["tile"] == 32 and t["batch"] == 2 and t["planned_steps"] == 3 and t["complete"]
    assert t["data"]["validation_seeds"][0] == 10_000_000 and t["hardware"]["cpu"]
    assert set(card["validation"]["per_class"]) == {"not_curve2", "curve2"}
    hist = load_history("binary_curve2", models)
    assert [row["step"] for row in hist] == [2, 3]
    assert {"precision", "recall", "f1", "iou"} <= set(hist[0]["val"]["curve2"])
    assert load_card("binary_curve2", models)["sha256"] == card["sha256"]
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == hist


def test_no_export_leaves_models_folder_alone(tmp_path):
    run(cfg(), tmp_path / "run", tmp_path / "models", export=False)
    assert not (tmp_path / "models").exists()


def test_resume_with_other_settings_is_refused(tmp_path):
    run(cfg(), tmp_path / "run", tmp_path / "models", stop_at=1)
    with pytest.raises(ConfigError, match="batch"):
        run(cfg(batch=3), tmp_path / "run", tmp_path / "models", resume=True)


def test_every_task_sees_the_same_data():
    """Fairness: the batch of a step depends on seed and step only, never on the task."""
    x1, y1 = training_batch(0, 5, 3, 32, toy_tile)
    x2, y2 = training_batch(0, 5, 3, 32, toy_tile)
    x3, _ = training_batch(0, 6, 3, 32, toy_tile)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert x1.shape == (3, 1, 32, 32) and y1.dtype == torch.int64
    assert set(torch.unique(y1).tolist()) <= {0, 1, 2, 255}


def in_fresh_interpreter(script_text: str, tmp_path) -> str:
    """Run a check script in a new Python process (as `python -m veer train` runs) with this
    folder and the repository importable, with ``tmp_path`` as its argument; its stdout."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "check.py"
    script.write_text(script_text)
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


WORKERS_CHECK = """
import sys
import torch
from test_train import cfg, run, toy_tile, weights_of
from veer.train import batch_stream, training_batch
from pathlib import Path

if __name__ == "__main__":
    tmp = Path(sys.argv[1])
    c = cfg(batch=3, wrap_tiles=0.0)
    inline = list(batch_stream(c, 5, 12, toy_tile, 0))
    spread = list(batch_stream(c, 5, 12, toy_tile, 3))               # 7 steps: not a multiple of 3
    assert len(inline) == len(spread) == 7
    for step, ((xa, ya), (xb, yb)) in enumerate(zip(inline, spread), start=5):
        x, y = training_batch(c.seed, step, 3, 32, toy_tile)
        assert torch.equal(xa, x) and torch.equal(ya, y), step
        assert torch.equal(xb, x) and torch.equal(yb, y), step
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert len(list(batch_stream(c, 3, 4, toy_tile, 8))) == 1         # more workers than steps
    run(cfg(), tmp / "a", tmp / "m1", workers=0)
    run(cfg(), tmp / "b", tmp / "m2", workers=2)
    wa, wb = weights_of(tmp / "a" / "checkpoint.pt"), weights_of(tmp / "b" / "checkpoint.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    print("same batches, same weights")
"""


def test_data_workers_make_the_same_batches_in_step_order(tmp_path):
    """--workers N spreads the batches over N processes; the run sees exactly what one process makes.

    Checked in a fresh interpreter, as `python -m veer train` runs: the test process has loaded
    OpenVINO, Dask and Streamlit by then, and it once crashed while starting data workers."""
    assert "same batches, same weights" in in_fresh_interpreter(WORKERS_CHECK, tmp_path)

    with pytest.raises(ConfigError, match="--workers"):
        run(cfg(), tmp_path / "c", tmp_path / "m3", workers=-1)
    assert not (tmp_path / "c").exists()
    assert default_workers("cpu") == 0 and 1 <= default_workers("cuda") <= 15


def test_validation_tiles_are_fixed_and_not_training_tiles():
    xa, ya = validation_set(3, 32, toy_tile)
    xb, _ = validation_set(3, 32, toy_tile)
    assert torch.equal(xa, xb)
    gray, _ = toy_tile(np.random.default_rng(10_000_000), 32)
    assert torch.equal(xa[0, 0], torch.from_numpy(gray.astype(np.float32) / 255))


def test_augmentation_keeps_labels_on_their_ink():
    rng = np.random.default_rng(3)
    for _ in range(5):
        g, m = augmented_tile(rng, 32, toy_tile, 0.15)
        assert g.shape == m.shape == (32, 32) and g.dtype == np.float32
        assert 0.0 <= g.min() and g.max() <= 1.0
        assert set(np.unique(m).tolist()) <= {0, 1, 2, 255}
        assert g[m == 1].mean() < g[m == 0].mean()   # curve pixels stay darker than paper


def test_wrap_tiles_ask_the_sampler_for_sweeps_and_leave_the_plain_stream_alone():
    asked = []

    def sampler(rng, size, at_wrap=False):
        asked.append(at_wrap)
        return toy_tile(rng, size)

    x0, y0 = training_batch(0, 5, 8, 32, toy_tile)
    x1, y1 = training_batch(0, 5, 8, 32, sampler, wrap_tiles=0.0)
    assert torch.equal(x0, x1) and torch.equal(y0, y1) and not any(asked)
    asked.clear()
    training_batch(0, 5, 64, 32, sampler, wrap_tiles=0.25)
    assert 6 <= sum(asked) <= 28
    asked.clear()
    training_batch(0, 5, 8, 32, sampler, wrap_tiles=1.0)
    assert all(asked)
    with pytest.raises(ConfigError, match="--wrap-tiles"):
        TrainConfig(wrap_tiles=1.5)


def test_schedule_and_scores():
    c = cfg(steps=100, warmup=10, lr=1e-3)
    lrs = [lr_at(c, s) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1e-3)
    assert lrs[-1] < 1e-4 and max(lrs) <= 1e-3 + 1e-12
    m = confusion_counts(np.array([0, 1, 2, 255, 1]), np.array([0, 1, 1, 2, 2]), 3)
    assert m.sum() == 4 and m[2, 1] == 1 and m[1, 2] == 1
    s = scores(m, ["background", "curve1", "curve2"])
    assert s["per_class"]["background"]["f1"] == 1.0
    assert s["per_class"]["curve1"]["precision"] == 0.5 and s["per_class"]["curve2"]["iou"] == 0.0


def test_bad_options():
    with pytest.raises(ConfigError, match="--target"):
        TrainConfig(task="binary")
    with pytest.raises(ConfigError):
        TrainConfig(task="panoptic")
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)


def test_joint_and_binary_start_from_the_same_backbone(tmp_path):
    """Fairness: same seed -> identical initial weights everywhere except the head."""
    run(cfg(), tmp_path / "j", tmp_path / "m", stop_at=0, export=False)
    run(cfg(task="binary", target="background"), tmp_path / "b", tmp_path / "m", stop_at=0, export=False)
    wj, wb = weights_of(tmp_path / "j" / "checkpoint.pt"), weights_of(tmp_path / "b" / "checkpoint.pt")
    assert wj.keys() == wb.keys()
    body = [k for k in wj if not k.startswith("head.")]
    assert body and all(torch.equal(wj[k], wb[k]) for k in body)
    assert wj["head.weight"].shape[0] == 3 and wb["head.weight"].shape[0] == 1


def test_init_continues_from_shipped_weights_and_counts_on(tmp_path):
    """--init starts from an exported model (checksum checked) and its card and
    history count the steps on from it; a damaged or mismatched file is refused."""
    first = tmp_path / "m1"
    run(cfg(), tmp_path / "a", first)
    card1 = load_card("joint", first)
    start, _ = load_model("joint", first)

    second = tmp_path / "m2"
    c = cfg(init=str(first / "joint.pt"), seed=1)
    state = run(c, tmp_path / "b", second, stop_at=1)      # one step from the shipped weights
    assert state.step == 1
    after = weights_of(tmp_path / "b" / "checkpoint.pt")
    before = start.state_dict()
    # one small step from the start, not a fresh random network
    diffs = [float((after[k] - before[k]).abs().max()) for k in before if before[k].dtype.is_floating_point]
    assert max(diffs) < 0.05
    run(c, tmp_path / "b", second, resume=True)
    card2 = load_card("joint", second)
    prior = card1["training"]["steps"]
    assert card2["training"]["init"]["sha256"] == card1["sha256"]
    assert card2["training"]["total_steps"] == prior + card2["training"]["steps"]
    steps = [r["step"] for r in load_history("joint", second)]
    assert steps == sorted(steps) and steps[0] <= prior < steps[-1]

    (tmp_path / "bad").mkdir()
    bad = tmp_path / "bad" / "joint.pt"
    bad.write_bytes((first / "joint.pt").read_bytes()[:-10])
    (tmp_path / "bad" / "joint.json").write_text((first / "joint.json").read_text())
    from veer.errors import ModelFileError
    with pytest.raises(ModelFileError, match="checksum"):
        run(cfg(init=str(bad)), tmp_path / "c", tmp_path / "m3")
    with pytest.raises(ConfigError, match="not for binary_curve1"):
        run(cfg(task="binary", target="curve1", init=str(first / "joint.pt")), tmp_path / "d", tmp_path / "m4")
    with pytest.raises(ConfigError, match="not found"):
        run(cfg(init=str(tmp_path / "nope.pt")), tmp_path / "e", tmp_path / "m5")


def test_init_grows_the_network_and_says_so(tmp_path):
    """--init into a --model with more blocks and more full-resolution channels starts from the
    trained network's very output (the new blocks are the identity, the new channels feed
    nothing yet), and the card records what it grew from; a --model
    that is not a growth of the weights' network is refused with a clear message."""
    first = tmp_path / "m1"
    run(cfg(), tmp_path / "a", first)
    start, _ = load_model("joint", first)
    grown = {**TINY, "widths": [16, 8, 16], "attn_layers": 2, "head_blocks": 1}
    c = cfg(init=str(first / "joint.pt"), model=grown, seed=1)
    run(c, tmp_path / "b", tmp_path / "m2", stop_at=0, export=False)
    from veer.model import build_model
    net = build_model(grown, 3)
    net.load_state_dict(weights_of(tmp_path / "b" / "checkpoint.pt"))
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), start.eval()(x), atol=1e-5)
    run(c, tmp_path / "b", tmp_path / "m2", resume=True)
    card = load_card("joint", tmp_path / "m2")
    assert card["training"]["init"]["grown_from"]["head_blocks"] == 0
    assert card["config"]["head_blocks"] == 1 and card["config"]["widths"][0] == 16
    assert card["training"]["init"]["grown_from"]["widths"][0] == 8
    with pytest.raises(ConfigError, match="may only add"):
        run(cfg(init=str(first / "joint.pt"), model={**TINY, "widths": [8, 8, 32]}), tmp_path / "c", tmp_path / "m3")


def test_cli_network_follows_the_init_weights(tmp_path):
    """`train --init W` trains W's network without repeating it in --model; --model then changes
    keys of it (here: grows it by a refine block); without --init the default network is used."""
    import argparse

    from veer.model import ModelConfig
    from veer.train import add_arguments, config_from_args

    first = tmp_path / "m1"
    run(cfg(), tmp_path / "a", first)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    init = str(first / "joint.pt")
    same = config_from_args(parser.parse_args(["--init", init]))
    assert same.model == ModelConfig.from_dict(TINY).to_dict()
    grown = config_from_args(parser.parse_args(["--init", init, "--model", '{"head_blocks": 1}']))
    assert grown.model == ModelConfig.from_dict({**TINY, "head_blocks": 1}).to_dict()
    assert config_from_args(parser.parse_args([])).model == ModelConfig().to_dict()


def test_teacher_distils_into_the_run_and_the_card_says_so(tmp_path):
    """--teacher: the run is pulled towards a trained network's answer (in the views and at the
    scales given), which changes what it learns; the card records the teacher's checksum, views,
    scales and weight; a teacher of another task, a missing one or bad options are refused."""
    from veer.train import Teacher

    first = tmp_path / "m1"
    run(cfg(steps=4), tmp_path / "a", first)
    teacher_card = load_card("joint", first)
    plain = run(cfg(init=str(first / "joint.pt"), seed=1), tmp_path / "p", tmp_path / "mp")
    c = cfg(init=str(first / "joint.pt"), seed=1, teacher=str(first / "joint.pt"), distill=5.0,
            teacher_views=4, teacher_scales="1,1.3")
    taught = run(c, tmp_path / "t", tmp_path / "mt")
    assert plain.step == taught.step == 3
    wp, wt = weights_of(tmp_path / "p" / "checkpoint.pt"), weights_of(tmp_path / "t" / "checkpoint.pt")
    assert not all(torch.equal(wp[k], wt[k]) for k in wp)
    card = load_card("joint", tmp_path / "mt")["training"]
    assert card["teacher"] == {"file": "joint.pt", "sha256": teacher_card["sha256"], "views": 4,
                               "scales": [1.0, 1.3], "weight": 5.0}
    assert load_card("joint", tmp_path / "mp")["training"]["teacher"] is None

    # in one view at scale 1 the teacher gives its network's own probabilities
    one = Teacher(first / "joint.pt", cfg(teacher_views=1, teacher_scales="1"), torch.device("cpu"))
    net, _ = load_model("joint", first)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(one(x), torch.softmax(net.eval()(x), 1), atol=1e-5)
    four = Teacher(first / "joint.pt", c, torch.device("cpu"))(x)
    assert four.shape == (2, 3, 32, 32) and torch.allclose(four.sum(1), torch.ones(2, 32, 32), atol=1e-5)

    with pytest.raises(ConfigError, match="not for binary_curve1"):
        run(cfg(task="binary", target="curve1", teacher=str(first / "joint.pt")), tmp_path / "b", tmp_path / "mb")
    with pytest.raises(ConfigError, match="--teacher .*not found"):
        run(cfg(teacher=str(tmp_path / "nope.pt")), tmp_path / "n", tmp_path / "mn")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "joint.pt").write_bytes((first / "joint.pt").read_bytes()[:-10])
    (tmp_path / "bad" / "joint.json").write_text((first / "joint.json").read_text())
    from veer.errors import ModelFileError
    with pytest.raises(ModelFileError, match="checksum"):
        run(cfg(teacher=str(tmp_path / "bad" / "joint.pt")), tmp_path / "k", tmp_path / "mk")
    with pytest.raises(ConfigError, match="--distill"):
        cfg(teacher=str(first / "joint.pt"), distill=0)
    with pytest.raises(ConfigError, match="--teacher-views"):
        cfg(teacher_views=3)
    with pytest.raises(ConfigError, match="scale"):
        cfg(teacher_scales="1,abc")


def test_overlap_term_trains_and_the_card_says_so(tmp_path):
    """--overlap: tiles whose dashed line crosses a solid one mark the crossing 255; the term
    changes what is learnt (same seed, other weights), the card records its weight, and a
    negative weight is refused."""
    def crossing_tile(rng, size=32, **kw):
        gray, mask = toy_tile(rng, size)
        row = mask.shape[0] // 2
        gray[row - 1:row + 1, :] = 20
        mask[row - 1:row + 1, :] = np.where(mask[row - 1:row + 1, :] == 2, 255, 1)
        return gray, mask

    for name, c in (("a", cfg()), ("b", cfg(overlap=2.0))):
        train(c, tmp_path / name, device="cpu", threads=1, sampler=crossing_tile,
              models_dir=tmp_path / f"m{name}", progress=False)
    wa, wb = weights_of(tmp_path / "a" / "checkpoint.pt"), weights_of(tmp_path / "b" / "checkpoint.pt")
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)
    assert load_card("joint", tmp_path / "mb")["training"]["config"]["overlap"] == 2.0
    assert load_card("joint", tmp_path / "ma")["training"]["config"]["overlap"] == 0.0
    with pytest.raises(ConfigError, match="--overlap"):
        cfg(overlap=-1.0)


def test_ema_keeps_and_exports_the_moving_average_of_the_weights(tmp_path):
    """--ema DECAY: the run keeps w_avg <- DECAY * w_avg + (1 - DECAY) * w after every step
    (from the weights after the first step); that average, not the raw weights, is validated,
    kept as best.pt and exported; it survives an interruption; the card says so."""
    c = cfg(ema=0.5, steps=2, eval_every=1)
    run(c, tmp_path / "a", tmp_path / "ma", stop_at=1)
    w1 = weights_of(tmp_path / "a" / "checkpoint.pt")
    run(c, tmp_path / "a", tmp_path / "ma", resume=True)
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    w2 = ck["model"]
    avg = {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}
    for k in w2:
        if w2[k].is_floating_point():
            assert torch.allclose(avg[k], 0.5 * w1[k] + 0.5 * w2[k], atol=1e-6), k
    assert any(not torch.equal(avg[k], w2[k]) for k in w2)
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], avg[k]) for k in best)       # the average is what is kept
    model, card = load_model("joint", tmp_path / "ma")
    assert all(torch.equal(model.state_dict()[k], avg[k]) for k in best)
    assert card["training"]["config"]["ema"] == 0.5
    assert card["training"]["steps"] == 2                        # the run's end, whatever step 1 scored
    assert "moving average" in card["training"]["schedule"]

    # an uninterrupted run reaches the same average
    run(c, tmp_path / "b", tmp_path / "mb")
    again = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["ema"]
    assert all(torch.equal(again[k], ck["ema"][k]) for k in again)
    # without --ema the raw weights are kept, as before
    run(cfg(steps=2, eval_every=2), tmp_path / "c", tmp_path / "mc")
    plain = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert "ema" not in plain
    assert all(torch.equal(torch.load(tmp_path / "c" / "best.pt", weights_only=True)[k], plain["model"][k])
               for k in plain["model"])
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="--ema"):
            cfg(ema=bad)


def test_time_limit_stops_validated_checkpointed_and_resumes_where_it_stopped(tmp_path):
    """--time-limit: the call ends at the first step past the limit, validated there (its weights
    kept and exported as at any validation, the card saying the run is unfinished); --resume then
    ends the run with the very weights of an uninterrupted one."""
    c = cfg(eval_every=10, checkpoint_every=10)
    part = run(c, tmp_path / "a", tmp_path / "ma", time_limit=1e-9)
    assert part.step == 1 and part.stopped == "time limit"
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert json.loads(ck["state"])["step"] == 1
    assert [r["step"] for r in json.loads((tmp_path / "a" / "history.json").read_text())] == [1]
    _, card = load_model("joint", tmp_path / "ma")
    assert card["training"]["steps"] == 1 and not card["training"]["complete"]

    done = run(c, tmp_path / "a", tmp_path / "ma", resume=True)
    assert done.step == 3 and done.stopped == ""
    whole = run(c, tmp_path / "b", tmp_path / "mb")
    wa, wb = weights_of(tmp_path / "a" / "checkpoint.pt"), weights_of(tmp_path / "b" / "checkpoint.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert load_card("joint", tmp_path / "ma")["training"]["complete"]
    with pytest.raises(ConfigError, match="--time-limit"):
        run(c, tmp_path / "c", tmp_path / "mc", time_limit=0)
    assert not (tmp_path / "c").exists()


SIGNAL_CHECK = """
import json
import os
import signal
import sys
from pathlib import Path

import torch
from test_train import cfg, run, toy_tile, weights_of
from veer.train import train


def signalling_sampler(signum, at_calls):
    # toy_tile that sends this process signum on the given calls: the 2 validation tiles come
    # first, then 2 tiles a step
    calls = []

    def sample(rng, size, **kw):
        calls.append(1)
        if len(calls) in at_calls:
            os.kill(os.getpid(), signum)
        return toy_tile(rng, size)
    return sample


if __name__ == "__main__":
    tmp = Path(sys.argv[1])
    # Ctrl-C as a terminal's python has it: a runner started in the background (nohup CMD &)
    # passes it on ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    c = cfg(steps=4, eval_every=10, checkpoint_every=10)     # no checkpoint of its own before step 4
    whole = tmp / "whole"
    run(c, whole, tmp / "mw")
    for name in ("SIGINT", "SIGTERM"):
        signum = getattr(signal, name)
        before = signal.getsignal(signum)
        # the signal comes while the second step's batch is being made
        part = train(c, tmp / name, device="cpu", threads=1, models_dir=tmp / ("m" + name), progress=False,
                     sampler=signalling_sampler(signum, (5,)))
        assert part.step == 2 and part.stopped == name, (name, part.step, part.stopped)
        ck = torch.load(tmp / name / "checkpoint.pt", weights_only=True)
        assert json.loads(ck["state"])["step"] == 2, name
        assert signal.getsignal(signum) is before, name      # the handler is the caller's again
        done = run(c, tmp / name, tmp / ("m" + name), resume=True)
        assert done.step == 4 and done.stopped == ""
        wa, wb = weights_of(tmp / name / "checkpoint.pt"), weights_of(whole / "checkpoint.pt")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name   # nothing lost, nothing done twice
    # a second Ctrl-C (both while the first step's batch is being made) stops at once
    try:
        train(c, tmp / "twice", device="cpu", threads=1, models_dir=tmp / "m2", progress=False,
              sampler=signalling_sampler(signal.SIGINT, (3, 4)))
    except KeyboardInterrupt:
        print("stopped at once")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # a Ctrl-C the caller ignores (a background job's) stays ignored: the run goes on to its end
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bg = train(c, tmp / "background", device="cpu", threads=1, models_dir=tmp / "mb", progress=False,
               sampler=signalling_sampler(signal.SIGINT, (5,)))
    assert bg.step == 4 and bg.stopped == "", (bg.step, bg.stopped)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    print("signals: step finished, checkpointed, resumed as if never stopped")
"""


def test_ctrl_c_or_sigterm_finish_the_step_checkpoint_and_lose_nothing(tmp_path):
    """Ctrl-C or SIGTERM while training: the step in hand is finished and checkpointed, and
    --resume ends with the very weights of an uninterrupted run; a second Ctrl-C stops at once;
    a Ctrl-C the caller ignores (a background job) does not stop the run.

    Checked in a fresh interpreter, as `python -m veer train` runs: a pytest-xdist worker that
    has run the browser and dashboard tests died of the signal."""
    out = in_fresh_interpreter(SIGNAL_CHECK, tmp_path)
    assert "stopped at once" in out
    assert "signals: step finished, checkpointed, resumed as if never stopped" in out


def test_cli_time_limit_says_where_it_stopped_and_how_to_go_on(tmp_path, capsys):
    from veer.cli import main

    args = ["train", "--steps", "3", "--batch", "1", "--tile", "32", "--val-tiles", "1", "--warmup", "1",
            "--model", json.dumps(TINY), "--threads", "1", "--out", str(tmp_path / "run"),
            "--models-dir", str(tmp_path / "models"), "--time-limit", "1e-9"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "stopped at the time limit of 1e-09 minutes after step 1 of 3" in err and "--resume" in err
    assert main(args[:-2] + ["--resume"]) == 0
    assert "joint: 3 steps" in capsys.readouterr().out
    assert main(args[:-1] + ["0"]) == 1
    assert "veer train: error: --time-limit must be a positive number of minutes" in capsys.readouterr().err
