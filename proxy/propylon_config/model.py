"""The snapshot model: the one contract between the control plane and the data plane.

A ``GatewayConfig`` is everything one gateway serves, compiled ahead of time. It is plain
data: frozen dataclasses, tuples instead of lists, enums for closed sets, and a ``source``
on each element pointing back at the manifest it came from. The proxy owns this schema the
way Envoy owns xDS; the compiler only produces it.

Rules for this module: standard library only, no I/O, no behaviour beyond small derived
properties. Secrets never appear here in plain text: an API key is only its id and a keyed hash
(HMAC-SHA256 under a secret that is never in the snapshot, see ``KeyHashing``); a JWT
Authorizer's shared HS* secret travels only sealed, see ``JwtSettings.sealed_secret``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

SCHEMA_VERSION = 1
"""Bumped whenever a change to these types means an old proxy cannot read a new snapshot."""


class IntegrationType(enum.Enum):
    HTTP_PROXY = "HTTP_PROXY"
    HTTP = "HTTP"
    FUNCTION = "FUNCTION"
    MOCK = "MOCK"


class Protocol(enum.Enum):
    HTTP = "HTTP"
    WEBSOCKET = "WEBSOCKET"


class Endpoint(enum.Enum):
    """Which listener serves a stage: PUBLIC stages are on both, PRIVATE only on the internal one."""

    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


class AuthorizerType(enum.Enum):
    JWT = "JWT"
    REQUEST = "REQUEST"
    TOKEN = "TOKEN"


class SegmentKind(enum.Enum):
    """Kinds of path-template segment, declared in precedence order (first wins)."""

    LITERAL = "LITERAL"
    PARAM = "PARAM"
    GREEDY = "GREEDY"


class PassthroughBehavior(enum.Enum):
    WHEN_NO_MATCH = "WHEN_NO_MATCH"
    WHEN_NO_TEMPLATES = "WHEN_NO_TEMPLATES"
    NEVER = "NEVER"


class MappingAction(enum.Enum):
    APPEND = "append"
    OVERWRITE = "overwrite"
    REMOVE = "remove"


class QuotaPeriod(enum.Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


class MappingTarget(enum.Enum):
    HEADER = "header"
    QUERYSTRING = "querystring"
    PATH = "path"


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where an element came from: enough to name it in a log line or a status condition."""

    file: str
    document: int  # 1-based, as diagnostics print it
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    kind: SegmentKind
    value: str  # the literal text, or the parameter name (without braces or plus)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mock:
    status_code: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceTarget:
    """An in-cluster Service port; resolved to endpoints through ``GatewayConfig.endpoints``."""

    namespace: str
    name: str
    port: int

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParameterMapping:
    """One ``requestParameters``/``responseParameters`` entry, e.g. ``overwrite:header.X-Id``."""

    action: MappingAction
    target: MappingTarget
    name: str  # header or query name; empty for ``path``
    value: str  # the raw value expression; empty for ``remove``


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMappings:
    status_code: str  # the status as written ("404"); matched against the backend status
    mappings: tuple[ParameterMapping, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrationResponse:
    """One of an integration's ``responses`` (DESIGN.md §2.5): checked in order, first match wins."""

    selection_pattern: str | None = None  # a full-match regex; None is the default response
    status_code: int = 200
    headers: tuple[tuple[str, str], ...] = ()  # static response headers
    response_templates: tuple[tuple[str, str], ...] = ()  # (media type, lower-cased; VTL template)


@dataclass(frozen=True, slots=True, kw_only=True)
class Integration:
    type: IntegrationType
    url: str | None = None  # absolute URL template, stage variables already substituted
    service: ServiceTarget | None = None
    path: str | None = None  # upstream path template for ``service``; None = request path minus basePath
    method: str | None = None  # None = the request's method
    timeout_ms: int = 29000
    payload_format_version: str = "2.0"
    proxy: bool = True  # FUNCTION: False is a custom (template) integration (DESIGN.md §2.5)
    request_parameters: tuple[ParameterMapping, ...] = ()
    response_parameters: tuple[ResponseMappings, ...] = ()
    request_templates: tuple[tuple[str, str], ...] = ()  # (content type, VTL template)
    passthrough_behavior: PassthroughBehavior = PassthroughBehavior.WHEN_NO_MATCH
    mock: Mock | None = None
    responses: tuple[IntegrationResponse, ...] = ()  # HTTP and custom FUNCTION (DESIGN.md §2.5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttle:
    rate_limit: float  # tokens per second
    burst_limit: int  # bucket size


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    enabled: bool = False
    ttl_seconds: int = 300
    capacity_mib: int = 64
    require_authorization_for_cache_control: bool = True
    unauthorized_cache_control_header_strategy: str = "SUCCEED_WITH_RESPONSE_HEADER"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestValidation:
    body_model: str | None = None
    required_parameters: tuple[str, ...] = ()  # e.g. "querystring.limit", "header.X-Trace"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One route of one stage, with everything it needs decided at compile time."""

    id: str  # stable, readable: "<ns>/<api>/<stage>/<routeKey>"
    route_key: str  # as written: "GET /users/{id}", "ANY /x", "$default"
    method: str  # "GET", ..., "ANY", or "$default"
    path: str  # the path template ("" for $default)
    segments: tuple[Segment, ...]
    integration: Integration
    authorizer: str | None = None  # Authorizer id "<ns>/<name>"
    authorization_scopes: tuple[str, ...] = ()
    api_key_required: bool = False
    request_validation: RequestValidation | None = None
    cache_key_parameters: tuple[str, ...] = ()
    throttle: Throttle | None = None  # effective stage limit for this route (routeSettings or stage default)
    throttle_from_route_settings: bool = False  # ``throttle`` is the route's own (reason "route", not "stage")
    cache: CacheSettings | None = None  # effective cache setting; None = not cached
    route_response_selection_expression: str | None = None
    # A route whose Authorizer, model, Service or stage variable is missing or broken stays in
    # the table (so its traffic never falls through to a less specific route) and refuses every
    # request with this gateway response type (DESIGN.md section 1, "fails closed").
    refusal: str | None = None
    source: Source | None = None

    @property
    def is_default(self) -> bool:
        return self.method == "$default"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayResponse:
    status_code: int
    headers: tuple[tuple[str, str], ...] = ()
    body: str  # the JSON body as text


@dataclass(frozen=True, slots=True, kw_only=True)
class Cors:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSocketLimits:
    max_message_bytes: int = 131072
    idle_timeout_seconds: int = 600
    max_connection_seconds: int = 7200


@dataclass(frozen=True, slots=True, kw_only=True)
class Api:
    id: str  # "<ns>/<name>"
    namespace: str
    name: str
    protocol: Protocol = Protocol.HTTP
    description: str = ""
    api_key_source: str = "HEADER"
    cors: Cors | None = None
    models: tuple[tuple[str, str], ...] = ()  # (model name, JSON Schema as canonical JSON text)
    binary_media_types: tuple[str, ...] = ()
    route_selection_expression: str | None = None
    websocket: WebSocketLimits | None = None
    source: Source | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Canary:
    percent_traffic: float
    api: str  # Api id serving canary requests
    variables: tuple[tuple[str, str], ...] = ()
    routes: tuple[Route, ...] = ()  # compiled with the canary's variables, precedence order
    # The canary Api's gateway-response overrides, merged as ``Stage.gateway_responses`` are: a
    # canary request's refusals are its Api's (DESIGN.md section 3: overridable per Api).
    gateway_responses: tuple[tuple[str, GatewayResponse], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """A deployed Api: where it is served and the route table it serves, in precedence order."""

    id: str  # "<ns>/<name>"
    namespace: str
    name: str
    api: str  # Api id
    base_path: str  # "/prod" or "/"
    hosts: tuple[str, ...] = ()  # lowercased; empty = any host; may start with "*."
    endpoint: Endpoint = Endpoint.PUBLIC
    variables: tuple[tuple[str, str], ...] = ()
    routes: tuple[Route, ...] = ()  # sorted by precedence (most specific first, $default last)
    gateway_responses: tuple[tuple[str, GatewayResponse], ...] = ()  # type -> response, Api overrides merged
    access_log: bool = False
    throttle: Throttle | None = None
    cache: CacheSettings | None = None
    canary: Canary | None = None
    cache_flush: str = ""  # the propylon.dev/flush-cache annotation: a new value flushes its cache
    source: Source | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretRef:
    """Where a secret lives (a key of a Secret in the object's namespace), never what it is."""

    namespace: str
    name: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtSettings:
    """How a JWT Authorizer verifies tokens (DESIGN.md section 1 and 8, "JWT").

    Keys come from ``jwks_uri``, or, when it is None, from the ``jwks_uri`` of the issuer's
    ``/.well-known/openid-configuration``. With ``secret_ref`` the tokens are HS* and the shared
    secret travels as ``sealed_secret``: ``"aes-siv:" + base64url(AES-SIV(secret))`` under a key
    derived from the install's sealing secret, with the Authorizer id as associated data (so a
    sealed value cannot be moved to another Authorizer). The sealing secret is never in the
    snapshot; a compile without one (``render``, ``validate``) leaves ``sealed_secret`` empty,
    and an empty or unopenable value makes the Authorizer refuse every request.
    """

    issuer: str
    audience: tuple[str, ...] = ()  # empty: any audience
    jwks_uri: str | None = None  # None: discovered from the issuer
    algorithms: tuple[str, ...] = ()  # never "none"; only HS* with secret_ref, and then only HS*
    secret_ref: SecretRef | None = None
    sealed_secret: str = ""
    clock_skew_seconds: int = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizerFunction:
    """A REQUEST or TOKEN Authorizer's function: invoked like a FUNCTION integration."""

    service: ServiceTarget | None = None
    url: str | None = None  # base URL; the invocation path is appended
    payload_format_version: str = "1.0"
    enable_simple_responses: bool = False
    result_ttl_seconds: int = 300
    identity_validation_expression: str | None = None  # TOKEN only
    timeout_ms: int = 10000


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorizer:
    id: str  # "<ns>/<name>": what ``Route.authorizer`` names, and the stable id of its runtime state
    namespace: str
    name: str
    type: AuthorizerType
    identity_source: tuple[str, ...] = ("$request.header.Authorization",)
    jwt: JwtSettings | None = None  # JWT only
    function: AuthorizerFunction | None = None  # REQUEST and TOKEN only
    source: Source | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointAddress:
    address: str  # IP (or hostname in `serve`)
    port: int
    ready: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEndpoints:
    key: str  # ServiceTarget.key
    addresses: tuple[EndpointAddress, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    limit: int  # admitted requests per key per period
    period: QuotaPeriod
    offset: int = 0  # the day the period starts: WEEK 0 = Sunday .. 6; MONTH 0 .. 27 = day minus one


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStage:
    """One Stage a usage plan covers, with its per-route, per-key limits."""

    stage: str  # Stage id "<ns>/<name>"
    route_throttles: tuple[tuple[str, Throttle], ...] = ()  # (route key, limit), sorted by route key


@dataclass(frozen=True, slots=True, kw_only=True)
class UsagePlan:
    id: str  # "<ns>/<name>"
    namespace: str
    name: str
    stages: tuple[PlanStage, ...] = ()  # sorted by stage id
    throttle: Throttle | None = None  # per key, across the plan's stages
    quota: Quota | None = None  # per key
    allow_cache_invalidation: bool = False
    source: Source | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """One API key (a labelled Secret): its id and a keyed hash of its value, never the value.

    ``digest`` is the hex HMAC-SHA256 of the value under the install's key-hashing secret, or
    "" when the compile had no such secret (``propylon render``) or the key is disabled: an
    empty digest matches nothing.
    """

    id: str  # "<ns>/<Secret name>"
    namespace: str
    name: str  # the key id clients and logs see
    plans: tuple[str, ...] = ()  # UsagePlan ids that select it, sorted
    enabled: bool = True
    digest: str = ""
    source: Source | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyHashing:
    """Which secret the snapshot's key digests were made with, never the secret itself.

    ``key_id`` is a fingerprint of the secret (HMAC of a fixed label under it), so a proxy can
    tell whether the secret it holds is the one the compiler used before trusting any lookup.
    """

    algorithm: str = "HMAC-SHA256"
    key_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Gateway-wide knobs that are not per object."""

    max_body_bytes: int = 10 * 1024 * 1024
    gateway_throttle: Throttle = field(default_factory=lambda: Throttle(rate_limit=10000.0, burst_limit=5000))


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """One immutable, versioned snapshot. ``version`` is a hash of everything else."""

    version: str
    schema_version: int = SCHEMA_VERSION
    apis: tuple[Api, ...] = ()
    stages: tuple[Stage, ...] = ()  # sorted by id; conflict losers are absent
    endpoints: tuple[ServiceEndpoints, ...] = ()  # sorted by key
    settings: Settings = field(default_factory=Settings)
    authorizers: tuple[Authorizer, ...] = ()  # sorted by id; only usable ones (a route naming another refuses)
    usage_plans: tuple[UsagePlan, ...] = ()  # sorted by id
    api_keys: tuple[ApiKey, ...] = ()  # sorted by id
    key_hashing: KeyHashing | None = None  # None: digests are empty, no key can match
