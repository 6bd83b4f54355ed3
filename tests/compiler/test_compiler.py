"""Properties of ``compiler.compile`` that goldens do not show well: purity, stability of the
version, statuses, robustness against bodies the schema did not catch."""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml

from propylon_compiler import compiler, diagnostics, manifests, routes, schemas
from propylon_config import codec, model

BASE = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users, namespace: shop, generation: 3}
spec:
  routes:
    - routeKey: "GET /users/{id}"
      integration: {type: HTTP_PROXY, service: {name: users, port: 80}}
    - routeKey: "POST /users"
      integration: {type: MOCK, mock: {statusCode: 201}}
    - routeKey: "$default"
      integration: {type: MOCK, mock: {statusCode: 404}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec:
  apiRef: users
  throttle: {rateLimit: 100, burstLimit: 200}
  routeSettings:
    "POST /users": {throttle: {rateLimit: 2, burstLimit: 4}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: beta, namespace: shop}
spec: {apiRef: users}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: users-1, namespace: shop, labels: {kubernetes.io/service-name: users}}
ports: [{port: 80}]
endpoints: [{addresses: [127.0.0.2]}, {addresses: [127.0.0.1]}]
"""


def documents(text: str = BASE, file: str = "in.yaml") -> list[manifests.Document]:
    docs, problems = manifests.parse_text(text, file)
    assert not problems
    return docs


def document(body: dict[str, Any], index: int = 1) -> manifests.Document:
    return manifests.Document(origin=diagnostics.Origin(file="in.yaml", document=index), body=body)


def test_version_is_the_content_hash_and_survives_a_json_round_trip() -> None:
    snapshot = compiler.compile(documents()).snapshot
    assert snapshot.version == codec.content_version(snapshot)
    again = codec.loads(codec.dumps(snapshot))
    assert again == snapshot
    assert again.version == codec.content_version(again)


def test_integer_limits_become_floats() -> None:
    stage = next(s for s in compiler.compile(documents()).snapshot.stages if s.name == "prod")
    throttles = {r.route_key: r.throttle for r in stage.routes}
    assert throttles["POST /users"] == model.Throttle(rate_limit=2.0, burst_limit=4)
    assert all(isinstance(t.rate_limit, float) for t in throttles.values() if t is not None)


def test_same_input_same_snapshot_whatever_the_order() -> None:
    docs = documents()
    expected = compiler.compile(docs)
    shuffled = list(docs)
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        result = compiler.compile(shuffled)
        assert result.snapshot == expected.snapshot
        assert result.objects == expected.objects


def test_snapshot_is_sorted() -> None:
    snapshot = compiler.compile(documents()).snapshot
    assert [s.id for s in snapshot.stages] == ["shop/beta", "shop/prod"]
    stage = snapshot.stages[1]
    assert [r.route_key for r in stage.routes] == ["POST /users", "GET /users/{id}", "$default"]
    assert [a.address for a in snapshot.endpoints[0].addresses] == ["127.0.0.1", "127.0.0.2"]
    assert stage.routes[1].id == "shop/users/prod/GET /users/{id}"


def test_statuses_carry_generation_and_readiness() -> None:
    text = BASE.replace("apiRef: users}", "apiRef: gone}")
    result = compiler.compile(documents(text))
    by_name = {(s.kind, s.name): s for s in result.objects}
    api = by_name[("Api", "users")]
    assert (api.generation, api.accepted, api.ready, api.reason) == (3, True, True, "Compiled")
    beta = by_name[("Stage", "beta")]
    assert (beta.accepted, beta.ready, beta.reason) == (False, False, "MissingReference")
    assert beta.message == "spec.apiRef: Api shop/gone not found; the Stage serves nothing"


def test_older_stage_wins_in_the_cluster() -> None:
    text = BASE.replace(
        "{name: prod, namespace: shop}", "{name: prod, namespace: shop, creationTimestamp: '2026-02-01T00:00:00Z'}"
    )
    text = text.replace(
        "{name: beta, namespace: shop}", "{name: beta, namespace: shop, creationTimestamp: '2026-01-01T00:00:00Z'}"
    )
    text = text.replace("spec: {apiRef: users}", "spec: {apiRef: users, basePath: /prod}")
    result = compiler.compile(documents(text))
    assert [s.id for s in result.snapshot.stages] == ["shop/beta"]
    (problem,) = result.diagnostics
    assert (problem.name, problem.reason, problem.field) == ("prod", "Conflict", "spec.basePath")


def test_cross_namespace_option() -> None:
    text = BASE.replace("{name: users, port: 80}", "{name: users, namespace: other, port: 80}").replace(
        "name: users-1, namespace: shop", "name: users-1, namespace: other"
    )
    refused = compiler.compile(documents(text))
    assert [d.reason for d in refused.diagnostics] == ["RefNotPermitted"]
    refusing = {r.route_key: r.refusal for r in refused.snapshot.stages[0].routes}
    assert refusing["GET /users/{id}"] == "API_CONFIGURATION_ERROR"  # fails closed, stays in the table
    assert not refused.snapshot.endpoints  # and resolves no backend
    allowed = compiler.compile(documents(text), options=compiler.CompileOptions(allow_cross_namespace=True))
    assert not allowed.diagnostics
    assert [e.key for e in allowed.snapshot.endpoints] == ["other/users:80"]


def test_a_service_port_maps_to_its_target_port_by_name() -> None:
    text = BASE.replace("ports: [{port: 80}]", "ports: [{name: web, port: 8080}, {name: admin, port: 9000}]") + (
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: users, namespace: shop}\n"
        "spec: {ports: [{name: admin, port: 81, targetPort: 9000}, {name: web, port: 80, targetPort: http}]}\n"
    )
    snapshot = compiler.compile(documents(text)).snapshot
    assert {(a.address, a.port) for a in snapshot.endpoints[0].addresses} == {("127.0.0.1", 8080), ("127.0.0.2", 8080)}


@pytest.mark.parametrize(
    "spec",
    [
        {"routes": "GET /x"},
        {"routes": [5, None, {"routeKey": 7}, {"routeKey": "GET /x", "integration": "MOCK"}]},
        {"routes": [{"routeKey": "GET /x", "integration": {"type": 3, "mock": []}}]},
        {"routes": [{"routeKey": "GET /x", "integration": {"type": "HTTP", "url": 1, "requestParameters": [1]}}]},
        {"routes": [{"routeKey": "GET /x", "integration": {"type": "HTTP", "service": {"name": 1, "port": "80"}}}]},
        {"models": [1], "cors": "yes", "gatewayResponses": {"THROTTLED": "slow"}},
        {"protocol": "WEBSOCKET", "routes": [{"routeKey": "GET /x", "integration": {"type": "MOCK", "mock": {}}}]},
    ],
)
def test_bodies_the_schema_missed_become_diagnostics_not_exceptions(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The compiler must stand on its own even if the schema lets a body through.
    monkeypatch.setattr(schemas, "validate", lambda document: [])
    monkeypatch.setattr(schemas, "with_defaults", lambda document: document.body)
    api = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Api",
        "metadata": {"name": "a", "namespace": "n"},
        "spec": spec,
    }
    stage = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {"apiRef": "a", "throttle": {"rateLimit": "fast"}, "routeSettings": []},
    }
    result = compiler.compile([document(api, 1), document(stage, 2)])
    assert result.diagnostics
    assert all(str(d).startswith("in.yaml: document ") for d in result.diagnostics)
    assert result.snapshot.apis == ()


def test_websocket_route_keys() -> None:
    assert routes.parse_key("$connect", model.Protocol.WEBSOCKET).method == "$connect"
    assert routes.parse_key("sendMessage", model.Protocol.WEBSOCKET).method == "sendMessage"
    with pytest.raises(routes.RouteKeyError):
        routes.parse_key("GET /x", model.Protocol.WEBSOCKET)


def test_route_keys_parse_into_segments() -> None:
    parsed = routes.parse_key("ANY /files/{owner}/{path+}", model.Protocol.HTTP)
    assert parsed.method == "ANY"
    assert [(s.kind, s.value) for s in parsed.segments] == [
        (model.SegmentKind.LITERAL, "files"),
        (model.SegmentKind.PARAM, "owner"),
        (model.SegmentKind.GREEDY, "path"),
    ]
    assert routes.parse_key("GET /", model.Protocol.HTTP).segments == ()


def test_secrets_never_reach_the_snapshot() -> None:
    text = BASE + (
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: alice, namespace: shop}\n"
        "stringData: {value: a-key-of-at-least-20-characters}\n"
    )
    result = compiler.compile(documents(text))
    assert "a-key-of-at-least-20-characters" not in codec.dumps(result.snapshot)
    assert "a-key-of-at-least-20-characters" not in yaml.safe_dump([str(d) for d in result.diagnostics])


def test_a_url_may_start_with_a_stage_variable_and_is_checked_once_substituted() -> None:
    text = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users, namespace: shop}
spec:
  routes:
    - routeKey: "GET /users/{id}"
      integration: {type: HTTP_PROXY, url: "${stageVariables.backend}/v1/users/{id}"}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec: {apiRef: users, variables: {backend: "http://127.0.0.1:9000"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: beta, namespace: shop}
spec: {apiRef: users, variables: {backend: "ftp://nowhere"}}
"""
    result = compiler.compile(documents(text))
    (prod,) = [s for s in result.snapshot.stages if s.name == "prod"]
    assert prod.routes[0].integration.url == "http://127.0.0.1:9000/v1/users/{id}"
    messages = [str(d) for d in result.diagnostics]
    assert len(messages) == 1 and "ftp://nowhere" in messages[0] and "Stage shop/beta" in messages[0], messages


