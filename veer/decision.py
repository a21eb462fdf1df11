"""The first fork of a pixel-level task: semantic or instance segmentation.

Semantic segmentation gives every pixel one class from a set fixed before
training; it has no notion of separate objects inside a class. Instance
segmentation finds each object and gives it its own mask, even when many
objects share a kind. Which one a task needs is a question about the data, not
about accuracy:

* Is the class set known ahead of time?
* Is it small and fixed (the same few classes on every image)?
* Are the objects *named* (each one is a different, known thing: "curve1",
  "curve2"), or anonymous, countable duplicates of one kind (grains, vugs)?
* How many distinct objects must be told apart in one image?

:func:`decide` turns the answers into a :class:`Verdict`. It adds up evidence
on one scale (negative: semantic, positive: instance) so that it can also say
how close the call is and at which object count the fork tips for the given
answers. :data:`SPLIT_POINT` and the weights are a rule of thumb chosen to
dramatise the decision, not a threshold learned from data.

The module also draws the lever's live demonstration: ``N`` same-style curves
on one image (:func:`draw_traces`), what a semantic labelling of it looks like
(one class: every curve merged into one "curve" region) and what separating it
into connected components finds (:func:`instance_demo`), so that the
consequence of the lever is visible on pixels: where curves touch or cross,
pixel connectivity alone merges distinct objects, which is the job an instance
method exists to do properly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SEMANTIC = "semantic"
INSTANCE = "instance"

#: Rule of thumb: with a small, fixed, named class set, the fork tips to
#: instance once about this many distinct objects must be told apart in one
#: image. Up to a dozen named things can still be a fixed label set; a few
#: dozen is a population, not a vocabulary. Not a learned threshold.
SPLIT_POINT = 16

#: Evidence each "no" answer adds towards instance, in the same units as the
#: count term (log2 of the object count over :data:`SPLIT_POINT`). A "no" to
#: "known class set" or "named objects" moves the split point down by a factor
#: of 2**weight, so two anonymous look-alike objects already lean to instance.
WEIGHT_UNKNOWN_CLASS_SET = 3.5
WEIGHT_NOT_SMALL_AND_FIXED = 1.5
WEIGHT_ANONYMOUS = 3.5

#: Marks on the dashboard's lever (a log has 2 named curves).
LEVER_MARKS = (2, 12, 20, 30, 40)

#: |score| at or above which a call is "clear"; below CLOSE it is "a close call".
CLEAR = 1.5
CLOSE = 0.5

#: What each branch costs, for the fork's captions.
COSTS = {
    SEMANTIC: (
        "One model, one pass, one label per pixel from a fixed set. "
        "Classes are decided against each other, so no pixel is claimed twice or left unclaimed. "
        "Cost: it cannot tell two things of the same class apart; adding a class means retraining."
    ),
    INSTANCE: (
        "Find each object, then mask it (or one binary mask per thing, stitched afterwards). "
        "Handles an open, countable population of look-alike objects. "
        "Cost: detection machinery, a count that can be wrong, and masks with no shared notion of "
        "the scene: two can claim one pixel, or all can go quiet in a gap."
    ),
}


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`decide`."""

    branch: str                 # SEMANTIC or INSTANCE
    score: float                # < 0 semantic, >= 0 instance (log2 units)
    margin: float               # |score|: distance from the split
    confidence: str             # "clear", "leaning" or "close call"
    split_at: float             # object count at which these answers tip to instance
    reasons: list[str] = field(default_factory=list)

    @property
    def is_semantic(self) -> bool:
        return self.branch == SEMANTIC

    @property
    def headline(self) -> str:
        """One line for the page, e.g. 'SEMANTIC (clear)'."""
        return f"{self.branch.upper()} ({self.confidence})"


def _bonus(class_set_known: bool, small_and_fixed: bool, named: bool) -> float:
    bonus = 0.0
    if not class_set_known:
        bonus += WEIGHT_UNKNOWN_CLASS_SET
    if not small_and_fixed:
        bonus += WEIGHT_NOT_SMALL_AND_FIXED
    if not named:
        bonus += WEIGHT_ANONYMOUS
    return bonus


def split_point(class_set_known: bool = True, small_and_fixed: bool = True,
                named: bool = True) -> float:
    """The object count at which :func:`decide` tips to instance for these answers.

    With every answer "yes" it is :data:`SPLIT_POINT`; each "no" divides it by
    ``2 ** weight``. Values below 1 mean "instance even for a single object".
    """
    return SPLIT_POINT * 2.0 ** (-_bonus(class_set_known, small_and_fixed, named))


