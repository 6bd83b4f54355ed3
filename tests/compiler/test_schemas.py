"""Schema validation and defaulting of propylon.dev documents against the CRDs (crds/).

The valid documents are DESIGN.md section 1's examples, with the alternatives the comments
there offer ("or url", "WEBSOCKET only", "HTTP only", ...) reduced to one consistent choice.
Each broken document changes one thing and must be reported at the field a user would fix,
with the API server's wording.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from propylon_compiler import diagnostics, manifests, schema_rules, schemas

API = """
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: users, namespace: shop}
spec:
  protocol: HTTP
  description: Users service
  apiKeySource: HEADER
  cors:
    allowOrigins: ["https://myapp.com"]
    allowMethods: [GET, POST]
    allowHeaders: [Content-Type, Authorization]
    exposeHeaders: []
    maxAge: 600
    allowCredentials: false
  models:
    NewUser: {type: object, required: [name], properties: {name: {type: string}}}
  binaryMediaTypes: ["image/*"]
  gatewayResponses:
    THROTTLED: {statusCode: 429, headers: {Retry-After: "1"}, body: '{"message":"slow down"}'}
  routes:
    - routeKey: "GET /users/{id}"
      authorizer: cognito
      authorizationScopes: ["users/read"]
      apiKeyRequired: false
      requestValidation:
        body: NewUser
        requiredParameters: ["querystring.limit", "header.X-Trace"]
      cacheKeyParameters: ["querystring.page", "header.Accept-Language"]
      integration:
        type: HTTP
        service: {name: users, port: 8080, namespace: shop}
        path: "/v1/users/{id}"
        method: GET
        timeoutMillis: 29000
        requestParameters:
          "overwrite:header.X-User-Id": "$context.authorizer.claims.sub"
        responseParameters:
          "404": {"overwrite:header.X-Reason": "'not-found'"}
        requestTemplates: {"application/json": "<VTL template>"}
        passthroughBehavior: WHEN_NO_MATCH
    - routeKey: "ANY /legacy/{proxy+}"
      integration:
        type: HTTP_PROXY
        url: "http://users.example:8080/v1/users/{proxy}"
    - routeKey: "POST /hello"
      integration: {type: FUNCTION, service: {name: hello, port: 8080}, payloadFormatVersion: "2.0"}
    - routeKey: "$default"
      integration:
        type: MOCK
        mock: {statusCode: 200, headers: {Content-Type: application/json}, body: '{"ok":true}'}
"""

WEBSOCKET_API = """
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: chat, namespace: shop}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  websocket: {maxMessageBytes: 131072, idleTimeoutSeconds: 600, maxConnectionSeconds: 7200}
  routes:
    - routeKey: "$connect"
      integration: {type: HTTP, url: "http://chat.example/connect"}
    - routeKey: sendmessage
      routeResponseSelectionExpression: "$default"
      integration: {type: FUNCTION, service: {name: chat, port: 8080}}
    - routeKey: "$default"
      integration: {type: MOCK, mock: {statusCode: 200}}
"""

STAGE = """
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {name: prod, namespace: shop}
spec:
  apiRef: users
  basePath: /prod
  hosts: ["api.example.com", "*.example.org"]
  endpoint: PUBLIC
  variables: {lambdaAlias: prod, usersTable: users-prod}
  throttle: {rateLimit: 1000, burstLimit: 2000}
  routeSettings:
    "GET /users": {throttle: {rateLimit: 50, burstLimit: 100}, cache: {enabled: true, ttlSeconds: 60}}
  cache:
    enabled: false
    ttlSeconds: 300
    capacityMiB: 64
    requireAuthorizationForCacheControl: true
    unauthorizedCacheControlHeaderStrategy: SUCCEED_WITH_RESPONSE_HEADER
  accessLog: {enabled: true}
  canary:
    apiRef: users-v2
    percentTraffic: 10
    variables: {lambdaAlias: canary}
status:
  url: http://propylon.shop.svc/prod
  configVersion: "0123abcd"
"""

USAGE_PLAN = """
apiVersion: propylon.dev/v1alpha1
kind: UsagePlan
metadata: {name: basic, namespace: shop}
spec:
  stages:
    - stageRef: prod
      throttle: {"GET /users": {rateLimit: 10, burstLimit: 20}}
  throttle: {rateLimit: 100, burstLimit: 200}
  quota: {limit: 10000, period: MONTH, offset: 0}
  apiKeySelector: {matchLabels: {propylon.dev/usage-plan: basic}}
  allowCacheInvalidation: false
