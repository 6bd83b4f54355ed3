"""Admission refuses what can never compile, and admits what only lacks another object."""

from __future__ import annotations

from propylon_operator import admission


def _api(routes, models=None) -> dict:
    spec = {"routes": routes}
    if models is not None:
        spec["models"] = models
    return {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Api",
        "metadata": {"name": "a", "namespace": "ns"},
        "spec": spec,
    }


MOCK = {"type": "MOCK", "mock": {"statusCode": 200, "body": "x"}}


def test_an_invalid_json_schema_model_is_refused_with_the_validate_message() -> None:
    message = admission.refusal(_api([{"routeKey": "GET /a", "integration": MOCK}], {"M": {"type": "objekt"}}))
    assert message is not None
    assert message.startswith("(Api ns/a): spec.models.M")
    assert "Api/ns/a" not in message and "document 1" not in message


def test_a_bad_path_template_is_refused() -> None:
    message = admission.refusal(_api([{"routeKey": "GET /a/{x", "integration": MOCK}]))
    assert message is not None and "spec.routes[0].routeKey" in message


def test_a_route_naming_an_undefined_model_is_refused() -> None:
    route = {"routeKey": "POST /a", "requestValidation": {"body": "Nope"}, "integration": MOCK}
    message = admission.refusal(_api([route]))
    assert message is not None and "Nope" in message


def test_references_to_other_objects_are_left_to_status() -> None:
    route = {"routeKey": "GET /a", "authorizer": "later", "integration": MOCK}
    assert admission.refusal(_api([route])) is None
    stage = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "dev", "namespace": "ns"},
        "spec": {"apiRef": "not-yet"},
    }
    assert admission.refusal(stage) is None
