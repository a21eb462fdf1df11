"""Losses: near zero for a perfect prediction, ignore 255, and can be minimised."""

from __future__ import annotations

import pytest
import torch

from veer.losses import (binary_loss, binary_target, distillation_loss, joint_loss, lovasz_softmax,
                         make_loss, overlap_loss, soft_dice_loss, tversky_loss)


def _mask(seed=0, shape=(2, 12, 12)):
    g = torch.Generator().manual_seed(seed)
    m = torch.randint(0, 3, shape, generator=g)
    m[:, 0, :3] = 255
    return m


def _perfect_logits(mask, c=3, scale=30.0):
    labels = torch.where(mask == 255, torch.zeros_like(mask), mask)
    return torch.nn.functional.one_hot(labels, c).permute(0, 3, 1, 2).float() * scale


@pytest.mark.parametrize("kind", ["ce_dice", "lovasz", "tversky"])
def test_joint_losses_zero_for_perfect_prediction(kind):
    mask = _mask()
    perfect = joint_loss(_perfect_logits(mask), mask, kind=kind)
    wrong = joint_loss(_perfect_logits((mask + 1) % 3), mask, kind=kind)
    assert float(perfect) < 0.01
    assert float(wrong) > 1.0


@pytest.mark.parametrize("kind", ["ce_dice", "lovasz", "tversky"])
def test_joint_losses_ignore_255(kind):
    mask = _mask()
    logits = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    base = joint_loss(logits, mask, kind=kind)
    changed = logits.clone()
    changed[:, :, 0, :3] = torch.tensor([-50.0, 50.0, 0.0])[None, :, None]  # only ignored pixels
    assert torch.allclose(joint_loss(changed, mask, kind=kind), base, atol=1e-5)


def test_all_ignored_gives_finite_zero_gradient_loss():
    mask = torch.full((1, 4, 4), 255)
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    for kind in ("ce_dice", "lovasz", "tversky"):
        loss = joint_loss(logits, mask, kind=kind)
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("positive", [0, 1, 2])
def test_binary_loss_perfect_wrong_and_ignore(positive):
    mask = _mask()
    target = binary_target(mask, positive)
    assert set(torch.unique(target).tolist()) <= {0, 1, 255}
    good = torch.where(target == 1, 30.0, -30.0).float()
    assert float(binary_loss(good, mask, positive)) < 0.01
    assert float(binary_loss(-good, mask, positive)) > 1.0
    changed = good.clone()
    changed[:, 0, :3] = -good[:, 0, :3]  # ignored pixels only
    assert torch.allclose(binary_loss(changed, mask, positive), binary_loss(good, mask, positive))


@pytest.mark.parametrize("task,target", [("joint", None), ("binary", "curve1"), ("binary", "background")])
def test_losses_decrease_on_a_toy_batch(task, target):
    torch.manual_seed(0)
    mask = _mask(3, (2, 16, 16))
    x = torch.where(mask == 255, 0, mask).float().unsqueeze(1) / 2  # the class, as the input
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 3 if task == "joint" else 1, 1))
    net[0].weight.data.add_(torch.randn_like(net[0].weight) * 0.5)
    loss_fn = make_loss(task, target)
    opt = torch.optim.Adam(net.parameters(), 0.05)
    first = float(loss_fn(net(x), mask).detach())
    for _ in range(40):
        loss = loss_fn(net(x), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss_fn(net(x), mask).detach()) < first * 0.7


def test_lovasz_and_dice_and_tversky_bounds():
    mask = _mask()
    probs = torch.full((2, 3, 12, 12), 1 / 3)
    for fn in (soft_dice_loss, tversky_loss, lovasz_softmax):
        v = float(fn(probs, mask))
        assert 0.0 < v <= 1.0


def test_make_loss_rejects_bad_options():
    from veer.errors import ConfigError

    with pytest.raises(ConfigError):
        make_loss("binary", "curve3")
    with pytest.raises(ConfigError):
        make_loss("joint", kind="focal")
    with pytest.raises(ConfigError):
        make_loss("panoptic")


