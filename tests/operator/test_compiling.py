"""The last-good rule (DESIGN.md section 8): a broken edit never replaces what was serving."""

from __future__ import annotations

import copy

from propylon_compiler import compiler, diagnostics
from propylon_config import model
from propylon_operator import compiling, documents, inventory


def _api(body: str = "hello", authorizer: str | None = None) -> dict:
    route = {"routeKey": "GET /hello", "integration": {"type": "MOCK", "mock": {"statusCode": 200, "body": body}}}
    if authorizer:
        route["authorizer"] = authorizer
    return {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Api",
        "metadata": {"name": "pets", "namespace": "demo", "generation": 1},
        "spec": {"routes": [route]},
    }


STAGE = {
    "apiVersion": "propylon.dev/v1alpha1",
    "kind": "Stage",
    "metadata": {"name": "dev", "namespace": "demo"},
    "spec": {"apiRef": "pets", "basePath": "/dev"},
}


def _inputs(*bodies: dict) -> dict:
    return {inventory.Key.of(b): documents.to_document(copy.deepcopy(b)) for b in bodies}


def _mock_bodies(outcome: compiling.Outcome) -> list[str]:
    return [route.integration.mock.body for stage in outcome.snapshot.stages for route in stage.routes]


def test_a_clean_compile_is_ready_everywhere() -> None:
    outcome = compiling.LastGood().compile(_inputs(_api(), STAGE))
    assert _mock_bodies(outcome) == ["hello"]
    assert outcome.snapshot.version
    assert outcome.verdict(inventory.Key("Api", "demo", "pets")).ready
    assert outcome.verdict(inventory.Key("Stage", "demo", "dev")).ready
    assert not outcome.substituted


def test_a_broken_edit_keeps_serving_the_last_good_version_and_says_why() -> None:
    compiler = compiling.LastGood()
    good = compiler.compile(_inputs(_api(), STAGE))
    broken = compiler.compile(_inputs(_api("changed", authorizer="nosuch"), STAGE))
    key = inventory.Key("Api", "demo", "pets")
    assert _mock_bodies(broken) == ["hello"]
    assert broken.snapshot.version == good.snapshot.version
    assert broken.substituted == {key}
    verdict = broken.verdict(key)
    assert not verdict.ready
    assert verdict.reason == "MissingReference"
    assert "nosuch" in verdict.message
    fixed = compiler.compile(_inputs(_api("fixed"), STAGE))
    assert _mock_bodies(fixed) == ["fixed"]
    assert fixed.verdict(key).ready


def test_an_object_broken_from_the_start_has_no_last_good_version() -> None:
    outcome = compiling.LastGood().compile(_inputs(_api(authorizer="nosuch"), STAGE))
    assert _mock_bodies(outcome) == []
    assert not outcome.verdict(inventory.Key("Api", "demo", "pets")).ready


def test_a_deleted_object_is_forgotten_not_resurrected() -> None:
    compiler = compiling.LastGood()
    compiler.compile(_inputs(_api(), STAGE))
    gone = compiler.compile(_inputs(STAGE))
    assert _mock_bodies(gone) == []
    again = compiler.compile(_inputs(_api(authorizer="nosuch"), STAGE))
    assert _mock_bodies(again) == []  # the old body went with the deletion


def test_verdicts_come_from_diagnostics_when_no_object_is_reported() -> None:
    result = compiler.CompileResult(
        snapshot=model.GatewayConfig(version="v"),
        diagnostics=(
            diagnostics.Diagnostic(
                origin=diagnostics.Origin(file="Api/demo/pets", document=1),
                field="spec.routes[0]",
                message="bad",
                reason="Invalid",
            ),
        ),
        objects=(),
    )

    verdicts = compiling.verdicts_of(result)
    assert verdicts == {
        inventory.Key("Api", "demo", "pets"): compiling.Verdict(
            ready=False, accepted=False, reason="Invalid", message="spec.routes[0]: bad"
        )
    }
