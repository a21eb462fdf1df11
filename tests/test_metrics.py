"""Pixel and tolerant scores: hand-computed cases, ignore handling, edge cases."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from veer import metrics
from veer.metrics import (
    ConfusionMatrix,
    conflict_counts,
    error_counts,
    error_map,
    scores_from_counts,
    summarize,
    tolerant_scores,
)

# truth / prediction of 10 pixels; the last truth pixel is ignored (255)
TRUTH = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 255], np.uint8)
PRED = np.array([0, 0, 0, 1, 1, 1, 0, 2, 1, 2], np.uint8)
# rows truth, cols prediction, worked out by hand from the arrays above
EXPECTED = np.array([[3, 1, 0],
                     [1, 2, 0],
                     [0, 1, 1]])


def test_confusion_matrix_counts_by_hand():
    cm = ConfusionMatrix().update(TRUTH, PRED)
    assert cm.matrix.tolist() == EXPECTED.tolist()
    assert cm.total == 9  # the ignored pixel is not counted
    assert cm.tp.tolist() == [3, 2, 1]
    assert cm.fp.tolist() == [1, 2, 0]
    assert cm.fn.tolist() == [1, 1, 1]
    assert cm.support.tolist() == [4, 3, 2]


def test_ignored_pixels_never_count_whatever_is_predicted():
    base = ConfusionMatrix().update(TRUTH, PRED).matrix.copy()
    for p in (0, 1, 2):
        pred = PRED.copy()
        pred[-1] = p
        assert np.array_equal(ConfusionMatrix().update(TRUTH, pred).matrix, base)
    all_ignored = np.full((4, 4), 255, np.uint8)
    assert ConfusionMatrix().update(all_ignored, np.ones((4, 4), np.uint8)).total == 0


def test_scores_by_hand():
    s = summarize(ConfusionMatrix().update(TRUTH, PRED))
    bg, c1, c2 = (s["per_class"][n] for n in ("background", "curve1", "curve2"))
    assert (bg["precision"], bg["recall"], bg["f1"], bg["iou"]) == pytest.approx((0.75, 0.75, 0.75, 0.6))
    # curve1: tp 2, fp 2, fn 1
    assert (c1["precision"], c1["recall"], c1["f1"], c1["iou"]) == pytest.approx((0.5, 2 / 3, 4 / 7, 0.4))
    # curve2: tp 1, fp 0, fn 1
    assert (c2["precision"], c2["recall"], c2["f1"], c2["iou"]) == pytest.approx((1.0, 0.5, 2 / 3, 0.5))
    assert (bg["support"], c1["support"], c2["support"]) == (4, 3, 2)
    assert (bg["predicted"], c1["predicted"], c2["predicted"]) == (4, 4, 1)
    assert s["macro_all"]["f1"] == pytest.approx((0.75 + 4 / 7 + 2 / 3) / 3)
    assert s["macro_curves"]["f1"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert s["macro_curves"]["iou"] == pytest.approx(0.45)
    assert s["pixel_accuracy"] == pytest.approx(6 / 9)
    # a plain matrix gives the same summary as the object
    assert summarize(EXPECTED) == s


def test_f1_is_harmonic_mean_of_precision_and_recall(rng):
    m = rng.integers(0, 1000, size=(3, 3))
    s = summarize(m)
    for row in s["per_class"].values():
        p, r = row["precision"], row["recall"]
        assert row["f1"] == pytest.approx(2 * p * r / (p + r))


def test_zero_division_rules():
    # class 2 in neither truth nor prediction -> NaN, skipped by the macro averages
    truth = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1])
    s = summarize(ConfusionMatrix().update(truth, pred))
    assert all(math.isnan(s["per_class"]["curve2"][k]) for k in ("precision", "recall", "f1", "iou"))
    assert s["macro_curves"]["f1"] == 1.0
    assert s["macro_all"]["f1"] == 1.0
    # class present in truth but never predicted: precision 0 (not NaN), recall 0
    pred_missing = np.array([0, 0, 0, 0])
    s = summarize(ConfusionMatrix().update(truth, pred_missing))
    c1 = s["per_class"]["curve1"]
    assert (c1["precision"], c1["recall"], c1["f1"], c1["iou"]) == (0.0, 0.0, 0.0, 0.0)
    # class predicted where truth has none: recall 0
    s = summarize(ConfusionMatrix().update(np.zeros(4, int), np.array([0, 2, 0, 0])))
    c2 = s["per_class"]["curve2"]
    assert (c2["precision"], c2["recall"], c2["f1"]) == (0.0, 0.0, 0.0)
    assert math.isnan(s["per_class"]["curve1"]["f1"])
    # everything empty
    s = summarize(np.zeros((3, 3), int))
    assert math.isnan(s["macro_all"]["f1"]) and math.isnan(s["pixel_accuracy"])


def test_scores_from_counts_arrays_and_scalars():
    out = scores_from_counts([5, 0, 0], [5, 0, 3], [0, 0, 0])
    assert out["precision"][0] == 0.5 and out["recall"][0] == 1.0
    assert np.isnan(out["f1"][1])
    assert out["recall"][2] == 0.0 and out["iou"][2] == 0.0
    one = scores_from_counts(1, 1, 2)
    assert float(one["f1"]) == pytest.approx(2 / 5)


def test_matches_brute_force_count_and_chunking(rng, monkeypatch):
    truth = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(37, 53))
    pred = rng.integers(0, 3, size=(37, 53)).astype(np.uint8)
    brute = np.zeros((3, 3), np.int64)
    keep = truth != 255
    np.add.at(brute, (truth[keep].astype(int), pred[keep].astype(int)), 1)
    assert np.array_equal(ConfusionMatrix().update(truth, pred).matrix, brute)
    monkeypatch.setattr(metrics, "_CHUNK", 7)  # many passes, some all-ignored
    assert np.array_equal(ConfusionMatrix().update(truth, pred).matrix, brute)


def test_merge_reset_and_round_trip():
    a = ConfusionMatrix().update(TRUTH, PRED)
    b = ConfusionMatrix().update(TRUTH[:5], PRED[:5])
    both = ConfusionMatrix().update(TRUTH, PRED).update(TRUTH[:5], PRED[:5])
    assert (a + b) == both
    assert a.copy().merge(b) == both
    assert a.matrix.tolist() == EXPECTED.tolist()  # + does not change a
    d = both.to_dict()
    assert d["num_classes"] == 3 and d["ignore_index"] == 255
    assert ConfusionMatrix.from_dict(d) == both
    assert both.reset().total == 0
    with pytest.raises(ValueError):
        a.merge(np.zeros((2, 2)))


def test_bad_labels_and_shapes_raise():
    with pytest.raises(ValueError, match="prediction holds label 3"):
        ConfusionMatrix().update(np.zeros(3, np.uint8), np.array([0, 1, 3], np.uint8))
    with pytest.raises(ValueError, match="truth holds label 7"):
        ConfusionMatrix().update(np.array([0, 7, 1]), np.zeros(3, int))
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix().update(np.zeros((2, 3)), np.zeros((3, 2)))


def _line(shape, col, cls=1):
    out = np.zeros(shape, np.uint8)
    out[:, col] = cls
    return out


@pytest.mark.parametrize("shift, expected_f1", [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.0), (5, 0.0)])
def test_tolerant_f1_forgives_small_shifts_only(shift, expected_f1):
    truth = _line((40, 40), 10)
    pred = _line((40, 40), 10 + shift)
    s = tolerant_scores(truth, pred, 1, tol=2)
    assert s["f1"] == pytest.approx(expected_f1)
    assert s["precision"] == pytest.approx(expected_f1) and s["recall"] == pytest.approx(expected_f1)
    # the strict pixel score does not forgive the 1-px shift
    if shift == 1:
        assert summarize(ConfusionMatrix().update(truth, pred))["per_class"]["curve1"]["f1"] == 0.0


def test_tolerance_is_a_euclidean_disk():
    truth = np.zeros((10, 10), np.uint8)
    truth[4, 4] = 2
    near = np.zeros_like(truth)
    near[5, 5] = 2  # distance sqrt(2) <= 2
    far = np.zeros_like(truth)
    far[6, 6] = 2  # distance 2.83 > 2
    assert tolerant_scores(truth, near, 2)["f1"] == 1.0
    assert tolerant_scores(truth, far, 2)["f1"] == 0.0
    assert tolerant_scores(truth, far, 2, tol=3)["f1"] == 1.0
    # other classes are not matched
    assert tolerant_scores(truth, np.where(near > 0, 1, 0), 2)["recall"] == 0.0


def test_tolerant_recall_and_precision_separately():
    truth = _line((40, 40), 10)
    pred = np.zeros_like(truth)
    pred[:20, 11] = 1          # half the line, 1 px off
    pred[:, 30] = 1            # and a spurious line far away
    s = tolerant_scores(truth, pred, 1)
    assert s["recall"] == pytest.approx(21 / 40)  # row 20 is within 1 px diagonally of row 19
    assert s["precision"] == pytest.approx(20 / 60)
    assert (s["truth"], s["pred"], s["matched_pred"]) == (40, 60, 20)


def test_tolerant_excludes_ignored_pixels():
    truth = _line((30, 30), 5)
    truth[:, 20] = 255         # ignored region
    pred = truth.copy()
    pred[:, 20] = 1            # predicting curve1 inside the ignored region is no false positive
    s = tolerant_scores(truth, pred, 1)
    assert s["pred"] == 30 and s["precision"] == 1.0
    # nothing of the class anywhere -> NaN, not 0 or 1
    assert math.isnan(tolerant_scores(np.zeros((5, 5)), np.zeros((5, 5)), 1)["f1"])


def test_error_map_codes():
    truth = np.array([[0, 0, 1, 1, 2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 0, 2, 1, 2, 2]], np.uint8)
    emap = error_map(truth, pred)
    assert emap.dtype == np.uint8
    assert emap.tolist() == [[0, 2, 0, 1, 0, 3, 255, 3]]
    assert error_counts(emap) == {"correct": 3, "missed": 1, "extra": 1, "wrong_curve": 2, "ignored": 1}


def test_conflict_counts():
    conflict = np.array([[0, 0, 0, 1], [2, 2, 0, 0]], np.uint8)
    c = conflict_counts(conflict)
    assert (c["agreed"], c["conflict"], c["gap"], c["pixels"]) == (5, 1, 2, 8)
    assert c["conflict_share"] == pytest.approx(1 / 8) and c["gap_share"] == pytest.approx(2 / 8)
    where = np.array([[0, 0, 0, 1], [1, 0, 0, 0]], bool)
    assert conflict_counts(conflict, where=where)["gap_share"] == 0.5
    assert math.isnan(conflict_counts(conflict, where=np.zeros_like(where))["conflict_share"])
    with pytest.raises(ValueError):
        conflict_counts(np.array([0, 3]))


def test_module_does_not_import_torch():
    code = "import sys, veer.metrics, veer.stitch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bootstrap_interval_over_logs():
    """The F1 interval over resampled logs: seeded, around the pooled figure, zero-wide for alike logs."""
    from veer.metrics import bootstrap_f1

    rng = np.random.default_rng(3)
    logs = []
    for _ in range(12):
        tp1, tp2 = rng.integers(50, 100, 2)
        logs.append([[10_000, rng.integers(0, 30), rng.integers(0, 30)],
                     [rng.integers(0, 30), tp1, rng.integers(0, 20)],
                     [rng.integers(0, 30), rng.integers(0, 40), tp2]])
    logs = np.array(logs, np.int64)
    a = bootstrap_f1(logs, draws=500, seed=1)
    assert a == bootstrap_f1(logs, draws=500, seed=1)                # the same logs, the same interval
    pooled = summarize(logs.sum(axis=0))
    for name in ("background", "curve1", "curve2"):
        lo, hi = a["per_class"][name]
        assert lo <= pooled["per_class"][name]["f1"] <= hi and lo < hi
    lo, hi = a["macro_all"]
    assert lo < pooled["macro_all"]["f1"] < hi and hi - lo < 0.2
    assert a["logs"] == 12 and a["draws"] == 500 and a["level"] == 0.95
    wider = bootstrap_f1(logs, draws=500, seed=1, level=0.99)["macro_all"]
    assert wider[0] <= lo and wider[1] >= hi

    same = bootstrap_f1(np.repeat(logs[:1], 5, axis=0), draws=200)
    one = summarize(logs[0])
    assert same["macro_all"] == pytest.approx([one["macro_all"]["f1"]] * 2)
    assert bootstrap_f1(logs[:1]) is None                            # one log: nothing to resample
    no_curve2 = logs.copy()
    no_curve2[:, 2, :] = 0
    no_curve2[:, :, 2] = 0
    b = bootstrap_f1(no_curve2, draws=100)
    assert all(math.isnan(v) for v in b["per_class"]["curve2"])     # absent in every log: no interval
    assert np.isfinite(b["macro_all"]).all()                         # the mean skips it, as summarize does
    with pytest.raises(ValueError):
        bootstrap_f1(np.zeros((3, 3)))
    with pytest.raises(ValueError):
        bootstrap_f1(logs, level=1.5)


def test_bootstrap_share_over_logs():
    from veer.metrics import bootstrap_share

    hits, totals = [95, 80, 99, 90, 0], [100, 100, 100, 100, 0]          # the last log has no rows
    lo, hi = bootstrap_share(hits, totals, draws=1000)
    assert lo < sum(hits) / sum(totals) < hi and 0.8 <= lo and hi <= 0.99
    assert bootstrap_share(hits, totals, draws=1000) == [lo, hi]         # seeded
    assert bootstrap_share([9, 9, 9], [10, 10, 10]) == pytest.approx([0.9, 0.9])
    assert bootstrap_share([1], [2]) is None and bootstrap_share([0, 0], [0, 0]) is None
    with pytest.raises(ValueError):
        bootstrap_share([1, 2], [3])