@pytest.mark.parametrize("channels", [3, 1])
def test_distillation_is_zero_at_the_teacher_and_pulls_towards_it(channels):
    """KL(teacher || student): zero where the student answers as the teacher does, positive
    elsewhere, blind to ignored pixels, and gradient steps bring the student to the teacher."""
    torch.manual_seed(0)
    mask = _mask(1)
    teacher_logits = torch.randn(2, channels, 12, 12) * 2
    teacher = torch.softmax(teacher_logits, 1) if channels == 3 else torch.sigmoid(teacher_logits)
    assert abs(float(distillation_loss(teacher_logits, teacher, mask))) < 1e-5
    student = torch.zeros(2, channels, 12, 12, requires_grad=True)
    start = float(distillation_loss(student.detach(), teacher, mask))
    assert start > 0.02
    # what the student says on ignored pixels does not count
    other = student.detach().clone()
    other[:, :, 0, :3] = 9.0
    assert float(distillation_loss(other, teacher, mask)) == pytest.approx(start, rel=1e-6)
    opt = torch.optim.Adam([student], lr=0.2)
    for _ in range(100):
        opt.zero_grad()
        distillation_loss(student, teacher, mask).backward()
        opt.step()
    assert float(distillation_loss(student.detach(), teacher, mask)) < 0.05 * start
    with pytest.raises(ValueError, match="shape"):
        distillation_loss(student, teacher[:, :, :6], mask)


def test_overlap_term_teaches_both_curves_where_they_overlap():
    """train --overlap: the pixels marked 255 (the two curves overlap) pull a joint model towards
    half curve1, half curve2 and a binary model towards its class being there (not background);
    off (weight 0) they stay ignored, and a batch with no overlap adds nothing."""
    mask = _mask(2)
    over = mask == 255
    logits = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    assert float(joint_loss(logits, mask, overlap=0.0)) == pytest.approx(float(joint_loss(logits, mask)))
    assert float(overlap_loss(logits, torch.where(over, torch.zeros_like(mask), mask))) == 0.0
    # joint: least where the overlap pixels say both curves, each at one half
    both = logits.clone()
    both[:, :, 0, :3] = torch.tensor([-30.0, 0.0, 0.0])[None, :, None]
    one = logits.clone()
    one[:, :, 0, :3] = torch.tensor([-30.0, 30.0, -30.0])[None, :, None]
    paper = logits.clone()
    paper[:, :, 0, :3] = torch.tensor([30.0, -30.0, -30.0])[None, :, None]
    lb, lo, lp = (float(overlap_loss(v, mask)) for v in (both, one, paper))
    assert lb < lo < lp
    assert float(joint_loss(both, mask, overlap=1.0)) < float(joint_loss(one, mask, overlap=1.0))
    # only the overlap pixels count
    elsewhere = both.clone()
    elsewhere[:, :, 5:, 5:] = 7.0
    assert float(overlap_loss(elsewhere, mask)) == pytest.approx(lb, rel=1e-6)
    # gradient steps on the term alone make curve2 likely there (what the digitiser's shared pixels need)
    student = torch.zeros(2, 3, 12, 12)
    student[:, 1] = 3.0
    student.requires_grad_(True)
    opt = torch.optim.Adam([student], lr=0.2)
    for _ in range(60):
        opt.zero_grad()
        overlap_loss(student, mask).backward()
        opt.step()
    p = torch.softmax(student.detach(), 1)[:, :, 0, :3]
    assert (p[:, 2] > 0.4).all() and (p[:, 1] > 0.4).all()
    # binary: a curve's model should say yes there, the background model no
    yes = torch.where(over, 30.0, 0.0).float()[:, None]
    for positive, good in ((1, yes), (2, yes), (0, -yes)):
        assert float(overlap_loss(good, mask, positive)) < 1e-6 < float(overlap_loss(-good, mask, positive))
        assert float(binary_loss(good[:, 0], mask, positive, overlap=1.0)) < \
            float(binary_loss(-good[:, 0], mask, positive, overlap=1.0))
    with pytest.raises(ValueError, match="positive"):
        overlap_loss(yes, mask)