def test_unreadable_files_are_diagnostics_naming_the_file(tmp_path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"kind: Api\nmetadata: {name: caf\xe9}\n")
    missing = tmp_path / "missing.yaml"
    loaded = manifests.load_paths([str(latin), str(missing)])
    assert loaded.documents == ()
    messages = [str(d) for d in loaded.diagnostics]
    assert messages[0].startswith(f"{latin}: cannot read file: not UTF-8")
    assert messages[1].startswith(f"{missing}: cannot read file: No such file or directory")


LONE = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: chat, namespace: talk}
spec:
  routes:
    - routeKey: "GET /hi"
      integration: {type: MOCK, mock: {statusCode: 200, body: "hi BODY"}}
"""


@pytest.mark.parametrize(
    ("escaped", "field"),
    [
        ("\\ud800", "spec.routes[0].integration.mock.body"),  # a high half alone
        ("\\ude00\\ud83d", "spec.routes[0].integration.mock.body"),  # the halves the wrong way round
        ("\\U0000DC00", "spec.routes[0].integration.mock.body"),  # YAML's long escape
    ],
)
def test_an_escaped_lone_surrogate_is_a_diagnostic_naming_its_field_not_a_crash(escaped: str, field: str) -> None:
    text = LONE.replace("BODY", escaped)
    docs, problems = manifests.parse_text(text, "chat.yaml")
    assert docs == []
    assert [str(p) for p in problems] == [
        f"chat.yaml: document 1 (Api talk/chat): {field}: Invalid value: an escaped UTF-16 surrogate without its"
        " pair is not a character (write the character itself, or both halves of its pair)"
    ]
    # In a key, too (a JSON manifest's header name, say).
    keyed = '{"apiVersion": "propylon.dev/v1alpha1", "kind": "Api", "metadata": {"name": "c"}, "spec": {"x\\ud800": 1}}'
    assert [p.field for p in manifests.parse_text(keyed, "c.json")[1]] == [
        "spec.x\\ud800"
    ]  # escaped: a terminal cannot print it
    # In the name the diagnostic leads with, too.
    named = LONE.replace("name: chat", 'name: "c\\ud800"').replace("BODY", "x")
    (problem,) = manifests.parse_text(named, "chat.yaml")[1]
    assert str(problem).startswith("chat.yaml: document 1 (Api talk/c\\ud800): metadata.name: Invalid value")
    str(problem).encode("utf-8")  # printable


def test_an_escaped_surrogate_pair_is_its_one_character_as_json_reads_it() -> None:
    # A JSON writer (Python's json.dumps, say) spells a character past U+FFFF as a pair.
    stage = "---\n{apiVersion: propylon.dev/v1alpha1, kind: Stage, metadata: {name: s, namespace: talk},"
    stage += " spec: {apiRef: chat}}\n"
    result = compiler.compile(documents(LONE.replace("BODY", "\\ud83d\\ude00") + stage, "chat.yaml"))
    assert not result.diagnostics
    (route,) = result.snapshot.stages[0].routes
    assert route.integration.mock is not None and route.integration.mock.body == "hi \U0001f600"


def test_a_stage_variable_that_cannot_be_sent_in_a_request_line_makes_the_route_refuse_in_that_stage() -> None:
    text = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: versions, namespace: shop}
spec:
  routes:
    - routeKey: "GET /items/{id}"
      integration: {type: HTTP_PROXY, url: "http://127.0.0.1:9000/${stageVariables.version}/items/{id}"}
    - routeKey: "GET /svc/{id}"
      integration: {type: HTTP_PROXY, service: {name: echo, port: 80}, path: "/${stageVariables.version}/svc/{id}"}
    - routeKey: "GET /label"
      integration: {type: MOCK, mock: {body: "version ${stageVariables.version}"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: spaced, namespace: shop}
spec: {apiRef: versions, variables: {version: "v 1"}}
---
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: plain, namespace: shop}
spec: {apiRef: versions, variables: {version: "v1"}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec: {ports: [{port: 80}]}
"""
    result = compiler.compile(documents(text))
    routes_by_stage = {s.name: [(r.route_key, r.refusal) for r in s.routes] for s in result.snapshot.stages}
    assert routes_by_stage == {
        "plain": [("GET /items/{id}", None), ("GET /label", None), ("GET /svc/{id}", None)],
        "spaced": [
            ("GET /items/{id}", "API_CONFIGURATION_ERROR"),
            ("GET /label", None),
            ("GET /svc/{id}", "API_CONFIGURATION_ERROR"),
        ],
    }
    messages = [str(d) for d in result.diagnostics]
    assert messages == [
        "in.yaml: document 2 (Stage shop/spaced): spec.variables: invalid url 'http://127.0.0.1:9000/v 1/items/{id}':"
        " only visible ASCII without '#' can be sent; percent-encode the rest"
        " (Api shop/versions spec.routes[0].integration.url);"
        " route 'GET /items/{id}' refuses every request (500 API_CONFIGURATION_ERROR)",
        "in.yaml: document 2 (Stage shop/spaced): spec.variables: path '/v 1/svc/{id}' can hold only visible ASCII"
        " without '#'; percent-encode the rest (Api shop/versions spec.routes[1].integration.path);"
        " route 'GET /svc/{id}' refuses every request (500 API_CONFIGURATION_ERROR)",
    ]


