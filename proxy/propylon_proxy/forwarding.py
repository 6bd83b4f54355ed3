"""Headers between client and backend: hop-by-hop removal, forwarding headers, trace context.

Pure functions. Order matters and is the point of this module: headers named in
``Connection`` are removed before the gateway adds its own, so a client can never use
``Connection: X-Forwarded-For`` to strip what the gateway sets; client-sent forwarding headers
(and their ``_`` twins, which some backends fold into the same name) are dropped unless the
socket peer is a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from propylon_config.headers import GATEWAY_OWNED, folded
from propylon_proxy import ids, settings

Headers = list[tuple[str, str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers of a response the gateway makes itself (MOCK, gateway responses) that it always sets
# from the body it sends: configuration can never set them and so contradict that body.
GATEWAY_FRAMED = HOP_BY_HOP | {"content-length"}
# Set by the gateway itself; whatever the client sent under these names is never forwarded.
# (Expect is answered by the gateway, which has already invited the body.)
_GATEWAY_OWNED = frozenset({"host", "x-request-id", "traceparent", "expect"})
# A backend must not be able to make its own answer look like a gateway response (the access
# log, metrics and clients read x-propylon-error-type as the gateway's word), nor speak for the
# cache: x-propylon-cache is there exactly when the route caches (DESIGN.md section 8 "Cache"),
# once, and a backend's copy must not be stored and replayed with every hit.
GATEWAY_SAYS = frozenset({"x-propylon-error-type", "x-propylon-cache", "x-propylon-cache-invalidation"})
_NOT_TO_CLIENT = HOP_BY_HOP | {"x-request-id"} | GATEWAY_SAYS
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _is_forwarding(name: str) -> bool:
    return name in ("forwarded", "x-real-ip") or name.startswith("x-forwarded-")


def _connection_named(pairs: Sequence[tuple[str, str]], lowered: Sequence[str]) -> frozenset[str]:
    """The header names listed in ``Connection`` headers (lower case)."""
    if "connection" not in lowered:
        return frozenset()
    return frozenset(
        token.strip().lower()
        for (_, value), lower in zip(pairs, lowered, strict=True)
        if lower == "connection"
        for token in value.split(",")
    )


def strip_hop_by_hop(headers: Iterable[tuple[str, str]]) -> Headers:
    """Drop hop-by-hop headers and every header the ``Connection`` header names."""
    pairs = list(headers)
    lowered = [n.lower() for n, _ in pairs]
    named = _connection_named(pairs, lowered)
    return [pair for pair, lower in zip(pairs, lowered, strict=True) if lower not in HOP_BY_HOP and lower not in named]


def is_trusted(peer: str | None, trusted: Sequence[settings.Network]) -> bool:
    if not peer or not trusted:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def _hop_address(hop: str) -> IPAddress | None:
    """The address an X-Forwarded-For hop names, its port dropped (``1.2.3.4:5678``,
    ``[2001:db8::1]:443``, ``[::1]``); None for anything else (``unknown``, a host name, junk)."""
    if hop.startswith("["):
        inside, bracket, _ = hop[1:].partition("]")
        hop = inside if bracket else hop
    elif hop.count(":") == 1:  # IPv4 with a port; an IPv6 address has two colons or more
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


def source_ip(peer: str, headers: Iterable[tuple[str, str]], trusted: Sequence[settings.Network]) -> str:
    """The socket peer, or when it is trusted the last hop of X-Forwarded-For that is not.

    Walked from the right, each hop is the word of the trusted proxy after it. A hop that is no
    IP address (junk, a host name: ``sourceIp`` is an address to every consumer, Powertools'
    models refuse anything else) ends the walk: what lies left of it was written by whoever it
    was, so the answer is the nearest address that a trusted proxy vouched for, else the peer.
    Ports are dropped before the trusted list is consulted and in the answer."""
    if not is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for n, v in headers if n.lower() == "x-forwarded-for" for h in v.split(",") if h.strip()]
    nearest = peer
    for hop in reversed(hops):
        address = _hop_address(hop)
        if address is None:
            return nearest
        nearest = str(address)
        if not any(address in network for network in trusted):
            return nearest
    return nearest  # every hop is a trusted proxy: the farthest one


def incoming_trace(incoming: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid W3C ``traceparent``, None for absent or broken."""
    if incoming:
        found = _TRACEPARENT.match(incoming.strip())
        if found:
            version, trace_id, parent_id, flags = found.groups()
            if version != "ff" and trace_id != "0" * 32 and parent_id != "0" * 16:
                return trace_id, parent_id, flags
    return None


def traceparent(incoming: str | None) -> str:
    """Continue a valid W3C trace with a new parent id (the gateway's span), else start one."""
    continued = incoming_trace(incoming)
    if continued is not None:
        return f"00-{continued[0]}-{ids.span_id()}-{continued[2]}"
    return f"00-{ids.trace_id()}-{ids.span_id()}-01"


