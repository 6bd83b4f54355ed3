"""The last good version of an Api that is served with a route failing closed (DESIGN.md §1, §8).

§1: a route whose Authorizer is missing makes the Api ``Ready=False`` yet keeps it served (the
route stays and refuses). §8: a broken object never replaces its last good version. So that
served version is the Api's last good one, and an edit that breaks the Api's own content keeps it.
"""

from __future__ import annotations

from propylon_compiler import last_good, manifests
from tests.compiler import test_last_good

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: users, namespace: shop}}
spec:
  routes:
    - routeKey: GET /hello
      integration: {{type: MOCK, mock: {{statusCode: 200, body: {body}}}}}
{extra}"""
FAILS_CLOSED = """\
    - routeKey: GET /noauth
      authorizer: missing
      integration: {type: MOCK, mock: {statusCode: 200}}
"""
BROKEN_ROUTE = """\
    - routeKey: GET /pets/{id
      integration: {type: MOCK, mock: {statusCode: 200}}
"""
STAGE = """\
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: users, basePath: /prod}
"""
API_KEY = ("Api", "shop", "users")
STAGE_KEY = ("Stage", "shop", "prod")


def docs(body: str, *extras: str) -> list[manifests.Document]:
    return test_last_good.docs(API.format(body=body, extra="".join(extras)), STAGE)


def served(kept: last_good.Kept) -> list[tuple[str, str | None, str | None]]:
    """(routeKey, refusal, mock body) of every route served, as a client would meet them."""
    return [
        (r.route_key, r.refusal, r.integration.mock.body if r.integration.mock else None)
        for s in kept.result.snapshot.stages
        for r in s.routes
    ]


V1 = [("GET /hello", None, "v1"), ("GET /noauth", "AUTHORIZER_CONFIGURATION_ERROR", "")]


def test_a_broken_edit_keeps_an_api_served_with_a_route_that_fails_closed() -> None:
    first = last_good.compile_keeping_last_good(docs("v1", FAILS_CLOSED), last_good.Memory())
    assert served(first) == V1
    broken = last_good.compile_keeping_last_good(docs("v2", FAILS_CLOSED, BROKEN_ROUTE), first.memory)
    assert served(broken) == V1
    assert broken.substituted == {API_KEY}
    # The Stage serves the kept Api: no line says it serves nothing.
    stage = broken.status(STAGE_KEY)
    assert stage is not None and stage.ready
    assert not any("serves nothing" in d.message for d in broken.reported()), broken.reported()
    # The status leads with what the edit broke, not the missing Authorizer both versions have.
    status = broken.status(API_KEY)
    assert status is not None and not status.ready
    assert status.reason == "Invalid"
    assert status.message.startswith("spec.routes[2].routeKey: path segment '{id'"), status.message
    assert status.message.endswith("(and 1 more)")
    # Fixing the edit serves it.
    fixed = last_good.compile_keeping_last_good(docs("v3", FAILS_CLOSED), broken.memory)
    assert not fixed.substituted
    assert served(fixed)[0] == ("GET /hello", None, "v3")


def test_a_clean_api_given_the_same_broken_edit_is_kept_too() -> None:
    first = last_good.compile_keeping_last_good(docs("v1"), last_good.Memory())
    broken = last_good.compile_keeping_last_good(docs("v2", BROKEN_ROUTE), first.memory)
    assert served(broken) == [("GET /hello", None, "v1")]
    assert broken.substituted == {API_KEY}
    status = broken.status(API_KEY)
    assert status is not None and status.reason == "Invalid" and "'{id'" in status.message


def test_an_edit_to_an_api_that_still_fails_closed_the_same_way_is_served() -> None:
    """Its last good version misses the same Authorizer, so putting it back could not help: the
    edit is served (the route keeps refusing) rather than hidden behind the older body."""
    first = last_good.compile_keeping_last_good(docs("v1", FAILS_CLOSED), last_good.Memory())
    edited = last_good.compile_keeping_last_good(docs("v2", FAILS_CLOSED), first.memory)
    assert not edited.substituted
    assert served(edited) == [("GET /hello", None, "v2"), ("GET /noauth", "AUTHORIZER_CONFIGURATION_ERROR", "")]
    status = edited.status(API_KEY)
    assert status is not None and status.reason == "MissingReference"


def test_an_edit_that_adds_a_missing_reference_to_a_ready_api_still_keeps_the_ready_version() -> None:
    first = last_good.compile_keeping_last_good(docs("v1"), last_good.Memory())
    edited = last_good.compile_keeping_last_good(docs("v2", FAILS_CLOSED), first.memory)
    assert edited.substituted == {API_KEY}
    assert served(edited) == [("GET /hello", None, "v1")]
