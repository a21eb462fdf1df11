"""Training losses. Every loss ignores pixels labelled 255 (IGNORE).

Joint model (3 logits):
    ``ce_dice``   class-weighted cross-entropy + soft Dice (default)
    ``lovasz``    class-weighted cross-entropy + Lovasz-softmax
    ``tversky``   class-weighted cross-entropy + Tversky (recall-leaning)
Binary model (1 logit), whose positive class is one of background/curve1/curve2:
    class-weighted binary cross-entropy + soft Dice over {negative, positive}

All losses take the *three-class* truth mask, so the joint and the binary
models are fed the very same data; :func:`make_loss` turns the mask into the
binary target for a binary model. Pixel weights come from the true class in
both cases (``class_weights[truth]``), so the weighting is the same too.

``train --overlap W`` adds :func:`overlap_loss`: the pixels a truth mask
marks 255 are where the two curves overlap, and a model that says so (some
probability for both curves there) lets the digitiser follow a dashed
curve where it runs hidden under the solid one.

``train --teacher`` adds :func:`distillation_loss` to either: the student's
answer is also pulled towards a teacher's probabilities (KL divergence,
weighted the same way).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from veer.classes import CLASS_NAMES, IGNORE
from veer.errors import ConfigError

DEFAULT_CLASS_WEIGHTS = (1.0, 3.0, 3.0)
JOINT_LOSSES = ("ce_dice", "lovasz", "tversky")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _valid_and_labels(target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    valid = target != ignore_index
    labels = torch.where(valid, target, torch.zeros_like(target)).long()
    return valid, labels


def pixel_weights(target: torch.Tensor, class_weights: Sequence[float] | None,
                  ignore_index: int = IGNORE) -> torch.Tensor:
    """Float weight per pixel: ``class_weights[truth]``, 0 where ignored."""
    valid, labels = _valid_and_labels(target, ignore_index)
    if class_weights is None:
        w = torch.ones_like(labels, dtype=torch.float32)
    else:
        table = torch.as_tensor(class_weights, dtype=torch.float32, device=target.device)
        w = table[labels]
    return w * valid


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                           class_weights: Sequence[float] | None = DEFAULT_CLASS_WEIGHTS,
                           ignore_index: int = IGNORE) -> torch.Tensor:
    """Cross-entropy averaged with per-class weights (like ``F.cross_entropy(weight=...)``)."""
    valid, labels = _valid_and_labels(target, ignore_index)
    w = pixel_weights(target, class_weights, ignore_index)
    nll = F.cross_entropy(logits.float(), labels, reduction="none")
    return (nll * w).sum() / w.sum().clamp_min(1e-6)


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE,
                   smooth: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of the soft Dice coefficient, over the whole batch.

    ``probs`` (N, C, H, W) are probabilities; ``target`` (N, H, W) labels 0..C-1 or ignore.
    """
    valid, labels = _valid_and_labels(target, ignore_index)
    c = probs.shape[1]
    onehot = F.one_hot(labels, c).permute(0, 3, 1, 2).float()
    v = valid.unsqueeze(1).float()
    p = probs.float() * v
    g = onehot * v
    dims = (0, 2, 3)
    inter = (p * g).sum(dims)
    denom = p.sum(dims) + g.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1.0 - dice.mean()


def tversky_loss(probs: torch.Tensor, target: torch.Tensor, alpha: float = 0.3, beta: float = 0.7,
                 ignore_index: int = IGNORE, smooth: float = 1.0) -> torch.Tensor:
    """1 - mean Tversky index; ``beta`` > ``alpha`` punishes missed curve pixels more."""
    valid, labels = _valid_and_labels(target, ignore_index)
    c = probs.shape[1]
    g = F.one_hot(labels, c).permute(0, 3, 1, 2).float() * valid.unsqueeze(1)
    p = probs.float() * valid.unsqueeze(1)
    dims = (0, 2, 3)
    tp = (p * g).sum(dims)
    fp = (p * (1 - g)).sum(dims)
    fn = ((1 - p) * g).sum(dims)
    index = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return 1.0 - index.mean()


