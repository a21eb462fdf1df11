"""Segmentation scores: counts first, scores from the counts.

Everything here is plain NumPy (no torch) and works on whole logs of
30 Mpx without large temporaries.

How the scores are defined
--------------------------
A :class:`ConfusionMatrix` counts pixels: rows are the truth class, columns
the predicted class. Truth pixels equal to ``ignore_index`` (255, where the two
curves overlap) are skipped. For each class, from the matrix:

    tp = matrix[c, c]    fp = column c minus tp    fn = row c minus tp

    precision = tp / (tp + fp)     recall = tp / (tp + fn)
    f1        = 2 tp / (2 tp + fp + fn)
    iou       = tp / (tp + fp + fn)

Zero denominators (:func:`scores_from_counts`):

* a class that is in neither the truth nor the prediction (tp = fp = fn = 0)
  gets NaN for all four scores: there is nothing to score. Macro averages
  skip NaN, so such a class does not pull an average up or down;
* otherwise a 0/0 score is 0.0: a class present in the truth but never
  predicted has precision 0, a class predicted where the truth has none has
  recall 0. (F1 and IoU only have a zero denominator in the first case.)

``macro_all`` averages the three classes, background included (the
convention of the source archive); ``macro_curves`` averages curve1 and
curve2 only, the figure that says how well the curves are found.

Tolerant scores (:func:`tolerant_scores`) forgive small misplacements of
thin lines: a predicted pixel counts as right if a truth pixel of the class
lies within ``tol`` px (Euclidean), and a truth pixel counts as found if a
predicted pixel lies within ``tol`` px.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from veer.classes import BACKGROUND, CLASS_NAMES, CURVE_CLASSES, IGNORE, NUM_CLASSES

SCORE_NAMES = ("precision", "recall", "f1", "iou")
_CHUNK = 1 << 22  # pixels per bincount pass: bounds the temporaries on whole logs


# --------------------------------------------------------------------------- counts


class ConfusionMatrix:
    """Pixel counts of (truth class, predicted class), accumulated over images.

    >>> cm = ConfusionMatrix()
    >>> cm.update(truth_mask, predicted_labels)     # any number of times
    >>> cm.matrix                                   # int64 (3, 3), rows truth, cols pred
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int | None = IGNORE):
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self._matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    # -- accumulating
    def update(self, truth: np.ndarray, pred: np.ndarray) -> "ConfusionMatrix":
        """Add the pixels of one (truth, prediction) pair; returns ``self``.

        Both are integer arrays of the same shape. Truth pixels equal to
        ``ignore_index`` are skipped. Any other value outside
        ``0..num_classes-1`` (in either array, where truth is not ignored)
        raises ValueError.
        """
        t = np.asarray(truth)
        p = np.asarray(pred)
        if t.shape != p.shape:
            raise ValueError(f"truth {t.shape} and prediction {p.shape} differ in shape")
        t = t.reshape(-1)
        p = p.reshape(-1)
        n = self.num_classes
        work = np.int64 if n * n > 255 else np.uint8
        for start in range(0, t.size, _CHUNK):
            tc = t[start:start + _CHUNK]
            pc = p[start:start + _CHUNK]
            if self.ignore_index is not None:
                keep = tc != self.ignore_index
                if not keep.all():
                    tc, pc = tc[keep], pc[keep]
            if tc.size == 0:
                continue
            _check_range(tc, n, "truth")
            _check_range(pc, n, "prediction")
            codes = tc.astype(work) * work(n) + pc.astype(work)
            self._matrix += np.bincount(codes, minlength=n * n).reshape(n, n)
        return self

    def merge(self, other: "ConfusionMatrix | np.ndarray") -> "ConfusionMatrix":
        """Add another matrix's counts into this one; returns ``self``."""
        m = other.matrix if isinstance(other, ConfusionMatrix) else np.asarray(other)
        if m.shape != self._matrix.shape:
            raise ValueError(f"cannot merge a {m.shape} matrix into a {self._matrix.shape} one")
        self._matrix += m.astype(np.int64)
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        out = self.copy()
        return out.merge(other)

    def reset(self) -> "ConfusionMatrix":
        self._matrix[:] = 0
        return self

    def copy(self) -> "ConfusionMatrix":
        out = ConfusionMatrix(self.num_classes, self.ignore_index)
        out._matrix = self._matrix.copy()
        return out

    # -- reading
    @property
    def matrix(self) -> np.ndarray:
        """int64 (num_classes, num_classes): rows truth class, columns predicted class."""
        return self._matrix

    @property
    def total(self) -> int:
        return int(self._matrix.sum())

    @property
    def tp(self) -> np.ndarray:
        return np.diag(self._matrix).copy()

    @property
    def fp(self) -> np.ndarray:
        return self._matrix.sum(axis=0) - np.diag(self._matrix)

    @property
    def fn(self) -> np.ndarray:
        return self._matrix.sum(axis=1) - np.diag(self._matrix)

    @property
    def support(self) -> np.ndarray:
        """Truth pixels per class (ignored pixels excluded)."""
        return self._matrix.sum(axis=1)

    def scores(self) -> dict[str, np.ndarray]:
        return scores_from_counts(self.tp, self.fp, self.fn)

    # -- (de)serialising
    def to_dict(self) -> dict:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "matrix": self._matrix.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ConfusionMatrix":
        matrix = np.asarray(data["matrix"], np.int64)
        n = int(data.get("num_classes", matrix.shape[0]))
        if matrix.shape != (n, n):
            raise ValueError(f"matrix of shape {matrix.shape} does not match num_classes={n}")
        out = cls(n, data.get("ignore_index", IGNORE))
        out._matrix = matrix.copy()
        return out

    @classmethod
    def from_matrix(cls, matrix, ignore_index: int | None = IGNORE) -> "ConfusionMatrix":
        m = np.asarray(matrix, np.int64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"a confusion matrix must be square, got shape {m.shape}")
        out = cls(m.shape[0], ignore_index)
        out._matrix = m.copy()
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, ConfusionMatrix) and np.array_equal(self._matrix, other._matrix)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, total={self.total})"


