"""The semantic/instance decision rule and the lever's pixel demonstration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from veer import decision
from veer.decision import INSTANCE, SEMANTIC, decide, draw_traces, instance_demo, split_point


def test_a_well_log_is_a_clear_semantic_case():
    # two named curves, class set known, small and fixed: the archive's own case
    v = decide(2)
    assert v.branch == SEMANTIC
    assert v.confidence == "clear"
    assert v.is_semantic
    assert "SEMANTIC" in v.headline


@pytest.mark.parametrize("n", decision.LEVER_MARKS)
def test_lever_marks_follow_the_rule_of_thumb(n):
    v = decide(n)
    assert v.branch == (SEMANTIC if n < decision.SPLIT_POINT else INSTANCE)


def test_verdict_flips_exactly_at_the_split_point():
    below = decide(decision.SPLIT_POINT - 1)
    at = decide(decision.SPLIT_POINT)
    assert below.branch == SEMANTIC and at.branch == INSTANCE
    assert at.split_at == pytest.approx(decision.SPLIT_POINT)


def test_score_grows_with_the_object_count():
    scores = [decide(n).score for n in range(1, 41)]
    assert all(b > a for a, b in zip(scores, scores[1:]))


@pytest.mark.parametrize("answers", [
    {"class_set_known": False},
    {"named": False},
])
def test_a_decisive_no_tips_even_two_objects_to_instance(answers):
    assert decide(2).branch == SEMANTIC
    assert decide(2, **answers).branch == INSTANCE


def test_a_large_open_set_alone_moves_the_split_down_but_keeps_two_semantic():
    v = decide(2, small_and_fixed=False)
    assert v.branch == SEMANTIC
    assert v.split_at < decision.SPLIT_POINT
    assert decide(12, small_and_fixed=False).branch == INSTANCE


def test_split_point_matches_decide():
    for answers in ({}, {"small_and_fixed": False}, {"named": False}):
        split = split_point(**answers)
        n_tip = max(1, math.ceil(split - 1e-9))
        assert decide(n_tip, **answers).branch == INSTANCE
        if n_tip > 1:
            assert decide(n_tip - 1, **answers).branch == SEMANTIC


def test_margin_and_confidence_are_consistent():
    for n in (1, 2, 12, 16, 20, 40):
        v = decide(n)
        assert v.margin == pytest.approx(abs(v.score))
        if v.margin >= decision.CLEAR:
            assert v.confidence == "clear"
        elif v.margin < decision.CLOSE:
            assert v.confidence == "close call"
    assert decide(12).confidence == "close call"  # the fork is near: say so


def test_reasons_are_plain_sentences_about_each_answer():
    v = decide(30, class_set_known=False, small_and_fixed=False, named=False)
    assert len(v.reasons) == 4
    text = " ".join(v.reasons)
    assert "not known" in text and "anonymous" in text and "30 objects" in text


def test_bad_object_count_is_refused():
    with pytest.raises(ValueError):
        decide(0)


def test_draw_traces_draws_n_separate_objects_deterministically():
    img, obj = draw_traces(5, seed=3)
    img2, obj2 = draw_traces(5, seed=3)
    assert np.array_equal(img, img2) and np.array_equal(obj, obj2)
    assert img.dtype == np.uint8 and set(np.unique(img)) <= {0, 255}
    assert set(np.unique(obj)) == set(range(6))  # paper + 5 traces, each visible
    assert np.array_equal(img == 0, obj > 0)
    # every trace runs the full height, with no missing rows
    for k in range(1, 6):
        assert (obj == k).any(axis=1).mean() > 0.9


def test_two_traces_stay_apart_and_forty_merge():
    two = instance_demo(2)
    assert (two.n_drawn, two.n_found, two.n_merged_components) == (2, 2, 0)
    forty = instance_demo(40)
    assert forty.n_found < 40
    assert forty.n_merged_objects > 20
    assert "fused" in forty.summary


def test_components_cover_the_semantic_mask_exactly():
    d = instance_demo(12, seed=1)
    assert np.array_equal(d.components > 0, d.semantic == 1)
    assert d.components.max() == d.n_found


def test_demo_is_quick():
    import time

    instance_demo(2)  # imports
    t0 = time.perf_counter()
    instance_demo(40)
    assert time.perf_counter() - t0 < 1.0