# What upstream_request_headers does with a header, by its name as sent. A request's names are
# few and repeat from request to request (Host, User-Agent, Accept, ...): each is classified
# once, then looked up. The table stops growing at _KINDS_MAX names (names are the client's: a
# client inventing names gets them classified per request, never more memory).
# _LENGTH is the client's Content-Length, sent in the gateway's own spelling; _TWIN a name a
# backend folding "_" into "-" reads as another (kept unless the route keys its cache by that one).
_KEEP, _DROP, _HOST, _TRACE, _CONNECTION, _FOR, _PROTO, _FWD_HOST, _FWD_OTHER, _LENGTH, _TWIN = range(11)
_KINDS: dict[str, int] = {}
_KINDS_MAX = 1024
# Every dashed name whose underscore twin is dropped: what the gateway sets or frames itself, and
# the shared list of names only the gateway may set (DESIGN.md section 8). A backend folding
# ``Content_Length`` into ``Content-Length`` would read a second, contradicting framing header.
_TWIN_DROPPED = HOP_BY_HOP | GATEWAY_FRAMED | _GATEWAY_OWNED | GATEWAY_OWNED
_FORWARDING_KINDS = {"x-forwarded-for": _FOR, "x-forwarded-proto": _PROTO, "x-forwarded-host": _FWD_HOST}


def _kind(name: str) -> int:
    """How a client header name is treated, judged by the name a folding backend reads."""
    lower = name.lower()
    if lower == "connection":
        return _CONNECTION
    if lower in HOP_BY_HOP:
        return _DROP
    if lower == "content-length":
        return _LENGTH
    if lower == "host":
        return _HOST
    if lower == "traceparent":
        return _TRACE
    canonical = folded(lower.strip())
    if canonical != lower:  # an underscore twin: judged as its dashed name, never forwarded as it
        dropped = canonical in _TWIN_DROPPED or _is_forwarding(canonical)
        return _DROP if dropped else _TWIN
    if canonical in _GATEWAY_OWNED:
        return _DROP
    if _is_forwarding(canonical):
        return _FORWARDING_KINDS.get(canonical, _FWD_OTHER)
    return _KEEP


def cache_key_headers(cache_key_parameters: Iterable[str]) -> frozenset[str]:
    """The folded names of the ``header.X`` entries of a route's ``cacheKeyParameters``: what
    ``upstream_request_headers(keyed=...)`` takes, computed once per route at plan time."""
    return frozenset(folded(p.partition(".")[2]) for p in cache_key_parameters if p.startswith("header."))


def _content_length(value: str) -> str | None:
    """The gateway's spelling of a client's Content-Length (``05`` -> ``5``), None if not a number.

    The server has already refused a body that does not match it, so it is the length of the
    body sent; a backend must never see the client's spelling of framing (a leading zero or a
    sign reads differently to different parsers)."""
    value = value.strip()
    if not value or not value.isascii() or not value.isdigit():
        return None
    return str(int(value))


def upstream_request_headers(
    client_headers: Sequence[tuple[str, str]],
    *,
    peer: str,
    trusted: Sequence[settings.Network],
    scheme: str,
    upstream_host: str,
    request_id: str,
    trace: str | None = None,
    keyed: frozenset[str] = frozenset(),
) -> Headers:
    """The headers the backend receives for a proxied request.

    ``trace`` is the request's own ``traceparent`` (``tracing.traceparent``: the one its
    exported span has); without it one is made from the client's here. ``keyed`` holds the
    folded names the route's cache keys by (``cache_key_headers``): their underscore twins are
    dropped, or a folding backend would answer for a value the cache key never saw.
    On every proxied request's path: one pass, each header's treatment looked up by its name
    (``_kind``). A ``Connection`` header that names anything but hop-by-hop headers takes
    ``_upstream_request_headers_named``, the two-pass form, instead: it removes those names
    (and ``Connection``) and comes back here with the rest.
    """
    kinds = _KINDS
    trusted_peer = bool(trusted) and is_trusted(peer, trusted)
    out: Headers = []
    prior_hops: list[str] = []
    forwarded_proto = scheme
    client_host = ""
    incoming: str | None = None
    host_seen = trace_seen = False
    for pair in client_headers:
        kind = kinds.get(pair[0])
        if kind is None:
            kind = _kind(pair[0])
            if len(kinds) < _KINDS_MAX:
                kinds[pair[0]] = kind
        if kind == _KEEP:
            out.append(pair)
        elif kind == _LENGTH:
            value = pair[1]
            if pair[0] == "Content-Length" and value.isdigit() and value.isascii() and value[0] != "0":
                out.append(pair)  # already the gateway's spelling (the usual case: one look)
            else:
                length = _content_length(value)
                if length is not None:
                    out.append(("Content-Length", length))
        elif kind == _HOST:
            if not host_seen:
                host_seen, client_host = True, pair[1]
        elif kind == _TRACE:
            if not trace_seen:
                trace_seen, incoming = True, pair[1]
        elif kind == _CONNECTION:
            if not {token.strip().lower() for token in pair[1].split(",")} <= HOP_BY_HOP:
                return _upstream_request_headers_named(
                    client_headers,
                    peer=peer,
                    trusted=trusted,
                    scheme=scheme,
                    upstream_host=upstream_host,
                    request_id=request_id,
                    trace=trace,
                    keyed=keyed,
                )
        elif kind == _TWIN:
            if not keyed or folded(pair[0]) not in keyed:
                out.append(pair)
        elif kind != _DROP and trusted_peer:
            if kind == _FOR:
                prior_hops.append(pair[1])
            elif kind == _PROTO:
                # A trusted TLS-terminating proxy knows the client's scheme; we only saw http.
                proto = pair[1].strip().lower()
                if proto in ("http", "https"):
                    forwarded_proto = proto
            elif kind == _FWD_OTHER:
                out.append(pair)
            # _FWD_HOST: replaced below
    out.append(("Host", upstream_host))
    out.append(("X-Forwarded-For", ", ".join([*prior_hops, peer]) if prior_hops else peer))
    out.append(("X-Forwarded-Proto", forwarded_proto))
    if client_host:
        out.append(("X-Forwarded-Host", client_host))
    out.append(("X-Request-Id", request_id))
    out.append(("traceparent", trace if trace is not None else traceparent(incoming)))
    return out


