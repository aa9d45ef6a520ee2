"""The alarm corpus's arms: the learning-rate arms scale exactly the optimizer's
rates; the removal arms remove exactly the device they name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.studies import alarm_corpus


def _rates(model: alarm_corpus.SSLMethod) -> tuple[list[float], list[float]]:
    optimisers, schedulers = model.configure_optimizers()
    groups = [g["lr"] for o in optimisers for g in o.param_groups]
    bases = [lr for s in schedulers for lr in s.base_lrs]
    return groups, bases


# One scale per method: the 30x arms take the same code path.
@pytest.mark.parametrize("arm", alarm_corpus.LR_ARMS[:5], ids=lambda a: a.arm)
def test_lr_arms_scale_every_rate_of_the_intact_method(arm: alarm_corpus.Arm) -> None:
    intact = alarm_corpus.Arm(arm.method, arm.method, None, arm.ema)
    groups, bases = _rates(alarm_corpus.build(arm, 0, 10, 128))
    groups0, bases0 = _rates(alarm_corpus.build(intact, 0, 10, 128))
    assert len(groups) == len(groups0) > 0
    assert groups == pytest.approx([arm.lr_scale * lr for lr in groups0])
    assert bases == pytest.approx([arm.lr_scale * lr for lr in bases0])
    assert arm.lr_scale == 10.0


def test_lr_arms_have_their_own_run_ids() -> None:
    ids = {a.run_id(300, 128, 0) for a in alarm_corpus.LR_ARMS}
    assert len(ids) == len(alarm_corpus.LR_ARMS)
    assert "byol-lr10_b128_s300_seed0" in ids
    assert not ids & {a.run_id(300, 128, 0) for a in alarm_corpus.ARMS}


def _removal(name: str) -> alarm_corpus.Arm:
    return next(a for a in alarm_corpus.REMOVAL_ARMS if a.arm == name)


def test_removal_arms_have_their_own_run_ids() -> None:
    ids = {a.run_id(300, 128, 0) for a in alarm_corpus.REMOVAL_ARMS}
    assert len(ids) == len(alarm_corpus.REMOVAL_ARMS)
    others = alarm_corpus.ARMS + alarm_corpus.LR_ARMS
    assert not ids & {a.run_id(300, 128, 0) for a in others}


@pytest.mark.parametrize(
    ("name", "target_has_grad"),
    [("simsiam-nopred", False), ("simsiam-nosg-nopred", True)],
)
def test_simsiam_without_predictor_compares_projections(
    name: str, target_has_grad: bool
) -> None:
    model = alarm_corpus.build(_removal(name), 0, 10, 128)
    assert isinstance(model.prediction_head, nn.Identity)
    assert not isinstance(model.projection_head, nn.Identity)
    model.train()
    z, p = model(torch.rand(4, 3, 28, 28))
    # The "prediction" is the projection itself; only the stop-gradient differs.
    assert torch.equal(z, p)
    assert p.requires_grad
    assert z.requires_grad is target_has_grad


def test_arms_without_heads_feed_the_backbone_to_the_loss() -> None:
    x = torch.rand(4, 3, 28, 28)
    simsiam = alarm_corpus.build(_removal("simsiam-noheads"), 0, 10, 128)
    z, p = simsiam(x)
    assert torch.equal(p, simsiam.features(x))
    assert not z.requires_grad
    nosg = alarm_corpus.build(_removal("simsiam-nosg-noheads"), 0, 10, 128)
    z, p = nosg(x)
    assert torch.equal(z, nosg.features(x)) and z.requires_grad
    swav = alarm_corpus.build(_removal("swav-nosinkhorn-noproj"), 0, 10, 128)
    assert isinstance(swav.projection_head, nn.Identity)
    assert swav.criterion.use_sinkhorn is False
    assert swav(x).shape == (4, 512)


def test_no_projector_without_no_predictor_is_refused() -> None:
    arm = alarm_corpus.Arm("bad", "simsiam", None, no_projector=True)
    with pytest.raises(ValueError, match="no_projector needs no_predictor"):
        alarm_corpus.build(arm, 0, 10, 128)
    arm = alarm_corpus.Arm("bad", "byol", None, 0.99, no_stop_gradient=True)
    with pytest.raises(ValueError, match="SimSiam only"):
        alarm_corpus.build(arm, 0, 10, 128)
    # BYOL's momentum update needs parameters in its projection head.
    arm = alarm_corpus.Arm(
        "bad", "byol", None, 0.0, no_predictor=True, no_projector=True
    )
    with pytest.raises(ValueError, match="SimSiam and SwAV"):
        alarm_corpus.build(arm, 0, 10, 128)


def test_removal_lr_arm_scales_the_rate_of_the_removed_arm() -> None:
    arm = _removal("simsiam-nosg-lr10")
    base = alarm_corpus.Arm("x", "simsiam", None, no_stop_gradient=True)
    groups, _ = _rates(alarm_corpus.build(arm, 0, 10, 128))
    groups0, _ = _rates(alarm_corpus.build(base, 0, 10, 128))
    assert groups == pytest.approx([10.0 * lr for lr in groups0])
    model = alarm_corpus.build(arm, 0, 10, 128)
    assert isinstance(model, alarm_corpus.SimSiamWithoutStopGradient)


def test_a_stream_longer_than_the_dataset_draws_one_shuffle_per_pass() -> None:
    order = alarm_corpus.stream_order(10, 25, seed=3)
    assert order.shape == (25,)
    first = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    # The first pass is the seed's permutation (a one-pass stream is unchanged) ...
    assert torch.equal(order[:10], first)
    assert torch.equal(alarm_corpus.stream_order(10, 7, seed=3), first[:7])
    # ... and every pass is a permutation of its own: no row is left unwritten.
    for start in (0, 10):
        assert sorted(order[start : start + 10].tolist()) == list(range(10))
    assert (
        set(order[20:].tolist()) <= set(range(10))
        and len(set(order[20:].tolist())) == 5
    )
    assert not torch.equal(order[10:20], first)