HEADER_CASES = [
    (
        'integration: {type: MOCK, mock: {headers: {X-Note: "a\\r\\nSet-Cookie: s=1"}}}',
        "spec.routes[0].integration.mock.headers.X-Note",
        "a header value can hold only visible ASCII, spaces and tabs (no CR, LF or controls)",
    ),
    (
        'integration: {type: MOCK, mock: {headers: {"Bad Name": "x"}}}',
        'spec.routes[0].integration.mock.headers["Bad Name"]',
        "'Bad Name' is not a valid header name",
    ),
    (
        'integration: {type: HTTP_PROXY, url: "http://user:secret@127.0.0.1:9000/x"}',
        "spec.routes[0].integration.url",
        "invalid url: it must not carry user information (user:password@); set an Authorization header instead",
    ),
    (
        'integration: {type: HTTP_PROXY, url: "http://127.0.0.1:9000/x", '
        'requestParameters: {"overwrite:header.X_Real_IP": "\'1.2.3.4\'"}}',
        'spec.routes[0].integration.requestParameters["overwrite:header.X_Real_IP"]',
        "invalid mapping key 'overwrite:header.X_Real_IP': X_Real_IP is set only by the gateway",
    ),
    (
        'integration: {type: HTTP_PROXY, url: "http://127.0.0.1:9000/x", '
        'requestParameters: {"overwrite:header.X-Forwarded-Prefix": "\'/admin\'"}}',
        'spec.routes[0].integration.requestParameters["overwrite:header.X-Forwarded-Prefix"]',
        "invalid mapping key 'overwrite:header.X-Forwarded-Prefix': X-Forwarded-Prefix is set only by the gateway",
    ),
    (  # present exactly when the route caches (DESIGN.md section 8, Cache): never a mapping's
        'integration: {type: HTTP_PROXY, url: "http://127.0.0.1:9000/x", '
        'responseParameters: {"200": {"overwrite:header.X-Propylon-Cache": "\'hit\'"}}}',
        'spec.routes[0].integration.responseParameters.200["overwrite:header.X-Propylon-Cache"]',
        "invalid mapping key 'overwrite:header.X-Propylon-Cache': X-Propylon-Cache is set only by the gateway",
    ),
    (
        'requestValidation: {requiredParameters: ["path.id"]}\n'
        "      integration: {type: MOCK, mock: {statusCode: 200}}",
        "spec.routes[0].requestValidation.requiredParameters[0]",
        "'path.id' is not a parameter of the route path '/x', so every request would be refused",
    ),
]


