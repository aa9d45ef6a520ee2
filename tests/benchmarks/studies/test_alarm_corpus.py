"""The alarm corpus's arms: the learning-rate arms scale exactly the optimiser's rates."""

from __future__ import annotations

import pytest

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
