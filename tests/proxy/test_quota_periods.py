"""Quota periods (DESIGN.md §8): DAY, WEEK from ``offset`` (0 = Sunday), MONTH from day
``offset + 1``, all at 00:00 UTC."""

from __future__ import annotations

import datetime

import pytest

from propylon_config import model
from propylon_proxy import quota_periods


def _at(*parts: int) -> float:
    return datetime.datetime(*parts, tzinfo=datetime.UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "offset", "now", "start", "end"),
    [
        (model.QuotaPeriod.DAY, 0, (2026, 3, 11, 23, 59, 59), (2026, 3, 11), (2026, 3, 12)),
        (model.QuotaPeriod.DAY, 0, (2026, 12, 31, 0, 0, 0), (2026, 12, 31), (2027, 1, 1)),
        # 2026-03-11 is a Wednesday (3).
        (model.QuotaPeriod.WEEK, 0, (2026, 3, 11, 12, 0, 0), (2026, 3, 8), (2026, 3, 15)),
        (model.QuotaPeriod.WEEK, 3, (2026, 3, 11, 0, 0, 0), (2026, 3, 11), (2026, 3, 18)),
        (model.QuotaPeriod.WEEK, 4, (2026, 3, 11, 12, 0, 0), (2026, 3, 5), (2026, 3, 12)),
        (model.QuotaPeriod.WEEK, 6, (2026, 3, 11, 12, 0, 0), (2026, 3, 7), (2026, 3, 14)),
        (model.QuotaPeriod.MONTH, 0, (2026, 3, 11, 12, 0, 0), (2026, 3, 1), (2026, 4, 1)),
        (model.QuotaPeriod.MONTH, 14, (2026, 3, 11, 12, 0, 0), (2026, 2, 15), (2026, 3, 15)),
        (model.QuotaPeriod.MONTH, 14, (2026, 3, 15, 0, 0, 0), (2026, 3, 15), (2026, 4, 15)),
        (model.QuotaPeriod.MONTH, 27, (2026, 1, 3, 0, 0, 0), (2025, 12, 28), (2026, 1, 28)),
        (model.QuotaPeriod.MONTH, 27, (2026, 2, 28, 5, 0, 0), (2026, 2, 28), (2026, 3, 28)),
    ],
)
def test_period_bounds(period, offset, now, start, end):
    found = quota_periods.current(model.Quota(limit=1, period=period, offset=offset), _at(*now))
    assert (found.start, found.end) == (_at(*start), _at(*end))


def test_the_cache_recomputes_only_when_time_leaves_the_period():
    cache = quota_periods.PeriodCache(model.Quota(limit=1, period=model.QuotaPeriod.DAY))
    first = cache.at(_at(2026, 3, 11, 1))
    assert cache.at(_at(2026, 3, 11, 23)) is first
    assert cache.at(_at(2026, 3, 12)).start == _at(2026, 3, 12)
