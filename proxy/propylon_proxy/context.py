"""The per-request record: everything the gateway learns about one request, in one place.

The dispatcher fills in what hygiene and routing found; each step adds what it learns (the
authorizer its principal and claims, the API-key step the key id and plan, the cache its
outcome); the integration adds its timings. Mapping expressions (``$context.*``), function
events and the access log read this record and nothing else, so a fact learnt once is the same
fact everywhere (Envoy's StreamInfo plays this part).

Plain data with a few derived views; no I/O, nothing that blocks, nothing secret: an API key is
held by its id, never its value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from propylon_config import model

if TYPE_CHECKING:  # only the types: plans import this module at run time
    from propylon_proxy import hygiene, incoming, metrics, plans, routing


@dataclasses.dataclass(slots=True)
class RequestContext:
    """One request, from its head to the last access-log field."""

    request: incoming.Request  # aiohttp's web.BaseRequest or fast_server's FastRequest
    plan: plans.Plan | None
    request_id: str
    peer: str  # the socket peer
    source_ip: str  # the client: the peer, or the last untrusted hop behind trusted proxies
    started: float  # monotonic, for durations
    started_wall: float  # time.time(), turned into requestTime only when something needs it
    # The peer is in --trusted-proxies: its forwarding headers count (forwarding, and events'
    # headers, which must pass on exactly what a proxied backend would get).
    peer_trusted: bool = False
    # What routing found.
    target: hygiene.Target | None = None
    stage: model.Stage | None = None
    match: routing.Match | None = None
    labels: metrics.Labels | None = None  # the matched route's metric labels, from its plan
    series: metrics.RouteSeries | None = None  # the matched route's request series, from its plan
    # What steps learn.
    principal_id: str | None = None
    claims: Mapping[str, Any] | None = None  # a JWT's verified claims
    scopes: tuple[str, ...] | None = None
    authorizer_context: Mapping[str, Any] | None = None  # an authorizer function's ``context``
    authorizer_context_digest: str | None = None  # its ``caller_keys.context_digest``, once per answer
    # A digest of what proved the caller (a JWT's bytes, an authorizer function's identity
    # values): the response cache tells callers apart by it when no principal does.
    caller_digest: bytes | None = None
    usage_identifier_key: str | None = None  # from an authorizer, for apiKeySource AUTHORIZER
    api_key_id: str | None = None
    usage_plan: str | None = None  # "<ns>/<plan>"
    cache: str | None = None  # "hit" | "miss" | "bypass"; None on routes without a cache
    cache_note: Any = None  # the cache step's own per-request state (its coalescing lead)
    canary: bool = False
    traceparent: str | None = None  # the gateway's own span as W3C traceparent (tracing.traceparent)
    # What the response was.
    status: int = 0
    response_length: int = 0
    integration_latency: float | None = None  # seconds until the integration's response head
    integration_status: int | None = None
    error_type: str | None = None
    stalled: str | None = None  # "backend" or "client" when a relay was cut for no progress
    # A WebSocket upgrade's connection id, drawn before $connect's checks so the authorizer's
    # event carries the id the connection then keeps (AWS's requestContext.connectionId).
    connection_id: str | None = None
    # Headers as text pairs, decoded once on first use.
    _headers: list[tuple[str, str]] | None = None

    @property
    def route(self) -> model.Route | None:
        return self.match.route if self.match is not None else None

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The client's request headers as sent (latin-1 text, one char per byte), in order."""
        if self._headers is None:
            self._headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.request.raw_headers]
        return self._headers

    @property
    def query(self) -> str:
        """The raw query string as sent, without ``?``."""
        return self.target.query if self.target is not None else self.request.raw_path.partition("?")[2]

    @property
    def stage_variables(self) -> Mapping[str, str]:
        if self.plan is None or self.stage is None:
            return {}
        return (self.plan.canary_variables if self.canary else self.plan.variables).get(self.stage.id, {})

    @property
    def served_api(self) -> str:
        """The id of the Api serving the request: the stage's, or its canary's on the canary side
        ("" before a stage is known); what the access log, ``$context.apiId`` and events name."""
        stage = self.stage
        if stage is None:
            return ""
        return stage.canary.api if self.canary and stage.canary is not None else stage.api

    @property
    def gateway_responses(self) -> Mapping[str, model.GatewayResponse] | None:
        """The gateway-response overrides of the Api serving the request: the stage's, or its
        canary's on the canary side (None before a stage is known)."""
        if self.plan is None or self.stage is None:
            return None
        if self.canary:
            return self.plan.canary_gateway_responses.get(self.stage.id)
        return self.plan.gateway_responses.get(self.stage.id)
