import math

import pytest
import torch

from xappa.core.diffusion.schedule import (
    LogLinearSchedule,
    LogLogitSchedule,
    RectifiedSchedule,
    create_schedule,
)

F64 = torch.float64
SCHEDULES = [RectifiedSchedule, LogLinearSchedule, LogLogitSchedule]
IDS = [cls.name for cls in SCHEDULES]


def sigma(schedule, t: float) -> float:
    return float(schedule(torch.tensor(t, dtype=F64)))


@pytest.mark.parametrize("cls", [RectifiedSchedule, LogLinearSchedule], ids=IDS[:2])
def test_endpoints_exact(cls):
    schedule = cls(sigma_min=1e-3, sigma_max=1e3)
    assert sigma(schedule, 0.0) == pytest.approx(1e-3, rel=1e-12)
    assert sigma(schedule, 1.0) == pytest.approx(1e3, rel=1e-12)


def test_loglogit_endpoints_as_appa():
    # Appa's log-logit stops short of the range: sigma(0) = sqrt(min max) (eps / (1 - eps))^rho.
    schedule = LogLogitSchedule(sigma_min=1e-3, sigma_max=1e3)
    eps, rho = (1e-6) ** 0.25, 2.0
    expected = (eps / (1 - eps)) ** rho
    assert sigma(schedule, 0.0) == pytest.approx(expected, rel=1e-12)
    assert sigma(schedule, 1.0) == pytest.approx(1 / expected, rel=1e-12)
    assert sigma(schedule, 0.5) == pytest.approx(1.0, rel=1e-12)
    assert 1e-3 < sigma(schedule, 0.0) < 1.1e-3


def test_rectified_midpoint_is_one():
    assert sigma(RectifiedSchedule(), 0.5) == pytest.approx(1.0, rel=1e-12)
    # Away from the ends the rectified schedule is sigma ~ t / (1 - t).
    assert sigma(RectifiedSchedule(), 0.8) == pytest.approx(4.0, rel=1e-2)


def test_loglinear_midpoint_is_geometric_mean():
    schedule = LogLinearSchedule(sigma_min=1e-2, sigma_max=1e2)
    assert sigma(schedule, 0.5) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("cls", SCHEDULES, ids=IDS)
def test_monotone_and_finite(cls):
    s = cls()(torch.linspace(0, 1, 2001, dtype=F64))
    assert torch.isfinite(s).all()
    assert (s > 0).all()
    assert (s.diff() > 0).all()


@pytest.mark.parametrize("cls", SCHEDULES, ids=IDS)
def test_preserves_shape_and_dtype(cls):
    t = torch.rand(3, 4, dtype=torch.float32)
    s = cls()(t)
    assert s.shape == (3, 4)
    assert s.dtype == torch.float32


def test_sigma_tmax():
    assert RectifiedSchedule().sigma_tmax == pytest.approx(1e3, rel=1e-12)
    schedule = create_schedule("rectified", bfloat16=True)
    assert schedule.t_max == 1 - 1 / 256
    assert schedule.sigma_tmax == pytest.approx(sigma(schedule, 1 - 1 / 256), rel=1e-12)
    assert schedule.sigma_tmax < 1e3


@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_create_schedule(name):
    schedule = create_schedule(name, sigma_min=1e-2, sigma_max=1e2)
    assert schedule.name == name
    assert (schedule.sigma_min, schedule.sigma_max, schedule.t_max) == (1e-2, 1e2, 1.0)
    assert repr(schedule).startswith(type(schedule).__name__)


def test_create_schedule_unknown_name():
    with pytest.raises(ValueError, match="schedule name must be one of"):
        create_schedule("cosine")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma_min": 0.0}, "sigma_min < sigma_max"),
        ({"sigma_min": 10.0, "sigma_max": 1.0}, "sigma_min < sigma_max"),
        ({"t_max": 0.0}, "t_max"),
        ({"t_max": 1.5}, "t_max"),
    ],
    ids=["zero-min", "min-above-max", "tmax-zero", "tmax-above-one"],
)
def test_invalid_schedule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RectifiedSchedule(**kwargs)


def test_loglinear_formula():
    schedule = LogLinearSchedule(sigma_min=1e-3, sigma_max=1e3)
    t = 0.3
    assert sigma(schedule, t) == pytest.approx(math.exp(math.log(1e-3) + math.log(1e6) * t))