"""

JWT_AUTHORIZER = """
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {name: cognito, namespace: shop}
spec:
  type: JWT
  identitySource: ["$request.header.Authorization"]
  jwt:
    issuer: https://issuer.example.com
    audience: ["my-client-id"]
    jwksUri: https://issuer.example.com/.well-known/jwks.json
    algorithms: [RS256, ES256]
    clockSkewSeconds: 60
"""

HS_AUTHORIZER = """
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {name: shared, namespace: shop}
spec:
  jwt:
    issuer: https://issuer.example.com
    algorithms: [HS256]
    secretRef: {name: jwt-secret, key: secret}
"""

TOKEN_AUTHORIZER = """
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {name: legacy, namespace: shop}
spec:
  type: TOKEN
  identitySource: ["$request.header.Authorization"]
  function:
    service: {name: authz, port: 8080}
    payloadFormatVersion: "1.0"
    enableSimpleResponses: false
    resultTtlSeconds: 300
    identityValidationExpression: "^Bearer [-0-9A-Za-z._]+$"
    timeoutMillis: 10000
"""

REQUEST_AUTHORIZER = """
apiVersion: propylon.dev/v1alpha1
kind: Authorizer
metadata: {name: simple, namespace: shop}
spec:
  type: REQUEST
  identitySource: ["$request.header.X-Token", "$context.identity.sourceIp"]
  function: {url: "http://authz.example:8080", payloadFormatVersion: "2.0", enableSimpleResponses: true}
