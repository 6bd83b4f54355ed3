"""Several proxies' /admin/usage answers become one UsagePlan status.usage."""

from __future__ import annotations

from propylon_operator import usage_reports

PERIOD = {"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
OLD = {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}


def _answer(period=PERIOD, **used):
    return {"plan": "shop/basic", "period": period, "keys": {k: {"used": n, "remaining": 0} for k, n in used.items()}}


def test_memory_stores_are_summed_because_each_proxy_counts_only_its_own_requests() -> None:
    combined = usage_reports.combine(
        [_answer(alice=3, bob=1), _answer(alice=4, bob=0)], shared=False, limit=10, read_at="T"
    )
    assert combined.usage is not None
    assert combined.usage["keys"] == {"alice": {"used": 7, "remaining": 3}, "bob": {"used": 1, "remaining": 9}}
    assert combined.usage["store"] == "memory"
    assert combined.usage["period"] == PERIOD


def test_a_shared_store_is_not_double_counted() -> None:
    combined = usage_reports.combine([_answer(alice=7), _answer(alice=7)], shared=True, limit=10, read_at="T")
    assert combined.usage is not None
    assert combined.usage["keys"] == {"alice": {"used": 7, "remaining": 3}}
    assert combined.usage["store"] == "shared"


def test_a_shared_store_read_at_two_moments_keeps_the_later_higher_number() -> None:
    combined = usage_reports.combine([_answer(alice=7), _answer(alice=8)], shared=True, limit=10, read_at="T")
    assert combined.usage is not None and combined.usage["keys"]["alice"]["used"] == 8


def test_an_unreachable_proxy_is_named_and_the_rest_still_count() -> None:
    combined = usage_reports.combine([_answer(alice=2), None, _answer(alice=1)], shared=False, limit=5, read_at="T")
    assert combined.usage is not None
    assert combined.usage["keys"]["alice"] == {"used": 3, "remaining": 2}
    assert combined.usage["reportedBy"] == "2 of 3 proxies"
    assert (combined.answered, combined.asked) == (2, 3)


def test_nothing_answered_gives_nothing_to_publish() -> None:
    combined = usage_reports.combine([None, {"message": "Forbidden"}], shared=False, limit=5, read_at="T")
    assert combined.usage is None and combined.answered == 0


def test_a_proxy_still_in_the_previous_period_does_not_count() -> None:
    combined = usage_reports.combine(
        [_answer(alice=9), _answer(OLD, alice=90)], shared=False, limit=100, read_at="T"
    )
    assert combined.usage is not None and combined.usage["keys"]["alice"]["used"] == 9


def test_a_plan_without_quota_has_no_remaining() -> None:
    combined = usage_reports.combine([_answer(None, alice=0)], shared=False, limit=None, read_at="T")
    assert combined.usage is not None
    assert combined.usage["period"] is None
    assert combined.usage["keys"] == {"alice": {"used": 0, "remaining": None}}