def _check_range(values: np.ndarray, n: int, what: str) -> None:
    if values.size == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{what} holds label {bad}; labels must be 0..{n - 1}"
                         + (" (or the ignore value in truth)" if what == "truth" else ""))


# --------------------------------------------------------------------------- scores


def scores_from_counts(tp, fp, fn) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and IoU from per-class counts (arrays or scalars).

    Returns float64 arrays of the counts' shape. Zero denominators: NaN where
    tp = fp = fn = 0 (the class is in neither truth nor prediction), 0.0 for
    any other 0/0 (see the module docstring).
    """
    tp = np.asarray(tp, np.float64)
    fp = np.asarray(fp, np.float64)
    fn = np.asarray(fn, np.float64)
    absent = (tp + fp + fn) == 0
    out = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
    }
    for key in out:
        out[key] = np.where(absent, np.nan, out[key])
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def nanmean(values) -> float:
    """Mean of the finite values; NaN if there are none (no warning)."""
    arr = np.asarray(values, np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def class_names(num_classes: int) -> tuple[str, ...]:
    if num_classes == NUM_CLASSES:
        return CLASS_NAMES
    return tuple(f"class{i}" for i in range(num_classes))


def summarize(cm_or_matrix, curve_classes=CURVE_CLASSES) -> dict:
    """Per-class and macro scores of a confusion matrix.

    Returns::

        {"per_class": {name: {precision, recall, f1, iou, support, predicted}},
         "macro_all":    {precision, recall, f1, iou},   # all classes, background included
         "macro_curves": {precision, recall, f1, iou},   # curve1 and curve2 only
         "pixel_accuracy": float, "pixels": int}

    Scores are Python floats (NaN where undefined); macro averages skip NaN.
    """
    if isinstance(cm_or_matrix, ConfusionMatrix):
        matrix = cm_or_matrix.matrix
    else:
        matrix = np.asarray(cm_or_matrix, np.int64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"a confusion matrix must be square, got shape {matrix.shape}")
    n = matrix.shape[0]
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    scores = scores_from_counts(tp, fp, fn)
    names = class_names(n)
    per_class = {}
    for i, name in enumerate(names):
        row = {k: float(scores[k][i]) for k in SCORE_NAMES}
        row["support"] = int(matrix[i].sum())
        row["predicted"] = int(matrix[:, i].sum())
        per_class[name] = row
    curves = [c for c in curve_classes if c < n]
    total = int(matrix.sum())
    return {
        "per_class": per_class,
        "macro_all": {k: nanmean(scores[k]) for k in SCORE_NAMES},
        "macro_curves": {k: nanmean(scores[k][curves]) for k in SCORE_NAMES},
        "pixel_accuracy": float(tp.sum() / total) if total else math.nan,
        "pixels": total,
    }


# --------------------------------------------------------------------------- intervals over logs


BOOTSTRAP_DRAWS = 2000


def _row_nanmean(values: np.ndarray) -> np.ndarray:
    """Mean of each row's finite values (NaN for a row with none), without warnings."""
    ok = np.isfinite(values)
    count = ok.sum(axis=1)
    total = np.where(ok, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _resample_counts(logs: int, draws: int, seed: int) -> np.ndarray:
    """(draws, logs): how often each log is drawn in each resample of ``logs`` logs with replacement."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, logs, size=(draws, logs))
    weights = np.zeros((draws, logs), np.int64)
    np.add.at(weights, (np.arange(draws)[:, None], picks), 1)
    return weights


def _middle(values: np.ndarray, level: float) -> list[float]:
    """The middle ``level`` of the finite values, [low, high] ([NaN, NaN] if there are none)."""
    values = values[np.isfinite(values)]
    if not values.size:
        return [math.nan, math.nan]
    return [float(v) for v in np.percentile(values, [(1.0 - level) / 2 * 100, (1.0 + level) / 2 * 100])]


def _check_resampling(draws: int, level: float) -> None:
    if not 0.0 < level < 1.0 or draws < 1:
        raise ValueError("level must lie between 0 and 1 and draws be at least 1")


def bootstrap_share(hits, totals, draws: int = BOOTSTRAP_DRAWS, level: float = 0.95,
                    seed: int = 0) -> list[float] | None:
    """The interval of a pooled share, sum(hits) / sum(totals), over logs drawn with replacement.

    ``hits`` and ``totals`` hold one count per log (e.g. a curve's rows within
    3 px and its true rows). Resamples whose totals are all zero are left
    out. None for fewer than two logs, or when no log has a total.
    """
    h = np.asarray(hits, np.float64).reshape(-1)
    t = np.asarray(totals, np.float64).reshape(-1)
    if h.shape != t.shape:
        raise ValueError(f"one hit count and one total per log, got {h.size} and {t.size}")
    _check_resampling(draws, level)
    if h.size < 2 or not (t > 0).any():
        return None
    w = _resample_counts(h.size, draws, seed)
    num, den = w @ h, w @ t
    return _middle(np.divide(num, den, out=np.full(draws, np.nan), where=den > 0), level)


def bootstrap_f1(matrices, draws: int = BOOTSTRAP_DRAWS, level: float = 0.95, seed: int = 0,
                 curve_classes=CURVE_CLASSES) -> dict | None:
    """How far the F1 scores of a set of logs could move with other logs drawn.

    ``matrices``: one confusion matrix per log, shape (S, n, n). Each of
    ``draws`` resamples draws S logs with replacement, pools their counts and
    scores the pool as :func:`summarize` does; the interval is the middle
    ``level`` of those scores (percentile bootstrap, seeded, so the same logs
    give the same interval). It says how much a figure measured on S logs
    hangs on which logs were drawn, not how good the model is at large.

    Returns ``{"level", "draws", "logs", "per_class": {name: [lo, hi]},
    "macro_all": [lo, hi], "macro_curves": [lo, hi]}`` (F1 only), or None
    for fewer than two logs.
    """
    m = np.asarray(matrices, np.int64)
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
        raise ValueError(f"expected one square confusion matrix per log, got shape {m.shape}")
    _check_resampling(draws, level)
    logs, n = m.shape[0], m.shape[1]
    if logs < 2:
        return None
    pooled = (_resample_counts(logs, draws, seed) @ m.reshape(logs, n * n)).reshape(draws, n, n)
    tp = np.diagonal(pooled, axis1=1, axis2=2)
    f1 = scores_from_counts(tp, pooled.sum(axis=1) - tp, pooled.sum(axis=2) - tp)["f1"]
    curves = [c for c in curve_classes if c < n]
    macro_all, macro_curves = _row_nanmean(f1), _row_nanmean(f1[:, curves])
    return {
        "level": float(level), "draws": int(draws), "logs": int(logs),
        "per_class": {name: _middle(f1[:, i], level) for i, name in enumerate(class_names(n))},
        "macro_all": _middle(macro_all, level),
        "macro_curves": _middle(macro_curves, level),
    }


# --------------------------------------------------------------------------- tolerant scores


def disk_offsets(radius: int) -> np.ndarray:
    """(K, 2) integer (dy, dx) offsets with dy² + dx² <= radius²."""
    r = int(radius)
    if r < 0:
        raise ValueError("tolerance must be >= 0")
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    keep = dy * dy + dx * dx <= r * r
    return np.stack([dy[keep], dx[keep]], axis=1)


def _near(points: np.ndarray, target: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """For each (y, x) in ``points``: is any ``target`` pixel within the offsets?

    Sparse: costs O(len(points) * len(offsets)), not O(image), which matters
    for thin curves on 30 Mpx logs.
    """
    h, w = target.shape
    ys, xs = points[:, 0], points[:, 1]
    hit = np.zeros(len(points), bool)
    for dy, dx in offsets:
        yy = ys + dy
        xx = xs + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w) & ~hit
        if not inside.any():
            continue
        idx = np.flatnonzero(inside)
        hit[idx] = target[yy[idx], xx[idx]]
    return hit


def tolerant_counts(truth: np.ndarray, pred: np.ndarray, cls: int, tol: int = 2,
                    ignore_index: int | None = IGNORE) -> dict[str, int]:
    """The counts behind :func:`tolerant_scores` (add them up across images).

    ``pred``/``truth``: pixels of class ``cls`` (ignored truth pixels excluded);
    ``matched_pred``: predicted pixels with a truth pixel within ``tol`` px;
    ``matched_truth``: truth pixels with a predicted pixel within ``tol`` px.
    """
    t = np.asarray(truth)
    p = np.asarray(pred)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"truth {t.shape} and prediction {p.shape} must be 2-D and the same shape")
    valid = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
    t_mask = (t == cls) & valid
    p_mask = (p == cls) & valid
    offsets = disk_offsets(tol)
    p_pts = np.argwhere(p_mask)
    t_pts = np.argwhere(t_mask)
    return {
        "pred": int(len(p_pts)),
        "truth": int(len(t_pts)),
        "matched_pred": int(_near(p_pts, t_mask, offsets).sum()),
        "matched_truth": int(_near(t_pts, p_mask, offsets).sum()),
    }


def tolerant_from_counts(counts: Mapping[str, int]) -> dict[str, float]:
    """precision / recall / f1 from :func:`tolerant_counts` (same 0/0 rules as above)."""
    n_pred, n_truth = counts["pred"], counts["truth"]
    if n_pred == 0 and n_truth == 0:
        return {"precision": math.nan, "recall": math.nan, "f1": math.nan}
    precision = counts["matched_pred"] / n_pred if n_pred else 0.0
    recall = counts["matched_truth"] / n_truth if n_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def tolerant_scores(truth: np.ndarray, pred: np.ndarray, cls: int, tol: int = 2,
                    ignore_index: int | None = IGNORE) -> dict:
    """Precision, recall and F1 of class ``cls`` with a ``tol``-pixel tolerance.

    A predicted ``cls`` pixel is a true positive if a truth ``cls`` pixel lies
    within ``tol`` px (Euclidean disk); recall is the share of truth ``cls``
    pixels with a predicted ``cls`` pixel within ``tol`` px. Pixels whose
    truth is ``ignore_index`` count on neither side. NaN scores where the class
    is absent from both truth and prediction. The counts are included.
    """
    counts = tolerant_counts(truth, pred, cls, tol, ignore_index)
    out: dict = tolerant_from_counts(counts)
    out.update(counts)
    out["tol_px"] = int(tol)
    return out


# --------------------------------------------------------------------------- maps


ERROR_CORRECT, ERROR_MISSED, ERROR_EXTRA, ERROR_SWAPPED, ERROR_IGNORED = 0, 1, 2, 3, 255
ERROR_NAMES = {
    ERROR_CORRECT: "correct",
    ERROR_MISSED: "missed (curve predicted as background)",
    ERROR_EXTRA: "extra (background predicted as curve)",
    ERROR_SWAPPED: "wrong curve class",
    ERROR_IGNORED: "ignored (curves overlap)",
}


def error_map(truth: np.ndarray, pred: np.ndarray, ignore_index: int = IGNORE) -> np.ndarray:
    """uint8 (H, W): 0 correct, 1 missed, 2 extra, 3 wrong curve class, 255 ignored.

    missed = truth is a curve, prediction background; extra = truth
    background, prediction a curve; wrong curve class = truth curve1 predicted
    curve2 or the reverse; ignored = truth is ``ignore_index``.
    """
    t = np.asarray(truth)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"truth {t.shape} and prediction {p.shape} differ in shape")
    t_bg = t == BACKGROUND
    p_bg = p == BACKGROUND
    t_curve = ~t_bg & (t != ignore_index)
    out = np.zeros(t.shape, np.uint8)
    out[t_curve & p_bg] = ERROR_MISSED
    out[t_bg & ~p_bg] = ERROR_EXTRA
    out[t_curve & ~p_bg & (t != p)] = ERROR_SWAPPED
    out[t == ignore_index] = ERROR_IGNORED
    return out


def error_counts(errors: np.ndarray) -> dict[str, int]:
    """Pixels per kind in an :func:`error_map`."""
    counts = np.bincount(np.asarray(errors, np.uint8).reshape(-1), minlength=256)
    return {"correct": int(counts[ERROR_CORRECT]), "missed": int(counts[ERROR_MISSED]),
            "extra": int(counts[ERROR_EXTRA]), "wrong_curve": int(counts[ERROR_SWAPPED]),
            "ignored": int(counts[ERROR_IGNORED])}


def conflict_counts(conflict: np.ndarray, where: np.ndarray | None = None) -> dict:
    """Counts and shares of a stitching conflict map (see :mod:`veer.stitch`).

    ``conflict`` holds 0 (exactly one binary mask claims the pixel: agreed),
    1 (two or more claim it: conflict) and 2 (none claims it: gap). With
    ``where`` (bool, same shape) only those pixels count. Shares are of the
    pixels counted (NaN if none).
    """
    c = np.asarray(conflict)
    if where is not None:
        where = np.asarray(where, bool)
        if where.shape != c.shape:
            raise ValueError(f"where {where.shape} and conflict {c.shape} differ in shape")
        c = c[where]
    counts = np.bincount(c.reshape(-1).astype(np.uint8, copy=False), minlength=256)
    agreed, conflicts, gaps = (int(counts[i]) for i in (0, 1, 2))
    total = agreed + conflicts + gaps
    if total != c.size:
        raise ValueError("a conflict map holds only 0 (agreed), 1 (conflict) and 2 (gap)")
    return {
        "agreed": agreed, "conflict": conflicts, "gap": gaps, "pixels": total,
        "conflict_share": conflicts / total if total else math.nan,
        "gap_share": gaps / total if total else math.nan,
    }


def add_conflict_counts(a: Mapping | None, b: Mapping) -> dict:
    """Sum two :func:`conflict_counts` results (``a`` may be None)."""
    keys = ("agreed", "conflict", "gap", "pixels")
    out = {k: int(b[k]) + (int(a[k]) if a else 0) for k in keys}
    total = out["pixels"]
    out["conflict_share"] = out["conflict"] / total if total else math.nan
    out["gap_share"] = out["gap"] / total if total else math.nan
    return out