"""

VALID = {
    "Api": API,
    "WebSocket Api": WEBSOCKET_API,
    "Stage": STAGE,
    "UsagePlan": USAGE_PLAN,
    "JWT Authorizer": JWT_AUTHORIZER,
    "HS256 Authorizer": HS_AUTHORIZER,
    "TOKEN Authorizer": TOKEN_AUTHORIZER,
    "REQUEST Authorizer": REQUEST_AUTHORIZER,
}


def _document(text: str, *, file: str = "shop.yaml", index: int = 1) -> manifests.Document:
    return manifests.Document(origin=diagnostics.Origin(file=file, document=index), body=yaml.safe_load(text))


def _parse_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        if name:
            parts.append(name)
        parts.extend(int(i) for i in indexes)
    return parts


def _edit(text: str, path: str | list[str | int], value: Any = None, *, delete: bool = False) -> manifests.Document:
    """The document in ``text`` with the field at ``path`` set to ``value`` (or deleted)."""
    body = yaml.safe_load(text)
    *parents, last = _parse_path(path) if isinstance(path, str) else path
    node = body
    for part in parents:
        node = node[part]
    if delete:
        del node[last]
    else:
        node[last] = value
    return manifests.Document(origin=diagnostics.Origin(file="shop.yaml", document=1), body=body)


def _found(document: manifests.Document) -> list[tuple[str, str]]:
    return [(d.field, d.message) for d in schemas.validate(document)]


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_design_examples_pass(text: str) -> None:
    assert schemas.validate(_document(text)) == []


BROKEN: list[tuple[str, manifests.Document, str, str]] = [
    (
        "unknown field in spec",
        _edit(API, "spec.foo", 1),
        "spec.foo",
        'unknown field "foo"',
    ),
    (
        "unknown field in a route's integration service",
        _edit(API, "spec.routes[2].integration.service.nmae", "hello"),
        "spec.routes[2].integration.service.nmae",
        'unknown field "nmae"',
    ),
    (
        "unknown field at the top",
        _edit(STAGE, "specs", {}),
        "specs",
        'unknown field "specs"',
    ),
    (
        "unknown field in a map value",
        _edit(STAGE, ["spec", "routeSettings", "GET /users", "cache", "ttl"], 5),
        'spec.routeSettings["GET /users"].cache.ttl',
        'unknown field "ttl"',
    ),
    (
        "unknown field in a list item",
        _edit(USAGE_PLAN, "spec.stages[0].quota", {"limit": 1}),
        "spec.stages[0].quota",
        'unknown field "quota"',
    ),
    (
        "wrong enum",
        _edit(API, "spec.routes[0].integration.type", "LAMBDA"),
        "spec.routes[0].integration.type",
        'Unsupported value: "LAMBDA": supported values: "HTTP_PROXY", "HTTP", "FUNCTION", "MOCK"',
    ),
    (
        "timeoutMillis too small",
        _edit(API, "spec.routes[0].integration.timeoutMillis", 10),
        "spec.routes[0].integration.timeoutMillis",
        "Invalid value: 10: should be greater than or equal to 50",
    ),
    (
        "timeoutMillis too large",
        _edit(API, "spec.routes[0].integration.timeoutMillis", 300001),
        "spec.routes[0].integration.timeoutMillis",
        "Invalid value: 300001: should be less than or equal to 300000",
    ),
    (
        "service and url both set",
        _edit(API, "spec.routes[2].integration.url", "http://hello.example"),
        "spec.routes[2].integration",
        "exactly one of service or url must be set for HTTP_PROXY, HTTP and FUNCTION integrations",
    ),
    (
        "neither service nor url",
        _edit(API, "spec.routes[1].integration.url", delete=True),
        "spec.routes[1].integration",
        "exactly one of service or url must be set for HTTP_PROXY, HTTP and FUNCTION integrations",
    ),
    (
        "MOCK without mock",
        _edit(API, "spec.routes[3].integration.mock", delete=True),
        "spec.routes[3].integration.mock",
        "a MOCK integration needs mock",
    ),
    (
        "requestTemplates on HTTP_PROXY",
        _edit(API, "spec.routes[1].integration.requestTemplates", {"application/json": "{}"}),
        "spec.routes[1].integration.requestTemplates",
        "requestTemplates apply only to HTTP and FUNCTION (proxy: false) integrations",
    ),
    (
        "responses on HTTP_PROXY",
        _edit(API, "spec.routes[1].integration.responses", [{"statusCode": 200}]),
        "spec.routes[1].integration.responses",
        "responses apply only to HTTP and FUNCTION (proxy: false) integrations",
    ),
    (
        "proxy: false on HTTP_PROXY",
        _edit(API, "spec.routes[1].integration.proxy", False),
        "spec.routes[1].integration.proxy",
        "proxy: false applies only to FUNCTION integrations",
    ),
    (
        "payloadFormatVersion on HTTP_PROXY",
        _edit(API, "spec.routes[1].integration.payloadFormatVersion", "1.0"),
        "spec.routes[1].integration.payloadFormatVersion",
        "payloadFormatVersion applies only to FUNCTION integrations",
    ),
    (
        "CORS * with credentials",
        _edit(API, "spec.cors", {"allowOrigins": ["https://a.example", "*"], "allowCredentials": True}),
        "spec.cors.allowOrigins",
        'allowOrigins "*" cannot be combined with allowCredentials: list the origins explicitly',
    ),
    (
        "algorithm none",
        _edit(JWT_AUTHORIZER, "spec.jwt.algorithms", ["RS256", "none"]),
        "spec.jwt.algorithms[1]",
        'Unsupported value: "none": supported values: "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", '
        '"ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"',
    ),
    (
        "HS256 without secretRef",
        _edit(JWT_AUTHORIZER, "spec.jwt.algorithms", ["RS256", "HS256"]),
        "spec.jwt.algorithms",
        "HS256, HS384 and HS512 need secretRef",
    ),
    (
        "secretRef with RS256",
        _edit(HS_AUTHORIZER, "spec.jwt.algorithms", ["HS256", "RS256"]),
        "spec.jwt.algorithms",
        "with secretRef, algorithms must be set and contain only HS256, HS384 or HS512",
    ),
    (
        "bad type",
        _edit(STAGE, "spec.throttle.burstLimit", "lots"),
        "spec.throttle.burstLimit",
        'Invalid value: "lots": must be of type integer',
    ),
    (
        "missing required field",
        _edit(STAGE, "spec.apiRef", delete=True),
        "spec.apiRef",
        "Required value",
    ),
    (
        "missing spec",
        _edit(USAGE_PLAN, "spec", delete=True),
        "spec",
        "Required value",
    ),
    (
        "basePath without a leading slash",
        _edit(STAGE, "spec.basePath", "prod"),
        "spec.basePath",
        'basePath must start with "/"',
    ),
    (
        "malformed routeKey",
        _edit(API, "spec.routes[0].routeKey", "get /users"),
        "spec.routes[0].routeKey",
        'Invalid value: "get /users": should match \'^(\\$default|\\$connect|\\$disconnect|'
        "(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|ANY) /[^ ]*|[^ $/][^ ]*)$'",
    ),
    (
        "WebSocket route key on an HTTP Api",
        _edit(API, "spec.routes[0].routeKey", "sendmessage"),
        "spec.routes[0].routeKey",  # offline the twin names the route; the API server says spec.routes
        'routes of an HTTP Api need a routeKey of the form "METHOD /path", "ANY /path" or "$default"',
    ),
    (
        "HTTP route key on a WebSocket Api",
        _edit(WEBSOCKET_API, "spec.routes[1].routeKey", "POST /send"),
        "spec.routes[1].routeKey",
        'routes of a WEBSOCKET Api need a routeKey "$connect", "$disconnect", "$default" or an action name',
    ),
    (
        "websocket limits on an HTTP Api",
        _edit(API, "spec.websocket", {"maxMessageBytes": 1024}),
        "spec.websocket",
        "websocket applies only to WEBSOCKET Apis",
    ),
    (
        "two-way route on an HTTP Api",
        _edit(API, "spec.routes[0].routeResponseSelectionExpression", "$default"),
        "spec.routes[0].routeResponseSelectionExpression",
        "routeResponseSelectionExpression applies only to routes of WEBSOCKET Apis",
    ),
    (
        "duplicate routeKey",
        _edit(API, "spec.routes[1].routeKey", "GET /users/{id}"),
        "spec.routes[1]",
        'Duplicate value: {"routeKey":"GET /users/{id}"}',
    ),
    (
        "unknown gateway response type",
        _edit(API, "spec.gatewayResponses.THROTLED", {"statusCode": 429}),
        "spec.gatewayResponses.THROTLED",
        'unknown field "THROTLED"',
    ),
    (
        "DAY quota with an offset",
        _edit(USAGE_PLAN, "spec.quota", {"limit": 10, "period": "DAY", "offset": 3}),
        "spec.quota.offset",
        "offset must be 0 for a DAY quota",
    ),
    (
        "TOKEN authorizer with two identity sources",
        _edit(TOKEN_AUTHORIZER, "spec.identitySource", ["$request.header.A", "$request.header.B"]),
        "spec.identitySource",
        "a TOKEN authorizer takes exactly one identitySource, a header ($request.header.<name>)",
    ),
    (
        "JWT authorizer without jwt",
        _edit(JWT_AUTHORIZER, "spec.jwt", delete=True),
        "spec.jwt",
        "a JWT authorizer needs jwt",
    ),
    (
        "simple responses with payload 1.0",
        _edit(TOKEN_AUTHORIZER, "spec.function.enableSimpleResponses", True),
        "spec.function.enableSimpleResponses",
        'enableSimpleResponses needs payloadFormatVersion "2.0"',
    ),
    (
        "routeSelectionExpression on an HTTP Api",
        _edit(API, "spec.routeSelectionExpression", "$request.body.action"),
        "spec.routeSelectionExpression",
        "routeSelectionExpression applies only to WEBSOCKET Apis",
    ),
    (
        "scopes without an authorizer",
        _edit(API, "spec.routes[0].authorizer", delete=True),
        "spec.routes[0].authorizationScopes",
        "authorizationScopes need an authorizer",
    ),
    (
        "MOCK with a url",
        _edit(API, "spec.routes[3].integration.url", "http://a.example"),
        "spec.routes[3].integration",
        "a MOCK integration takes neither service nor url",
    ),
    (
        "mock on a FUNCTION integration",
        _edit(API, "spec.routes[2].integration.mock", {"statusCode": 200}),
        "spec.routes[2].integration.mock",
        "mock applies only to MOCK integrations",
    ),
    (
        "path with url",
        _edit(API, "spec.routes[1].integration.path", "/v1"),
        "spec.routes[1].integration.path",
        "path applies only with service; put the path in url instead",
    ),
    (
        "requestParameters on FUNCTION",
        _edit(API, "spec.routes[2].integration.requestParameters", {"overwrite:header.X": "'v'"}),
        "spec.routes[2].integration.requestParameters",
        "requestParameters and responseParameters apply only to HTTP_PROXY and HTTP integrations",
    ),
    (
        "basePath with a percent-escape",
        _edit(STAGE, "spec.basePath", "/pr%6Fd"),
        "spec.basePath",
        "basePath must not contain percent-escapes: write the character itself (requests are matched after decoding)",
    ),
    (
        "route key with a percent-escape",
        _edit(API, "spec.routes[0].routeKey", "GET /admin%2Dpanel"),
        "spec.routes[0].routeKey",
        "a route key must not contain percent-escapes: write the character itself (requests are matched after "
        "decoding)",
    ),
    (
        "basePath with a trailing slash",
        _edit(STAGE, "spec.basePath", "/prod/"),
        "spec.basePath",
        'basePath must not end with "/" (except "/" itself)',
    ),
    (
        "WEEK quota starting on day 7",
        _edit(USAGE_PLAN, "spec.quota", {"limit": 10, "period": "WEEK", "offset": 7}),
        "spec.quota.offset",
        "offset of a WEEK quota is the day the week starts, 0 (Sunday) to 6 (Saturday)",
    ),
    (
        "REQUEST authorizer without function",
        _edit(REQUEST_AUTHORIZER, "spec.function", delete=True),
        "spec.function",
        "REQUEST and TOKEN authorizers need function",
    ),
    (
        "jwt on a TOKEN authorizer",
        _edit(TOKEN_AUTHORIZER, "spec.jwt", {"issuer": "https://issuer.example.com"}),
        "spec.jwt",
        "jwt applies only to JWT authorizers",
    ),
    (
        "function on a JWT authorizer",
        _edit(JWT_AUTHORIZER, "spec.function", {"url": "http://authz.example"}),
        "spec.function",
        "function applies only to REQUEST and TOKEN authorizers",
    ),
    (
        "identityValidationExpression on a REQUEST authorizer",
        _edit(REQUEST_AUTHORIZER, "spec.function.identityValidationExpression", "^x$"),
        "spec.function.identityValidationExpression",
        "identityValidationExpression applies only to TOKEN authorizers",
    ),
    (
        "secretRef and jwksUri",
        _edit(HS_AUTHORIZER, "spec.jwt.jwksUri", "https://issuer.example.com/jwks"),
        "spec.jwt.jwksUri",
        "secretRef and jwksUri cannot both be set",
    ),
    (
        "authorizer function with service and url",
        _edit(TOKEN_AUTHORIZER, "spec.function.url", "http://authz.example"),
        "spec.function",
        "exactly one of service or url must be set",
    ),
    (
        "canary share over 100",
        _edit(STAGE, "spec.canary.percentTraffic", 100.5),
        "spec.canary.percentTraffic",
        "Invalid value: 100.5: should be less than or equal to 100",
    ),
    (
        "wildcard host in the middle",
        _edit(STAGE, "spec.hosts", ["api.*.example.com"]),
        "spec.hosts[0]",
        'Invalid value: "api.*.example.com": should match '
        "'^(\\*\\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$'",
    ),
    (
        "name that is not a DNS subdomain",
        _edit(API, "metadata.name", "Users_API"),
        "metadata.name",
        'Invalid value: "Users_API": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
        "characters, '-' or '.', and must start and end with an alphanumeric character",
    ),
    (
        "missing name",
        _edit(API, "metadata.name", delete=True),
        "metadata.name",
        "Required value: name is required",
    ),
    (
        "wrong apiVersion",
        _edit(API, "apiVersion", "propylon.dev/v1"),
        "apiVersion",
        'Unsupported value: "propylon.dev/v1": supported values: "propylon.dev/v1alpha1"',
    ),
    (
        "unknown kind in the group",
        _edit(API, "kind", "Route"),
        "kind",
        'Unsupported value: "Route": supported values: "Api", "Stage", "UsagePlan", "Authorizer"',
    ),
]


@pytest.mark.parametrize(("document", "field", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_documents_name_field_and_problem(document: manifests.Document, field: str, message: str) -> None:
    assert (field, message) in _found(document)


def test_every_rule_has_a_broken_document() -> None:
    # So that tests/controlplane/test_crd_rules.py compares every twin with the API server's CEL.
    covered = {message for *_, message in BROKEN}
    unreachable = {'the "none" algorithm is never accepted'}  # the enum refuses "none" first
    assert set(schema_rules.TWINS) - covered == unreachable


def test_a_diagnostic_names_file_document_object_and_field() -> None:
    document = _edit(API, "spec.routes[0].integration.timeoutMillis", 10)
    document = manifests.Document(origin=diagnostics.Origin(file="apis/users.yaml", document=3), body=document.body)
    (problem,) = schemas.validate(document)
    assert (problem.kind, problem.namespace, problem.name) == ("Api", "shop", "users")
    assert problem.severity is diagnostics.Severity.ERROR
    assert str(problem) == (
        "apis/users.yaml: document 3 (Api shop/users): spec.routes[0].integration.timeoutMillis: "
        "Invalid value: 10: should be greater than or equal to 50"
    )


def test_one_mistake_one_diagnostic() -> None:
    assert _found(_edit(API, "spec.routes[0].integration.type", "LAMBDA")) == [
        (
            "spec.routes[0].integration.type",
            'Unsupported value: "LAMBDA": supported values: "HTTP_PROXY", "HTTP", "FUNCTION", "MOCK"',
        )
    ]


def test_every_problem_is_reported_in_document_order() -> None:
    body = yaml.safe_load(API)
    body["spec"]["routes"][3]["integration"]["mock"]["statusCode"] = 99
    body["spec"]["protocol"] = "GRPC"
    body["spec"]["routes"][0]["integration"]["bogus"] = True
    fields = [field for field, _ in _found(_document(yaml.safe_dump(body, sort_keys=False)))]
    assert fields == ["spec.protocol", "spec.routes[0].integration.bogus", "spec.routes[3].integration.mock.statusCode"]


def test_map_keys_are_dotted_when_plain_and_quoted_otherwise() -> None:
    document = _edit(STAGE, "spec.variables.lambdaAlias", 5)
    assert _found(document) == [("spec.variables.lambdaAlias", "Invalid value: 5: must be of type string")]
    document = _edit(USAGE_PLAN, ["spec", "stages", 0, "throttle", "GET /users", "rateLimit"], -1)
    assert _found(document) == [
        ('spec.stages[0].throttle["GET /users"].rateLimit', "Invalid value: -1: should be greater than or equal to 0")
    ]


def test_the_none_algorithm_is_refused_even_if_the_enum_were_widened() -> None:
    # The enum already refuses "none"; the CEL rule is the second lock, and rules are not run
    # on values the schema refused, so check its twin directly.
    twin = schema_rules.TWINS['the "none" algorithm is never accepted']
    assert not twin.check({"algorithms": ["RS256", "None"]})
    assert twin.check({"algorithms": ["RS256"]}) and twin.check({})


def test_type_errors_do_not_crash_rule_checks() -> None:
    document = _edit(API, "spec.routes[0].integration", "http://users")
    assert _found(document) == [("spec.routes[0].integration", 'Invalid value: "http://users": must be of type object')]
    document = _edit(JWT_AUTHORIZER, "spec.jwt.algorithms", "RS256")
    assert _found(document) == [("spec.jwt.algorithms", 'Invalid value: "RS256": must be of type array')]


def test_rules_see_defaults() -> None:
    # protocol defaults to HTTP, so a WebSocket-only field is caught even when protocol is absent.
    document = _edit(WEBSOCKET_API, "spec.protocol", delete=True)
    assert ("spec.routeSelectionExpression", "routeSelectionExpression applies only to WEBSOCKET Apis") in _found(
        document
    )
    # type defaults to JWT: a function without a type is misplaced.
    document = _edit(TOKEN_AUTHORIZER, "spec.type", delete=True)
    assert ("spec.function", "function applies only to REQUEST and TOKEN authorizers") in _found(document)


def test_preserved_fields_are_not_checked() -> None:
    document = _edit(API, "spec.models.Free", {"anything": {"goes": [1, 2]}, "x-extension": True})
    assert schemas.validate(document) == []


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: Secret\nmetadata: {name: alice}\nstringData: {value: x}\nbogus: 1\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: users}\nspec: {ports: [{port: 80}]}\n",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: users-1}\nendpoints: []\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {x: 1}\n",
    ],
)
def test_other_groups_are_not_ours_to_check(text: str) -> None:
    document = _document(text)
    assert schemas.validate(document) == []
    assert schemas.with_defaults(document) == document.body


def test_kinds_and_api_version() -> None:
    assert schemas.KINDS == ("Api", "Stage", "UsagePlan", "Authorizer")
    assert schemas.API_VERSION == "propylon.dev/v1alpha1"


# --- defaults ----------------------------------------------------------------------------------


def test_api_defaults() -> None:
    document = _document(
        """
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: tiny}
spec:
  routes:
    - routeKey: "GET /a"
      integration: {type: HTTP_PROXY, url: "http://a.example"}
    - routeKey: "$default"
      integration: {type: MOCK, mock: {}}