def decide(n_objects: int, class_set_known: bool = True, small_and_fixed: bool = True,
           named: bool = True) -> Verdict:
    """Semantic or instance for a task with ``n_objects`` distinct objects per image.

    ``n_objects`` is how many distinct things must be told apart in one image
    (a well log: 2 curves). The three flags are the answers to the module's
    questions. Returns a :class:`Verdict` with the branch, a signed score, its
    margin, a confidence word, the count at which these answers tip the fork,
    and the reasons in plain words.
    """
    n = int(n_objects)
    if n < 1:
        raise ValueError(f"n_objects must be at least 1, got {n_objects!r}")
    count_term = math.log2(n / SPLIT_POINT)
    score = count_term + _bonus(class_set_known, small_and_fixed, named)
    branch = INSTANCE if score >= 0 else SEMANTIC
    margin = abs(score)
    confidence = "clear" if margin >= CLEAR else ("leaning" if margin >= CLOSE else "close call")
    split = split_point(class_set_known, small_and_fixed, named)

    reasons: list[str] = []
    if class_set_known:
        reasons.append("The class set is known before a pixel is seen: a semantic label set can be fixed.")
    else:
        reasons.append("The classes are not known ahead of time: a fixed label set cannot be written down, "
                       "which favours finding objects as they come (instance).")
    if small_and_fixed:
        reasons.append("The set is small and the same on every image: one output channel per class is cheap.")
    else:
        reasons.append("The set is large or changes between images: one channel per class stops scaling.")
    if named:
        reasons.append("Each object is a different, named thing, so its class already tells it apart.")
    else:
        reasons.append("The objects are anonymous look-alikes: one semantic class would merge them, "
                       "and only an instance view can count and separate them.")
    if n < split:
        reasons.append(f"{n} object{'s' if n != 1 else ''} to tell apart is below the split "
                       f"for these answers (about {split:.3g}).")
    else:
        reasons.append(f"{n} objects to tell apart is at or above the split "
                       f"for these answers (about {split:.3g}).")
    return Verdict(branch=branch, score=score, margin=margin, confidence=confidence,
                   split_at=split, reasons=reasons)


# ---------------------------------------------------------------------------
# The live demonstration: N same-style traces, semantic vs instance views.
# ---------------------------------------------------------------------------

@dataclass
class InstanceDemo:
    """Pixels for the lever's demonstration."""

    image: np.ndarray          # uint8 (H, W): black traces on white paper
    objects: np.ndarray        # int32 (H, W): 0 paper, k = the k-th drawn trace (last drawn wins)
    semantic: np.ndarray       # uint8 (H, W): 1 where any trace is (one class: "curve")
    components: np.ndarray     # int32 (H, W): 0 paper, k = k-th connected component of the semantic mask
    n_drawn: int               # traces drawn
    n_found: int               # connected components in the semantic mask
    n_merged_components: int   # components that hold two or more traces
    n_merged_objects: int      # traces that share their component with another trace

    @property
    def summary(self) -> str:
        if self.n_merged_components == 0:
            return (f"{self.n_drawn} traces drawn, {self.n_found} component{'s' if self.n_found != 1 else ''} found: "
                    "every trace stands alone, so connectivity happens to separate them.")
        return (f"{self.n_drawn} traces drawn, {self.n_found} component{'s' if self.n_found != 1 else ''} found: "
                f"{self.n_merged_objects} traces are fused into {self.n_merged_components} "
                f"component{'s' if self.n_merged_components != 1 else ''} where they touch or cross.")


def draw_traces(n: int, *, height: int = 320, width: int = 320, seed: int = 0,
                line_px: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` same-style wandering traces running top to bottom.

    Each trace is a smooth random walk in x (like a log curve against depth),
    ``line_px`` pixels wide, with its own start column spread over the width.
    Returns ``(image, objects)``: a uint8 image (0 ink, 255 paper) and an int32
    map of which trace drew each pixel (0 = paper; at crossings the trace drawn
    last wins). Deterministic for a given ``seed``; a few ms for ``n <= 40``.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    rows = np.arange(height, dtype=np.float64)
    cols = np.arange(width, dtype=np.float64)[None, :]
    objects = np.zeros((height, width), np.int32)
    margin = 0.06 * width
    starts = np.linspace(margin, width - margin, n) if n > 1 else np.array([width / 2.0])
    starts = starts + rng.normal(0.0, 0.25 * (width - 2 * margin) / max(n, 1), n)
    half = line_px / 2.0
    for k in range(n):
        # a sum of a few smooth sinusoids: wanders like a log curve, never jumps
        x = np.full(height, starts[k])
        for _ in range(3):
            amp = rng.uniform(0.01, 0.035) * width
            period = rng.uniform(0.35, 1.2) * height
            phase = rng.uniform(0, 2 * np.pi)
            x += amp * np.sin(2 * np.pi * rows / period + phase)
        x = np.clip(x, half, width - 1 - half)
        # per row, ink spans from the previous row's x to this row's x (no gaps on steep parts)
        prev = np.concatenate([x[:1], x[:-1]])
        lo = np.minimum(prev, x)[:, None] - half
        hi = np.maximum(prev, x)[:, None] + half
        objects[(cols >= lo) & (cols <= hi)] = k + 1
    image = np.where(objects > 0, 0, 255).astype(np.uint8)
    return image, objects


def instance_demo(n: int, *, height: int = 320, width: int = 320, seed: int = 0,
                  line_px: int = 2) -> InstanceDemo:
    """Draw ``n`` traces and compare the semantic view with connected components."""
    from skimage.measure import label

    image, objects = draw_traces(n, height=height, width=width, seed=seed, line_px=line_px)
    semantic = (objects > 0).astype(np.uint8)
    components, n_found = label(semantic, connectivity=2, return_num=True)
    components = components.astype(np.int32)
    # which traces ended up in which component (a trace split across components counts once each)
    ink = objects > 0
    pairs = np.unique(np.stack([components[ink], objects[ink]]), axis=1)
    comp_ids, per_comp = np.unique(pairs[0], return_counts=True)
    merged_comps = comp_ids[per_comp > 1]
    merged_objects = np.unique(pairs[1][np.isin(pairs[0], merged_comps)])
    return InstanceDemo(image=image, objects=objects, semantic=semantic, components=components,
                        n_drawn=int(n), n_found=int(n_found),
                        n_merged_components=int(merged_comps.size),
                        n_merged_objects=int(merged_objects.size))
