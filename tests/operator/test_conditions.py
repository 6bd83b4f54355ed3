from __future__ import annotations

from propylon_operator import conditions

READY = conditions.Condition(type="Ready", status=conditions.TRUE, reason="Ready")
BROKEN = conditions.Condition(type="Ready", status=conditions.FALSE, reason="Invalid", message="spec.x: bad")


def test_new_conditions_start_now_with_the_generation() -> None:
    (merged,) = conditions.merge(None, [READY], generation=3, now="T1")
    assert merged == {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "",
        "lastTransitionTime": "T1",
        "observedGeneration": 3,
    }


def test_transition_time_moves_only_when_the_status_flips() -> None:
    first = conditions.merge(None, [BROKEN], generation=1, now="T1")
    reworded = conditions.merge(
        first,
        [conditions.Condition(type="Ready", status=conditions.FALSE, reason="MissingReference", message="m")],
        generation=2,
        now="T2",
    )
    assert reworded[0]["lastTransitionTime"] == "T1"
    assert reworded[0]["reason"] == "MissingReference"
    assert reworded[0]["observedGeneration"] == 2
    flipped = conditions.merge(reworded, [READY], generation=2, now="T3")
    assert flipped[0]["lastTransitionTime"] == "T3"


def test_merge_keeps_the_desired_order_and_drops_others() -> None:
    accepted = conditions.Condition(type="Accepted", status=conditions.TRUE, reason="Accepted")
    existing = [{"type": "Stale", "status": "True"}]
    merged = conditions.merge(existing, [READY, accepted], generation=None, now="T")
    assert [c["type"] for c in merged] == ["Ready", "Accepted"]
    assert "observedGeneration" not in merged[0]
    assert conditions.find(merged, "Accepted")["status"] == "True"
    assert conditions.find(merged, "Stale") is None