"""
    )
    spec = schemas.with_defaults(document)["spec"]
    assert spec["protocol"] == "HTTP"
    assert spec["apiKeySource"] == "HEADER"
    assert "cors" not in spec and "websocket" not in spec  # absent objects stay absent
    first, last = spec["routes"]
    assert first["apiKeyRequired"] is False
    assert first["integration"] == {
        "type": "HTTP_PROXY",
        "url": "http://a.example",
        "timeoutMillis": 29000,
        "passthroughBehavior": "WHEN_NO_MATCH",
    }
    assert last["integration"]["mock"] == {"statusCode": 200}
    assert schemas.validate(document) == []


def test_present_objects_get_their_defaults() -> None:
    body = schemas.with_defaults(
        _document(
            """
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {name: chat}
spec: {protocol: WEBSOCKET, websocket: {idleTimeoutSeconds: 30}, cors: {allowOrigins: [a]}}
"""
        )
    )
    assert body["spec"]["websocket"] == {
        "idleTimeoutSeconds": 30,
        "maxMessageBytes": 131072,
        "maxConnectionSeconds": 7200,
    }
    assert body["spec"]["cors"] == {"allowOrigins": ["a"], "allowCredentials": False}


def test_stage_defaults() -> None:
    body = schemas.with_defaults(_document("kind: Stage\napiVersion: propylon.dev/v1alpha1\nmetadata: {name: s}\n"
                                           "spec: {apiRef: a, cache: {enabled: true}, accessLog: {}}\n"))  # fmt: skip
    spec = body["spec"]
    assert spec["endpoint"] == "PUBLIC"
    assert "basePath" not in spec  # "/<metadata.name>" is the compiler's to fill in, not the schema's
    assert spec["cache"] == {
        "enabled": True,
        "ttlSeconds": 300,
        "capacityMiB": 64,
        "requireAuthorizationForCacheControl": True,
        "unauthorizedCacheControlHeaderStrategy": "SUCCEED_WITH_RESPONSE_HEADER",
    }
    assert spec["accessLog"] == {"enabled": False}


def test_usage_plan_defaults() -> None:
    spec = schemas.with_defaults(_edit(USAGE_PLAN, "spec.quota", {"limit": 5, "period": "WEEK"}))["spec"]
    assert spec["quota"] == {"limit": 5, "period": "WEEK", "offset": 0}
    assert spec["allowCacheInvalidation"] is False


def test_authorizer_defaults() -> None:
    spec = schemas.with_defaults(_document(HS_AUTHORIZER))["spec"]
    assert spec["type"] == "JWT"
    assert spec["identitySource"] == ["$request.header.Authorization"]
    assert spec["jwt"]["clockSkewSeconds"] == 60
    spec = schemas.with_defaults(_edit(REQUEST_AUTHORIZER, "spec.function", {"url": "http://a"}))["spec"]
    assert spec["function"] == {
        "url": "http://a",
        "payloadFormatVersion": "1.0",
        "enableSimpleResponses": False,
        "resultTtlSeconds": 300,
        "timeoutMillis": 10000,
    }


def test_explicit_values_win_and_the_input_is_not_changed() -> None:
    document = _document(STAGE)
    before = copy.deepcopy(document.body)
    body = schemas.with_defaults(document)
    assert document.body == before
    assert body["spec"]["cache"]["ttlSeconds"] == 300 and body["spec"]["cache"]["enabled"] is False
    assert body["spec"]["endpoint"] == "PUBLIC"
    body["spec"]["hosts"].append("changed.example")
    assert document.body == before


def test_null_gets_the_default_or_counts_as_absent() -> None:
    document = _document(
        "apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: s}\n"
        "spec:\n  apiRef: a\n  endpoint:\n  hosts:\n  variables: {a: x, b: null}\n  cache: {ttlSeconds: null}\n"
    )
    spec = schemas.with_defaults(document)["spec"]
    assert spec["endpoint"] == "PUBLIC"
    assert "hosts" not in spec
    assert spec["variables"] == {"a": "x"}
    assert spec["cache"]["ttlSeconds"] == 300
    assert schemas.validate(document) == []
