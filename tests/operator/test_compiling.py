"""The last-good rule (DESIGN.md section 8): a broken edit never replaces what was serving."""

from __future__ import annotations

import copy

import pytest

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
    """The bodies of the routes that serve (a route that fails closed is listed by ``_refusals``)."""
    return [
        route.integration.mock.body
        for stage in outcome.snapshot.stages
        for route in stage.routes
        if route.refusal is None
    ]


def _refusals(outcome: compiling.Outcome) -> list[tuple[str, str | None]]:
    return [(route.route_key, route.refusal) for stage in outcome.snapshot.stages for route in stage.routes]


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
    # the route fails closed rather than vanishing (issue 8, item 1)
    assert _refusals(outcome) == [("GET /hello", "AUTHORIZER_CONFIGURATION_ERROR")]
    assert not outcome.verdict(inventory.Key("Api", "demo", "pets")).ready


def test_a_deleted_object_is_forgotten_not_resurrected() -> None:
    compiler = compiling.LastGood()
    compiler.compile(_inputs(_api(), STAGE))
    gone = compiler.compile(_inputs(STAGE))
    assert _mock_bodies(gone) == []
    again = compiler.compile(_inputs(_api(authorizer="nosuch"), STAGE))
    assert _mock_bodies(again) == []  # the old body went with the deletion
    assert _refusals(again) == [("GET /hello", "AUTHORIZER_CONFIGURATION_ERROR")]


def test_deleting_an_authorizer_makes_its_routes_refuse_not_fall_through() -> None:
    """Issue 8, item 1: the route stays and refuses; the catch-all never gets its requests."""
    authorizer = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Authorizer",
        "metadata": {"name": "cognito", "namespace": "demo"},
        "spec": {"type": "JWT", "jwt": {"issuer": "https://issuer.example.com", "audience": ["app"]}},
    }
    api = _api(authorizer="cognito")
    api["spec"]["routes"].append(
        {"routeKey": "ANY /{proxy+}", "integration": {"type": "MOCK", "mock": {"body": "open"}}}
    )
    compiler = compiling.LastGood()
    before = compiler.compile(_inputs(api, authorizer, STAGE))
    assert _refusals(before) == [("GET /hello", None), ("ANY /{proxy+}", None)]
    after = compiler.compile(_inputs(api, STAGE))
    assert _refusals(after) == [("GET /hello", "AUTHORIZER_CONFIGURATION_ERROR"), ("ANY /{proxy+}", None)]
    assert not after.verdict(inventory.Key("Api", "demo", "pets")).ready


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


def test_an_hs_authorizer_the_install_cannot_seal_is_not_ready_and_says_why() -> None:
    """Compiled without a sealing secret (the reconcile always gives one): the HS* secret cannot
    reach the proxies, whose routes then refuse, so Ready must not claim the Authorizer works."""
    hs = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Authorizer",
        "metadata": {"name": "shared", "namespace": "demo"},
        "spec": {"jwt": {"issuer": "internal", "algorithms": ["HS256"], "secretRef": {"name": "s", "key": "k"}}},
    }
    rs = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Authorizer",
        "metadata": {"name": "idp", "namespace": "demo"},
        "spec": {"jwt": {"issuer": "https://issuer.example.com"}},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "demo"},
        "stringData": {"k": "a-shared-secret-value-of-32-bytes"},
    }
    outcome = compiling.LastGood().compile(_inputs(hs, rs, secret, _api(authorizer="shared"), STAGE))
    verdict = outcome.verdict(inventory.Key("Authorizer", "demo", "shared"))
    assert (verdict.ready, verdict.accepted, verdict.reason) == (False, True, "SecretNotDelivered")
    assert "AUTHORIZER_CONFIGURATION_ERROR" in verdict.message
    assert outcome.verdict(inventory.Key("Authorizer", "demo", "idp")).ready

    sealed = compiling.LastGood()
    sealed.use_sealing_secret(b"s" * 32)
    outcome = sealed.compile(_inputs(hs, rs, secret, _api(authorizer="shared"), STAGE))
    assert outcome.verdict(inventory.Key("Authorizer", "demo", "shared")).ready