def _upstream_request_headers_named(
    client_headers: Iterable[tuple[str, str]],
    *,
    peer: str,
    trusted: Sequence[settings.Network],
    scheme: str,
    upstream_host: str,
    request_id: str,
    trace: str | None = None,
    keyed: frozenset[str] = frozenset(),
) -> Headers:
    """``upstream_request_headers`` when ``Connection`` names more than hop-by-hop headers: the
    headers it names go first, so they can never remove what the gateway adds; Host and
    traceparent stay (they are read, never forwarded), Connection goes (never forwarded)."""
    pairs = list(client_headers)
    lowered = [n.lower() for n, _ in pairs]
    named = _connection_named(pairs, lowered)
    kept = [
        pair
        for pair, lower in zip(pairs, lowered, strict=True)
        if lower != "connection" and (lower not in named or lower in ("host", "traceparent"))
    ]
    return upstream_request_headers(
        kept,
        peer=peer,
        trusted=trusted,
        scheme=scheme,
        upstream_host=upstream_host,
        request_id=request_id,
        trace=trace,
        keyed=keyed,
    )


# Whether client_response_headers withholds a header, by its name as received (0 no, 1 yes,
# 2 Connection): classified once per name, at most _KINDS_MAX names (see _KINDS).
_WITHHELD: dict[str, int] = {}


def _withheld(name: str) -> int:
    lower = name.lower()
    known = (2 if lower == "connection" else 1) if lower in _NOT_TO_CLIENT else 0
    if len(_WITHHELD) < _KINDS_MAX:
        _WITHHELD[name] = known
    return known


# A backend's Connection value -> the names it lists that are not withheld anyway (nginx's
# "keep-alive": none). Its values repeat from response to response; at most _KINDS_MAX kept.
_CONNECTION_NAMES: dict[str, frozenset[str]] = {}


def _connection_names(value: str) -> frozenset[str]:
    tokens = frozenset(token.strip().lower() for token in value.split(",")) - _NOT_TO_CLIENT
    if len(_CONNECTION_NAMES) < _KINDS_MAX:
        _CONNECTION_NAMES[value] = tokens
    return tokens


def client_response_headers(upstream_headers: Iterable[tuple[str, str]]) -> Headers:
    """Backend response headers a client may see: hop-by-hop removed, our request id wins.

    One pass on every proxied response: names listed in Connection are only known at the end,
    so they are filtered out afterwards, and only when one of them is not dropped anyway (the
    usual ``Connection: keep-alive`` names a hop-by-hop header: no second pass). 1.9 -> 1.0 us
    for nginx's five headers (perf-hot2).
    """
    kept: Headers = []
    named: frozenset[str] | None = None
    withheld = _WITHHELD
    for pair in upstream_headers:
        known = withheld.get(pair[0])
        if known is None:
            known = _withheld(pair[0])
        if known:
            if known == 2:  # Connection
                tokens = _CONNECTION_NAMES.get(pair[1])
                if tokens is None:
                    tokens = _connection_names(pair[1])
                if tokens:
                    named = tokens if named is None else named | tokens
            continue
        kept.append(pair)
    if named:
        return [pair for pair in kept if pair[0].lower() not in named]
    return kept


def reframed(headers: list[tuple[str, str]], *, length: int, content_type: str) -> list[tuple[str, str]]:
    """Headers for a body the gateway made (a rendered mapping template): the client's framing
    and coding describe the client's body, not this one, so they are replaced; the client's
    Content-Type stays, the template's media type stands in when none was sent."""
    dropped = {"content-length", "transfer-encoding", "content-encoding"}
    out = [(n, v) for n, v in headers if n.lower() not in dropped]
    if not any(n.lower() == "content-type" for n, _ in out):
        out.append(("Content-Type", content_type))
    out.append(("Content-Length", str(length)))
    return out
