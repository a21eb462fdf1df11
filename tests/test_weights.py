"""Saving and loading model weights safely, and clear errors for bad files."""

from __future__ import annotations

import json

import pytest
import torch

from veer.errors import ModelFileError
from veer.model import build_model
from veer.weights import (MODELS_DIR, PIPELINES, load_card, load_history, load_model, save_history,
                          save_model)

TINY = {"widths": [8, 8, 16], "blocks": [1, 1], "attn_heads": 2}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY, 1)
    card = save_model(model, "binary_curve1", {"task": "binary", "target": "curve1",
                                               "training": {"steps": 3}}, tmp_path)
    save_history("binary_curve1", [{"step": 3, "loss": 0.5}], tmp_path)
    return model, card, tmp_path


def test_round_trip(saved):
    model, card, folder = saved
    loaded, card2 = load_model("binary_curve1", folder)
    assert not loaded.training
    assert card2["sha256"] == card["sha256"] and card2["target"] == "curve1"
    assert card2["parameters"] > 0 and card2["gmac_per_mpx"] > 0 and card2["config"]["widths"] == [8, 8, 16]
    x = torch.rand(1, 1, 21, 30)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert load_card("binary_curve1", folder)["training"]["steps"] == 3
    assert load_history("binary_curve1", folder) == [{"step": 3, "loss": 0.5}]


def test_weights_are_a_plain_state_dict(saved):
    _, _, folder = saved
    state = torch.load(folder / "binary_curve1.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


def test_missing_weights_name_the_file(saved):
    _, _, folder = saved
    (folder / "binary_curve1.pt").unlink()
    with pytest.raises(ModelFileError, match=r"binary_curve1\.pt.*not found.*--target curve1"):
        load_model("binary_curve1", folder)


def test_missing_card(tmp_path):
    with pytest.raises(ModelFileError, match=r"joint\.json.*not found.*train --task joint"):
        load_model("joint", tmp_path)


def test_corrupt_weights_fail_the_checksum(saved):
    _, _, folder = saved
    pt = folder / "binary_curve1.pt"
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"binary_curve1\.pt.*checksum"):
        load_model("binary_curve1", folder)


def test_truncated_weights_with_matching_card_are_rejected(saved):
    """Even a file whose checksum was updated must still be a loadable state_dict."""
    import hashlib

    _, _, folder = saved
    pt = folder / "binary_curve1.pt"
    pt.write_bytes(pt.read_bytes()[:100])
    card = json.loads((folder / "binary_curve1.json").read_text())
    card["sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
    (folder / "binary_curve1.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"binary_curve1\.pt.*not a loadable"):
        load_model("binary_curve1", folder)


def test_damaged_card(saved):
    _, _, folder = saved
    (folder / "binary_curve1.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"binary_curve1\.json.*damaged"):
        load_card("binary_curve1", folder)


def test_pickled_code_is_never_run(tmp_path):
    """A .pt holding arbitrary pickled objects is refused by weights_only loading."""
    import hashlib

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    model = build_model(TINY, 3)
    save_model(model, "joint", {}, tmp_path)
    pt = tmp_path / "joint.pt"
    torch.save({"x": Evil()}, pt)
    card = json.loads((tmp_path / "joint.json").read_text())
    card["sha256"] = hashlib.sha256(pt.read_bytes()).hexdigest()
    (tmp_path / "joint.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="not a loadable"):
        load_model("joint", tmp_path)


def test_restore_hint_for_shipped_models():
    assert MODELS_DIR.name == "models" and MODELS_DIR.parent.name == "assets"
    assert PIPELINES["separate"] == ["binary_background", "binary_curve1", "binary_curve2"]
    with pytest.raises(ModelFileError, match=r"git checkout -- assets/models/"):
        load_model("no_such_model")


def test_shipped_models_load_when_present(models_dir):
    """Every model in assets/models loads, matches its card and has a history."""
    names = [n for n in ("joint", "binary_background", "binary_curve1", "binary_curve2")
             if (models_dir / f"{n}.json").exists()]
    if not names:
        pytest.skip("no trained models shipped yet")
    for name in names:
        model, card = load_model(name, models_dir)
        assert card["name"] == name
        assert model.out_channels == (3 if name == "joint" else 1)
        assert isinstance(load_history(name, models_dir), list)