@pytest.mark.parametrize(
    "authorizers",
    [
        (),  # the route names an Authorizer that does not exist
        (  # it exists, but cannot compile: HS256 without secretRef
            {
                "apiVersion": "propylon.dev/v1alpha1",
                "kind": "Authorizer",
                "metadata": {"name": "gone", "namespace": "demo"},
                "spec": {"jwt": {"issuer": "internal", "algorithms": ["HS256"]}},
            },
        ),
    ],
    ids=["missing", "broken"],
)
def test_an_api_whose_authorizer_is_missing_or_broken_is_not_ready_and_names_it(
    authorizers: tuple[dict, ...],
) -> None:
    outcome = compiling.LastGood().compile(_inputs(*authorizers, _api(authorizer="gone"), STAGE))
    verdict = outcome.verdict(inventory.Key("Api", "demo", "pets"))
    assert not verdict.ready
    assert "gone" in verdict.message


def test_the_operators_gateway_limit_reaches_the_snapshot() -> None:
    from propylon import cli
    from propylon.commands import shared_flags
    from propylon_operator import settings as operator_settings

    args = cli.build_parser().parse_args(["operator", "--gateway-rate", "300", "--gateway-burst", "60"])
    configured = operator_settings.Settings(gateway_throttle=shared_flags.gateway_throttle(args))
    outcome = compiling.LastGood.for_settings(configured).compile({})
    assert outcome.snapshot.settings.gateway_throttle == model.Throttle(rate_limit=300.0, burst_limit=60)
    half = cli.build_parser().parse_args(["operator", "--gateway-burst", "9"])
    assert shared_flags.gateway_throttle(half) == model.Throttle(rate_limit=10000.0, burst_limit=9)


def _key_secret(name: str, value: str, plan: str = "basic") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "demo", "labels": {"propylon.dev/usage-plan": plan}},
        "stringData": {"value": value},
    }


def test_a_short_api_key_shows_on_the_usage_plans_that_select_it() -> None:
    """Item 7: `validate` reports a key under 20 characters; a Secret has no status, so the
    UsagePlan selecting it says so (Ready False, still Accepted); another plan is untouched."""
    plans = [
        {
            "apiVersion": "propylon.dev/v1alpha1",
            "kind": "UsagePlan",
            "metadata": {"name": name, "namespace": "demo", "generation": 1},
            "spec": {"apiKeySelector": {"matchLabels": {"propylon.dev/usage-plan": name}}},
        }
        for name in ("basic", "gold")
    ]
    secrets = [_key_secret("short", "too-short"), _key_secret("fine", "a-key-of-at-least-20-chars", "gold")]
    bodies = [*plans, *secrets]
    outcome = compiling.LastGood().compile({inventory.Key.of(b): documents.to_document(b) for b in bodies})
    basic = outcome.verdict(inventory.Key("UsagePlan", "demo", "basic"))
    assert (basic.ready, basic.accepted) == (False, True)
    assert "Secret short: stringData.value: an API key must be at least 20 characters" in basic.message
    assert "too-short" not in basic.message
    assert outcome.verdict(inventory.Key("UsagePlan", "demo", "gold")).ready


def test_a_broken_edit_keeps_an_api_served_with_a_route_that_fails_closed() -> None:
    """Audit: an Api served with a fail-closed route (its Authorizer is missing) is served, so
    it is the Api's last good version; an edit that breaks its own content keeps it, and the
    status names that edit's error, not the Authorizer both versions miss."""
    api = _api("v1")
    api["spec"]["routes"].append(
        {"routeKey": "GET /noauth", "authorizer": "missing", "integration": {"type": "MOCK", "mock": {"body": "x"}}}
    )
    compiler = compiling.LastGood()
    first = compiler.compile(_inputs(api, STAGE))
    assert _refusals(first) == [("GET /hello", None), ("GET /noauth", "AUTHORIZER_CONFIGURATION_ERROR")]
    edited = copy.deepcopy(api)
    edited["spec"]["routes"][0]["integration"]["mock"]["body"] = "v2"
    edited["spec"]["routes"].append({"routeKey": "GET /pets/{id", "integration": {"type": "MOCK", "mock": {}}})
    broken = compiler.compile(_inputs(edited, STAGE))
    key = inventory.Key("Api", "demo", "pets")
    assert broken.substituted == {key}
    assert broken.snapshot.version == first.snapshot.version
    assert _mock_bodies(broken) == ["v1"]
    assert broken.verdict(inventory.Key("Stage", "demo", "dev")).ready
    verdict = broken.verdict(key)
    assert not verdict.ready
    assert verdict.reason == "Invalid"
    assert verdict.message.startswith("spec.routes[2].routeKey: path segment '{id'"), verdict.message
