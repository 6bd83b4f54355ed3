"""Quota periods: where the current DAY, WEEK or MONTH starts and ends, in UTC.

DESIGN.md §8: ``offset`` is the day the period starts: WEEK 0 = Sunday .. 6 = Saturday; MONTH
0 .. 27 = day of month minus one (so every month has that day); DAY only 0. A period starts
at 00:00:00 UTC of that day. Pure functions of the time passed in: the caller's clock is the
runtime's (injected in tests), never read here.
"""

from __future__ import annotations

import dataclasses
import datetime

from propylon_config import model

_DAY = 86400.0


@dataclasses.dataclass(frozen=True, slots=True)
class Period:
    start: float  # epoch seconds, inclusive
    end: float  # exclusive

    def holds(self, now: float) -> bool:
        return self.start <= now < self.end


def current(quota: model.Quota, now: float) -> Period:
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if quota.period is model.QuotaPeriod.DAY:
        start = midnight
        end = start + datetime.timedelta(days=1)
    elif quota.period is model.QuotaPeriod.WEEK:
        sunday_based = (midnight.weekday() + 1) % 7  # Python counts from Monday = 0
        start = midnight - datetime.timedelta(days=(sunday_based - quota.offset) % 7)
        end = start + datetime.timedelta(days=7)
    else:
        start_day = quota.offset + 1
        start = midnight.replace(day=start_day)
        if midnight.day < start_day:
            start = _add_months(start, -1)
        end = _add_months(start, 1)
    return Period(start=start.timestamp(), end=end.timestamp())


def _add_months(moment: datetime.datetime, months: int) -> datetime.datetime:
    """Same day (at most the 28th, so it always exists) ``months`` later."""
    index = moment.year * 12 + (moment.month - 1) + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


class PeriodCache:
    """The current period of one quota, recomputed only when ``now`` leaves it: the common
    request pays two float comparisons, not a calendar computation."""

    __slots__ = ("_period", "_quota")

    def __init__(self, quota: model.Quota) -> None:
        self._quota = quota
        self._period = Period(start=0.0, end=0.0)

    def at(self, now: float) -> Period:
        period = self._period
        if not period.holds(now):
            period = self._period = current(self._quota, now)
        return period
