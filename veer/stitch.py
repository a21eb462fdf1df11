"""Stitching three separate binary masks into one label map.

The "separate" pipeline runs three independent binary models: background
vs rest, curve1 vs rest, curve2 vs rest. Each gives a sigmoid probability
per pixel, and nothing forces the three to agree. veer combines them with
one rule, used everywhere (segmenter, evaluation, dashboard):

    Stitching rule. Each pixel takes the class whose own model is most
    confident: label = argmax(p_background, p_curve1, p_curve2) of the three
    independent probabilities (an exact tie goes to the lower class index:
    background, then curve1). Separately, each model "claims" a pixel when
    its probability is at least 0.5. The conflict map records how far the
    three agree: 0 = agreed (exactly one model claims the pixel),
    1 = conflict (two or more claim it), 2 = gap (none claims it). The
    conflict map never changes a label; it shows where the stitched result
    rests on a disagreement between the models.

When only thresholded (0/1) masks are available, :func:`stitch_masks` applies
the same rule to them as probabilities of 0 or 1: a pixel claimed by exactly
one mask takes that class; a pixel claimed by several takes the lowest of
their class indices (background before curve1 before curve2); a pixel
claimed by none is background.
"""

from __future__ import annotations

import numpy as np

from veer.classes import BACKGROUND, CURVE1, CURVE2

THRESHOLD = 0.5
AGREED, CONFLICT, GAP = 0, 1, 2
CONFLICT_NAMES = {AGREED: "agreed", CONFLICT: "conflict (claimed by two or more masks)",
                  GAP: "gap (claimed by no mask)"}
ORDER = (BACKGROUND, CURVE1, CURVE2)  # channel order of the probabilities

#: The rule in one paragraph, for the README and the dashboard.
RULE = (
    "Each pixel takes the class whose own binary model is most confident: "
    "label = argmax(p_background, p_curve1, p_curve2) of the three independent "
    "sigmoid probabilities (an exact tie goes to the lower class index). A model "
    "claims a pixel when its probability is at least 0.5; the conflict map marks "
    "0 = agreed (exactly one model claims the pixel), 1 = conflict (two or more "
    "claim it), 2 = gap (none claims it). Conflicts and gaps do not change the label."
)

_BAND_PIXELS = 1 << 22  # pixels per band: bounds temporaries on whole logs


def argmax3(p0, p1, p2):
    """Index of the largest of three same-shaped arrays, the first on ties (as argmax), uint8.

    Works on numpy arrays and torch tensors alike. Two element-wise
    comparisons: several times faster than an argmax over a leading axis of
    3, which walks memory with a stride of a whole plane.
    """
    if isinstance(p0, np.ndarray):
        lab = (p1 > p0).astype(np.uint8)
        lab[p2 > np.maximum(p0, p1)] = 2
        return lab
    import torch

    lab = (p1 > p0).to(torch.uint8)
    return lab.masked_fill_(p2 > torch.maximum(p0, p1), 2)


def stitch(probs: np.ndarray, threshold: float = THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Stitch (3, H, W) independent probabilities into (labels, conflict).

    ``probs[0]``, ``probs[1]``, ``probs[2]`` are the background-vs-rest,
    curve1-vs-rest and curve2-vs-rest probabilities. Returns uint8 (H, W)
    labels (argmax) and uint8 (H, W) conflict codes (see the module
    docstring). Works band by band so whole logs need little extra memory.
    """
    p = np.asarray(probs)
    if p.ndim != 3 or p.shape[0] != 3:
        raise ValueError(f"stitch needs probabilities of shape (3, H, W), got {p.shape}")
    _, h, w = p.shape
    labels = np.empty((h, w), np.uint8)
    conflict = np.empty((h, w), np.uint8)
    rows = max(1, _BAND_PIXELS // max(1, w))
    for r0 in range(0, h, rows):
        band = p[:, r0:r0 + rows]
        labels[r0:r0 + rows] = argmax3(band[0], band[1], band[2])
        conflict[r0:r0 + rows] = conflict_from_claims(band >= threshold)
    return labels, conflict


def conflict_from_claims(claims: np.ndarray) -> np.ndarray:
    """(3, H, W) bool claims -> uint8 conflict codes 0 agreed / 1 conflict / 2 gap."""
    n = np.asarray(claims, bool).sum(axis=0, dtype=np.uint8)
    out = np.full(n.shape, AGREED, np.uint8)
    out[n >= 2] = CONFLICT
    out[n == 0] = GAP
    return out


def stitch_masks(background: np.ndarray, curve1: np.ndarray | None = None,
                 curve2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stitch three binary masks (nonzero = the mask claims the pixel).

    Call as ``stitch_masks(bg, c1, c2)`` or ``stitch_masks(stack)`` with a
    (3, H, W) stack. The rule of :func:`stitch` on 0/1 probabilities: one
    claim -> that class; several -> the lowest class index among them; none
    -> background. Returns uint8 (labels, conflict).
    """
    if curve1 is None and curve2 is None:
        stack = np.asarray(background)
    elif curve1 is None or curve2 is None:
        raise ValueError("give all three masks (background, curve1, curve2) or one (3, H, W) stack")
    else:
        parts = [np.asarray(m) for m in (background, curve1, curve2)]
        if len({m.shape for m in parts}) != 1:
            raise ValueError(f"the three masks differ in shape: {[m.shape for m in parts]}")
        stack = np.stack(parts)
    if stack.ndim != 3 or stack.shape[0] != 3:
        raise ValueError(f"stitch_masks needs three (H, W) masks, got shape {stack.shape}")
    return stitch((stack != 0).astype(np.uint8), threshold=1)
