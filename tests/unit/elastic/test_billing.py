"""Billing equals a hand computation on a small known trace, per second and per hour."""

from __future__ import annotations

import pytest

from zhuge.jobs.elastic.billing import UpInterval, billed_seconds, interval_cost, pool_cost
from zhuge.jobs.elastic.pools import Billing, PoolsConfig, PoolSpec


def _pool(granularity: str, minimum_s: float, spot: float = 0.0) -> PoolSpec:
    return PoolsConfig.parse(
        {
            "pools": [
                {
                    "name": "cpu",
                    "resources": {"CPU": 4},
                    "max": 4,
                    "billing": {"granularity": granularity, "minimum_s": minimum_s},
                    "price_per_hour": {"on_demand": 3.6, "spot": 1.2},
                    "spot": spot,
                }
            ]
        }
    ).pools[0]


# Three workers: a (0-90 s), b (100-130.2 s), c (0-3700 s) on spot.
TRACE = [
    UpInterval("a", 0.0, 90.0),
    UpInterval("b", 100.0, 130.2),
    UpInterval("c", 0.0, 3700.0, spot=True),
]


def test_per_second_billing_rounds_up_to_the_second_with_a_minimum() -> None:
    pool = _pool("second", 60, spot=0.5)
    # a: 90 s; b: 30.2 s → 31 s, under the 60 s minimum → 60 s; c: 3700 s on spot
    # on demand $3.6/h = $0.001/s, spot $1.2/h
    expected = 90 * 0.001 + 60 * 0.001 + 3700 * 1.2 / 3600
    report = pool_cost(pool, TRACE, used_worker_s=1925.0)
    assert report.cost == pytest.approx(expected)
    assert report.billed_s == pytest.approx(90 + 60 + 3700)
    assert report.up_s == pytest.approx(90 + 30.2 + 3700)
    assert report.on_demand_cost == pytest.approx((90 + 60 + 3700) * 0.001)
    # all on spot: (90 + 60 + 3700) s at $1.2/h
    assert report.spot_would_save == pytest.approx(expected - 3850 * 1.2 / 3600)
    # used 1925 of 3850 billed worker-seconds: half the bill was idle
    assert report.idle_cost == pytest.approx(expected / 2)


def test_per_hour_billing_charges_every_started_hour() -> None:
    pool = _pool("hour", 60)
    # a: 1 h, b: 1 h, c: 3700 s → 2 h (at spot: the pool's spot fraction is 0 but the
    # interval says it ran on spot)
    expected = 3.6 + 3.6 + 2 * 1.2
    report = pool_cost(pool, TRACE, used_worker_s=0.0)
    assert report.cost == pytest.approx(expected)
    assert report.billed_s == 4 * 3600
    assert report.idle_cost == pytest.approx(expected)  # nothing ran: all idle
    assert report.on_demand_cost == pytest.approx(4 * 3.6)


@pytest.mark.parametrize(
    ("seconds", "granularity", "minimum", "billed"),
    [
        (0.0, "second", 0, 0),
        (0.4, "second", 0, 1),
        (59.0, "second", 60, 60),
        (61.5, "second", 60, 62),
        (3600.0, "hour", 0, 3600),
        (3600.5, "hour", 0, 7200),
        (10.0, "hour", 0, 3600),
        (10.0, "hour", 7200, 7200),
    ],
)
def test_billed_seconds(seconds, granularity, minimum, billed) -> None:
    assert billed_seconds(seconds, Billing(granularity=granularity, minimum_s=minimum)) == billed


def test_no_spot_price_means_no_spot_saving() -> None:
    pool = PoolsConfig.parse(
        {"pools": [{"name": "p", "resources": {"CPU": 1}, "price_per_hour": {"on_demand": 1}}]}
    ).pools[0]
    report = pool_cost(pool, [UpInterval("w", 0, 3600, spot=True)], used_worker_s=3600)
    assert report.spot_would_save is None
    assert report.cost == pytest.approx(1.0)  # no spot price: billed on demand
    assert report.idle_cost == 0
    assert interval_cost(UpInterval("w", 0, 1800), pool) == pytest.approx(0.5)