@pytest.mark.parametrize(("integration", "field", "message"), HEADER_CASES)
def test_headers_a_response_or_request_cannot_carry_are_diagnostics(integration: str, field: str, message: str) -> None:
    """Issue 8, item 4: caught when compiling, never a run-time 500, a split header or a leak."""
    text = (
        "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: h, namespace: shop}\n"
        f"spec:\n  routes:\n    - routeKey: GET /x\n      {integration}\n"
    )
    result = compiler.compile(documents(text))
    found = [(d.field, d.message) for d in result.diagnostics]
    assert any(f == field and m.startswith(message) for f, m in found), found
    assert "secret" not in " ".join(m for _, m in found)  # credentials are never echoed


def test_a_gateway_response_header_with_a_line_break_is_a_diagnostic() -> None:
    text = (
        "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: h, namespace: shop}\n"
        'spec:\n  gatewayResponses:\n    THROTTLED: {headers: {X-Why: "slow\\ndown"}}\n'
        "  routes:\n    - routeKey: GET /x\n      integration: {type: MOCK, mock: {}}\n"
    )
    result = compiler.compile(documents(text))
    assert [(d.field, d.message) for d in result.diagnostics] == [
        (
            "spec.gatewayResponses.THROTTLED.headers.X-Why",
            "a header value can hold only visible ASCII, spaces and tabs (no CR, LF or controls)",
        )
    ]


def test_the_gateway_throttle_option_is_the_snapshots_gateway_wide_limit() -> None:
    throttle = model.Throttle(rate_limit=2.5, burst_limit=7)
    result = compiler.compile([], options=compiler.CompileOptions(gateway_throttle=throttle))
    assert result.snapshot.settings.gateway_throttle == throttle
    default = compiler.compile([]).snapshot.settings.gateway_throttle
    assert default == model.Throttle(rate_limit=10000.0, burst_limit=5000)
    for bad in (model.Throttle(rate_limit=0, burst_limit=1), model.Throttle(rate_limit=1, burst_limit=0)):
        with pytest.raises(ValueError, match="gateway throttle"):
            compiler.CompileOptions(gateway_throttle=bad)
