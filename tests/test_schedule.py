"""Cosine annealing with warm restarts: a pure function of the fractional epoch."""

import math

import pytest

from enastool.config import resolve_final_config
from enastool.train.schedule import CosineWarmRestarts, apply_schedule

LR_MAX, LR_MIN = 0.05, 5e-4
BOUNDARIES = [10, 30, 70, 150, 310, 630]


@pytest.fixture
def schedule():
    return CosineWarmRestarts(LR_MAX, LR_MIN, t0=10, tmul=2)


def test_starts_at_lr_max_and_halfway_is_the_midpoint(schedule):
    assert schedule.lr_at(0) == pytest.approx(LR_MAX)
    assert schedule.lr_at(5) == pytest.approx((LR_MAX + LR_MIN) / 2)
    assert schedule.lr_at(20) == pytest.approx((LR_MAX + LR_MIN) / 2)  # middle of [10, 30)


def test_restarts_fall_on_the_authors_epochs(schedule):
    assert schedule.restarts(630) == BOUNDARIES
    for boundary in BOUNDARIES:
        assert schedule.lr_at(boundary) == pytest.approx(LR_MAX)
        # just before a restart the cycle has decayed to lr_min
        assert schedule.lr_at(boundary - 1e-6) == pytest.approx(LR_MIN, abs=1e-9)


def test_cycle_index_is_exact_at_boundaries(schedule):
    assert [schedule.cycle_at(e) for e in (0, 9.999, 10, 29.9, 30, 70, 309.5, 310)] == [
        0, 0, 1, 1, 2, 3, 4, 5,
    ]


def test_rate_decreases_monotonically_within_each_cycle(schedule):
    starts = [0] + BOUNDARIES
    for start, end in zip(starts, starts[1:]):
        points = [start + (end - start) * i / 50 for i in range(50)]
        rates = [schedule.lr_at(p) for p in points]
        assert all(a > b for a, b in zip(rates, rates[1:]))
        assert all(LR_MIN <= r <= LR_MAX for r in rates)


def test_exact_cosine_value_inside_a_cycle(schedule):
    # epoch 40 is 10 epochs into the 40-epoch cycle [30, 70)
    expected = LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * 10 / 40))
    assert schedule.lr_at(40) == pytest.approx(expected)


def test_tmul_one_gives_equal_cycles():
    flat = CosineWarmRestarts(1.0, 0.0, t0=4, tmul=1)
    assert flat.restarts(12) == [4, 8, 12]
    assert flat.lr_at(6) == pytest.approx(0.5)


def test_bad_parameters_and_negative_epochs_are_refused(schedule):
    with pytest.raises(ValueError):
        CosineWarmRestarts(1e-3, 1e-2)
    with pytest.raises(ValueError):
        CosineWarmRestarts(0.1, 0.0, t0=0)
    with pytest.raises(ValueError):
        schedule.lr_at(-1)


class FakeOptimizer:
    def __init__(self):
        self.param_groups = [{"lr": 0.0}, {"lr": 0.0}]


def test_apply_schedule_sets_every_group_from_the_step_alone(schedule):
    steps_per_epoch = 8
    optimizer = FakeOptimizer()
    lr = apply_schedule(optimizer, schedule, 20 * steps_per_epoch, steps_per_epoch)
    assert lr == pytest.approx(schedule.lr_at(20))
    assert [g["lr"] for g in optimizer.param_groups] == [lr, lr]
    # a "resumed" optimizer gets the same rate for the same step: no hidden state
    fresh = FakeOptimizer()
    assert apply_schedule(fresh, schedule, 20 * steps_per_epoch, steps_per_epoch) == lr


def test_schedule_from_config_uses_the_config_values():
    config = resolve_final_config("paper", "micro")
    schedule = CosineWarmRestarts.from_config(config)
    assert (schedule.lr_max, schedule.lr_min, schedule.t0, schedule.tmul) == (0.05, 1e-4, 10, 2)
    assert schedule.lr_at(config.epochs - 1e-6) == pytest.approx(1e-4, abs=1e-9)
