"""The stitching rule on crafted probability maps and binary masks."""

from __future__ import annotations

import numpy as np
import pytest

from veer import stitch as stitch_mod
from veer.stitch import AGREED, CONFLICT, GAP, RULE, stitch, stitch_masks


def _probs(*pixels):
    """(3, 1, N) probabilities from N (p_background, p_curve1, p_curve2) triples."""
    return np.array(pixels, np.float32).T[:, None, :]


def test_crafted_pixels_give_expected_labels_and_conflicts():
    probs = _probs(
        (0.9, 0.1, 0.2),   # only background claims       -> 0, agreed
        (0.6, 0.9, 0.1),   # background and curve1 claim  -> 1 (more confident), conflict
        (0.1, 0.3, 0.4),   # none claims                  -> 2 (highest), gap
        (0.2, 0.7, 0.8),   # both curves claim            -> 2, conflict
        (0.1, 0.2, 0.95),  # only curve2 claims           -> 2, agreed
        (0.7, 0.8, 0.9),   # all three claim              -> 2, conflict
        (0.2, 0.5, 0.1),   # exactly 0.5 is a claim       -> 1, agreed
        (0.4, 0.4, 0.1),   # exact tie -> lower index     -> 0, gap
    )
    labels, conflict = stitch(probs)
    assert labels.dtype == np.uint8 and conflict.dtype == np.uint8
    assert labels.shape == conflict.shape == (1, 8)
    assert labels[0].tolist() == [0, 1, 2, 2, 2, 2, 1, 0]
    assert conflict[0].tolist() == [AGREED, CONFLICT, GAP, CONFLICT, AGREED, CONFLICT, AGREED, GAP]


def test_threshold_changes_conflicts_not_labels():
    probs = _probs((0.6, 0.9, 0.1), (0.1, 0.3, 0.4))
    labels_a, conflict_a = stitch(probs, threshold=0.5)
    labels_b, conflict_b = stitch(probs, threshold=0.35)
    assert np.array_equal(labels_a, labels_b)
    assert conflict_a[0].tolist() == [CONFLICT, GAP]
    assert conflict_b[0].tolist() == [CONFLICT, AGREED]


def test_banded_result_equals_whole_image(rng, monkeypatch):
    probs = rng.random((3, 41, 17)).astype(np.float32)
    whole = stitch(probs)
    monkeypatch.setattr(stitch_mod, "_BAND_PIXELS", 50)  # bands of 2 rows
    banded = stitch(probs)
    assert np.array_equal(whole[0], banded[0]) and np.array_equal(whole[1], banded[1])
    assert np.array_equal(whole[0], np.argmax(probs, axis=0))
    claims = (probs >= 0.5).sum(axis=0)
    assert np.array_equal(whole[1] == GAP, claims == 0)
    assert np.array_equal(whole[1] == CONFLICT, claims >= 2)


def test_binary_masks():
    bg = np.array([[1, 0, 1, 0, 0, 1]])
    c1 = np.array([[0, 1, 1, 0, 1, 0]])
    c2 = np.array([[0, 0, 0, 0, 1, 1]])
    labels, conflict = stitch_masks(bg, c1, c2)
    # bg only, c1 only, bg+c1, none, c1+c2, bg+c2
    assert labels[0].tolist() == [0, 1, 0, 0, 1, 0]
    assert conflict[0].tolist() == [AGREED, AGREED, CONFLICT, GAP, CONFLICT, CONFLICT]
    stacked = stitch_masks(np.stack([bg, c1, c2]).astype(bool))
    assert np.array_equal(stacked[0], labels) and np.array_equal(stacked[1], conflict)
    # a 255-valued mask counts as a claim just like 1
    labels255, _ = stitch_masks(bg * 255, c1 * 255, c2 * 255)
    assert np.array_equal(labels255, labels)


def test_binary_masks_agree_with_probability_rule_when_masks_agree(rng):
    truth = rng.integers(0, 3, size=(20, 20))
    masks = np.stack([truth == k for k in range(3)])
    labels, conflict = stitch_masks(masks)
    assert np.array_equal(labels, truth) and not conflict.any()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        stitch(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError):
        stitch_masks(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="differ in shape"):
        stitch_masks(np.zeros((4, 4)), np.zeros((4, 5)), np.zeros((4, 4)))


def test_rule_text_is_documented_in_the_module():
    assert "argmax" in RULE and "0.5" in RULE
    doc = stitch_mod.__doc__
    assert "argmax(p_background, p_curve1, p_curve2)" in doc and "2 = gap" in doc


def test_argmax3_is_argmax_first_on_ties_for_numpy_and_torch():
    import torch

    from veer.stitch import argmax3

    rng = np.random.default_rng(3)
    p = rng.integers(0, 4, size=(3, 37, 41)).astype(np.float32)   # many ties
    want = np.argmax(p, axis=0).astype(np.uint8)
    got = argmax3(p[0], p[1], p[2])
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    t = torch.from_numpy(p)
    assert np.array_equal(argmax3(t[0], t[1], t[2]).numpy(), want)