def _lovasz_grad(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors."""
    total = sorted_truth.sum()
    intersection = total - sorted_truth.cumsum(0)
    union = total + (1.0 - sorted_truth).cumsum(0)
    jaccard = 1.0 - intersection / union
    if sorted_truth.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(probs: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Lovasz-softmax loss (a convex surrogate of 1 - IoU), averaged over classes present."""
    valid, labels = _valid_and_labels(target, ignore_index)
    c = probs.shape[1]
    p = probs.float().permute(0, 2, 3, 1).reshape(-1, c)[valid.reshape(-1)]
    t = labels.reshape(-1)[valid.reshape(-1)]
    if t.numel() == 0:
        return probs.sum() * 0.0
    losses = []
    for k in range(c):
        fg = (t == k).float()
        if fg.sum() == 0:
            continue
        errors = (fg - p[:, k]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


def overlap_loss(logits: torch.Tensor, target: torch.Tensor, positive: int | None = None,
                 class_weights: Sequence[float] | None = DEFAULT_CLASS_WEIGHTS,
                 ignore_index: int = IGNORE) -> torch.Tensor:
    """Pull the answer on the pixels where the two curves overlap towards both curves.

    The hard losses skip those pixels (truth ``ignore_index``): a pixel of
    both curves has no one right class. Here a 3-logit model's pixel there
    is pulled towards half curve1, half curve2 (cross-entropy to that soft
    target, least at p1 = p2 = 0.5); a binary model's towards its positive
    class when that is a curve (``positive`` 1 or 2) and towards the
    negative one for a background model. Each such pixel weighs the mean of
    the two curves' ``class_weights``, and the sum is divided by the weight
    of the pixels the hard loss counts, so the term adds to the loss on the
    same scale. Zero when a batch has no overlap.
    """
    over = (target == ignore_index).float()
    denom = pixel_weights(target, class_weights, ignore_index).sum().clamp_min(1e-6)
    cw = (1.0, 1.0, 1.0) if class_weights is None else tuple(float(v) for v in class_weights)
    s = logits.float()
    if s.shape[1] == 1:
        if positive is None:
            raise ValueError("a binary model's overlap loss needs its positive class")
        y = torch.full_like(s[:, 0], 1.0 if positive in (1, 2) else 0.0)
        nll = F.binary_cross_entropy_with_logits(s[:, 0], y, reduction="none")
    else:
        logp = F.log_softmax(s, dim=1)
        nll = -0.5 * (logp[:, 1] + logp[:, 2])
    return (nll * over).sum() * (0.5 * (cw[1] + cw[2])) / denom


def joint_loss(logits: torch.Tensor, target: torch.Tensor, *, kind: str = "ce_dice",
               class_weights: Sequence[float] | None = DEFAULT_CLASS_WEIGHTS,
               region_weight: float = 1.0, ignore_index: int = IGNORE,
               overlap: float = 0.0) -> torch.Tensor:
    """Loss of a 3-logit model: weighted cross-entropy + a region loss (Dice/Lovasz/Tversky),
    plus ``overlap`` times :func:`overlap_loss` where that is above 0."""
    ce = weighted_cross_entropy(logits, target, class_weights, ignore_index)
    probs = logits.float().softmax(1)
    if kind == "ce_dice":
        region = soft_dice_loss(probs, target, ignore_index)
    elif kind == "lovasz":
        region = lovasz_softmax(probs, target, ignore_index)
    elif kind == "tversky":
        region = tversky_loss(probs, target, ignore_index=ignore_index)
    else:
        raise ConfigError(f"unknown joint loss {kind!r}; choose {', '.join(JOINT_LOSSES)}")
    out = ce + region_weight * region
    if overlap > 0:
        out = out + overlap * overlap_loss(logits, target, None, class_weights, ignore_index)
    return out


def binary_target(mask: torch.Tensor, positive: int, ignore_index: int = IGNORE) -> torch.Tensor:
    """Three-class mask -> 0/1 mask of ``positive`` (ignore kept as ``ignore_index``)."""
    out = (mask == positive).to(mask.dtype)
    return torch.where(mask == ignore_index, mask, out)


def binary_loss(logits: torch.Tensor, target: torch.Tensor, positive: int, *,
                class_weights: Sequence[float] | None = DEFAULT_CLASS_WEIGHTS,
                region_weight: float = 1.0, ignore_index: int = IGNORE,
                overlap: float = 0.0) -> torch.Tensor:
    """Loss of a 1-logit model whose positive class is ``positive``.

    ``target`` is the three-class mask; pixel weights are ``class_weights`` of
    the true class, as for the joint model. Weighted BCE + soft Dice over the
    two classes {not positive, positive} (so a background model is not judged
    by a Dice that is near 1 whatever it does).
    """
    if logits.dim() == 4:
        logits = logits[:, 0]
    w = pixel_weights(target, class_weights, ignore_index)
    btarget = binary_target(target, positive, ignore_index)
    valid = btarget != ignore_index
    y = torch.where(valid, btarget, torch.zeros_like(btarget)).float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
    bce = (bce * w).sum() / w.sum().clamp_min(1e-6)
    p = torch.sigmoid(logits.float())
    probs = torch.stack([1 - p, p], 1)
    region = soft_dice_loss(probs, btarget, ignore_index)
    out = bce + region_weight * region
    if overlap > 0:
        out = out + overlap * overlap_loss(logits[:, None], target, positive, class_weights, ignore_index)
    return out


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, *,
                      class_weights: Sequence[float] | None = DEFAULT_CLASS_WEIGHTS,
                      ignore_index: int = IGNORE) -> torch.Tensor:
    """How far a student's answer is from a teacher's: KL(teacher || student) per pixel.

    ``logits`` (B, C, H, W) are the student's: C = 3 (softmax) or 1 (sigmoid,
    a binary model); ``teacher`` holds probabilities of the same shape. Pixels
    are weighted as in the hard losses, by ``class_weights`` of the true class
    (0 where the truth is ``ignore_index``), so that the thin curves are not
    drowned by the paper, where the two agree anyway. Zero when the student's
    probabilities equal the teacher's.
    """
    if logits.shape != teacher.shape:
        raise ValueError(f"student {tuple(logits.shape)} and teacher {tuple(teacher.shape)} differ in shape")
    w = pixel_weights(target, class_weights, ignore_index)
    s = logits.float()
    if s.shape[1] == 1:
        # binary: KL of two Bernoullis = BCE(student, soft target) - entropy(teacher)
        t, s = teacher.float()[:, 0].clamp(1e-6, 1 - 1e-6), s[:, 0]
        entropy = -(t * t.log() + (1 - t) * (1 - t).log())
        kl = F.binary_cross_entropy_with_logits(s, t, reduction="none") - entropy
    else:
        t = teacher.float().clamp_min(1e-8)
        kl = (t * (t.log() - F.log_softmax(s, dim=1))).sum(1)
    return (kl * w).sum() / w.sum().clamp_min(1e-6)


def make_loss(task: str, target: str | None = None, kind: str = "ce_dice",
              class_weights: Sequence[float] | None = DEFAULT_CLASS_WEIGHTS,
              region_weight: float = 1.0, overlap: float = 0.0) -> LossFn:
    """``loss(logits, mask3)`` for ``task`` "joint" or "binary" (``target`` a class name);
    ``overlap``: weight of :func:`overlap_loss` (0: the overlap is ignored)."""
    if task == "joint":
        if kind not in JOINT_LOSSES:
            raise ConfigError(f"unknown joint loss {kind!r}; choose {', '.join(JOINT_LOSSES)}")

        def loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return joint_loss(logits, mask, kind=kind, class_weights=class_weights,
                              region_weight=region_weight, overlap=overlap)
        return loss
    if task == "binary":
        if target not in CLASS_NAMES:
            raise ConfigError(f"binary target must be one of {', '.join(CLASS_NAMES)}, got {target!r}")
        positive = CLASS_NAMES.index(target)

        def bloss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return binary_loss(logits, mask, positive, class_weights=class_weights,
                               region_weight=region_weight, overlap=overlap)
        return bloss
    raise ConfigError(f"unknown task {task!r}; choose joint or binary")

