"""Flags that ``serve``, ``proxy`` and ``operator`` all take, defined once.

The shared store (``--redis``/``--redis-secret``, ``--redis-cluster``, ``--redis-failure``,
``--redis-timeout-ms``, ``--ws-registry-ttl``) and ``--trusted-proxies`` mean the same thing in all three commands, so
they get one name, one default and one help text here; a command only says how it is run:

- ``environment``: the commands a Deployment runs (``proxy``, ``operator``) take their defaults
  from ``PROPYLON_REDIS_*`` variables, which is how the chart and the operator hand the store to
  pods. ``serve`` is run by hand and reads no variables, so a stray one never changes it.
- ``store``: ``url`` for the commands that talk to Redis themselves; ``secret`` for the operator,
  which never holds the URL (it may carry a password) and names the Secret its proxies read.

``--trusted-proxies`` is checked while parsing, so every command refuses a bad CIDR the same way
(exit 2, the entry named); the value stays the text given, which the operator passes on to
its proxies.

``--gateway-rate``/``--gateway-burst`` are taken by the commands that compile a snapshot
(``serve``, ``operator``, ``render``): the gateway-wide limit is a snapshot setting, so a proxy
reads it from there and takes no such flag. Checked while parsing (rate above 0, burst at
least 1; exit 2 naming the flag); a flag not given keeps that half of the default.

``--redis URL`` is checked while parsing the way redis-py's ``from_url`` reads it (scheme
``redis``, ``rediss`` or ``unix``, a port that is a number, the query values it parses): a bad
URL exits 2 naming the flag (and ``$PROPYLON_REDIS_URL`` when ``proxy`` read it from there)
instead of a traceback when the store opens. The refusal never shows the URL: it may hold a
password.

``--loop auto|asyncio|uvloop`` (``serve`` and ``proxy``, the commands that run a data plane): the
event loop, default ``$PROPYLON_LOOP`` then ``auto``; ``event_loops`` runs it. A bad variable is
refused like a bad flag.

``--header-timeout``, ``--body-stall-timeout``, ``--keepalive-timeout`` (``serve`` and ``proxy``):
the slow-client limits of every listener (DESIGN.md section 8), ``ListenerSettings``' defaults
when not given; ``proxy`` reads ``PROPYLON_HEADER_TIMEOUT`` and its siblings like the store's
variables. Checked while parsing (seconds above 0 and finite; exit 2 naming the flag, and the
variable when the bad value came from one), so a bad value never starts a listener.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.parse
from typing import Literal

from propylon_config import model
from propylon_proxy import settings

LOOP_ENV = "PROPYLON_LOOP"
LOOPS = ("auto", "asyncio", "uvloop")  # event_loops.resolve's choices
REDIS_URL_ENV = "PROPYLON_REDIS_URL"
REDIS_SECRET_ENV = "PROPYLON_REDIS_SECRET"
REDIS_CLUSTER_ENV = "PROPYLON_REDIS_CLUSTER"
REDIS_FAILURE_ENV = "PROPYLON_REDIS_FAILURE"
REDIS_TIMEOUT_ENV = "PROPYLON_REDIS_TIMEOUT_MS"
WS_REGISTRY_TTL_ENV = "PROPYLON_WS_REGISTRY_TTL"
HEADER_TIMEOUT_ENV = "PROPYLON_HEADER_TIMEOUT"
BODY_STALL_TIMEOUT_ENV = "PROPYLON_BODY_STALL_TIMEOUT"
KEEPALIVE_TIMEOUT_ENV = "PROPYLON_KEEPALIVE_TIMEOUT"
RESPONSE_STALL_TIMEOUT_ENV = "PROPYLON_RESPONSE_STALL_TIMEOUT"
FAILURE_MODES = ("open", "closed")
REDIS_SCHEMES = ("redis", "rediss", "unix")  # what redis-py's from_url opens


class _FromEnvironment(str):
    """A flag's default read from ``variable``: argparse hands it to the flag's ``type`` as it
    is, so a refusal can say where the bad value came from (no flag was given to blame)."""

    variable: str

    def __new__(cls, value: str, variable: str) -> _FromEnvironment:
        text = super().__new__(cls, value)
        text.variable = variable
        return text


def _env_default(variable: str) -> str | None:
    """``$variable`` as a flag's text default (checked by its ``type`` when parsed), or None."""
    value = os.environ.get(variable)
    return _FromEnvironment(value, variable) if value else None


def _origin(text: str) -> str:
    """`` (from $VARIABLE)`` for a default read from the environment, else nothing."""
    return f" (from ${text.variable})" if isinstance(text, _FromEnvironment) else ""


def _trusted_proxies(text: str) -> str:
    """argparse type: the text, once every entry is a CIDR or an address."""
    try:
        settings.parse_networks(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def redis_url(text: str) -> str:
    """argparse type of ``--redis``: a URL the store can open, as redis-py's ``from_url`` (the
    asyncio client's, which the store uses) reads it. Unchecked, a typo surfaced as a traceback
    once the store was built. The message says what is wrong and never echoes the URL, which
    may carry a password (in its user part or a ``?password=`` query)."""
    try:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in REDIS_SCHEMES:
            got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise argparse.ArgumentTypeError(f"must be a redis://, rediss:// or unix:// URL, got {got}{_origin(text)}")
        if parts.scheme != "unix":
            _port_of(parts, text)
        _redis_py_reads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a Redis URL: {error}{_origin(text)}") from None
    return str(text)


def redis_cluster_refusal(url: str | None, cluster: bool) -> str | None:
    """Why ``--redis-cluster`` cannot use ``url`` (None: it can). A cluster is reached over TCP:
    given a ``unix://`` URL, redis-py's cluster client raised a traceback when the store opened.
    An argparse type sees one flag only, so the commands ask this after parsing."""
    if cluster and url and urllib.parse.urlsplit(url).scheme == "unix":
        return "--redis-cluster needs a redis:// or rediss:// URL (a cluster is reached over TCP), not unix://"
    return None


def _port_of(parts: urllib.parse.SplitResult, text: str) -> None:
    """Refuse a port that is not a number 0..65535, without quoting it: in ``redis://:secret``
    (the host left out) what urllib reads as the port is the password."""
    try:
        _ = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a Redis URL: the port must be a number 0..65535{_origin(text)}"
        ) from None


def _redis_py_reads(text: str) -> None:
    """The rest of ``from_url``'s reading (query values such as ``?db=``), when redis-py is
    installed; without it the store cannot open anyway, and says so itself."""
    try:
        from redis.asyncio.connection import parse_url
    except ImportError:
        return
    parse_url(text)


def _positive(text: str, *, counted: str, unit: str, zero: bool = False) -> float:
    """A number above zero (or from zero, with ``zero``) and finite, or argparse's refusal
    naming what it counts."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of {counted}: {str(text)!r}{_origin(text)}") from None
    if zero and not 0 <= value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 {unit} or more, and finite, got {str(text)!r}{_origin(text)}")
    if not zero and (not value > 0 or value == float("inf")):
        raise argparse.ArgumentTypeError(f"must be above 0 {unit}, got {str(text)!r}{_origin(text)}")
    return value


def _milliseconds(text: str) -> float:
    """argparse type: a budget in milliseconds, above zero."""
    return _positive(text, counted="milliseconds", unit="ms")


def _seconds(text: str) -> float:
    """argparse type: a duration in seconds, above zero and finite."""
    return _positive(text, counted="seconds", unit="s")


def drain_seconds(text: str) -> float:
    """argparse type of ``--drain-seconds``: 0 (close at once) or more, and finite. A negative
    grace used to be taken as it was, and a stopping gateway then cut running requests at once
    without saying why."""
    return _positive(text, counted="seconds", unit="s", zero=True)


def add_drain_seconds(parser: argparse.ArgumentParser, *, signals: str) -> None:
    """``--drain-seconds`` of ``serve`` and ``proxy``: the grace running requests get once
    ``signals`` ask the gateway to stop. (The operator's flag of that name is its own.)"""
    parser.add_argument(
        "--drain-seconds",
        type=drain_seconds,
        default=25.0,
        metavar="S",
        help=f"on {signals}, how long running requests may take to finish (default 25)",
    )


def _rate(text: str) -> float:
    """argparse type: requests per second, above zero and finite."""
    return _positive(text, counted="requests per second", unit="requests per second")


def _burst(text: str) -> int:
    """argparse type: a bucket size, a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of requests: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 request, got {text!r}")
    return value


def port(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (0: the kernel picks one). The socket layer would
    otherwise take 99999 modulo 65536 and listen somewhere nobody asked for."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}")
    return value


def _loop(text: str) -> str:
    """argparse type: one of LOOPS (the variable's default goes through here too)."""
    if text not in LOOPS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOOPS)}, got {text!r}")
    return text


def add_event_loop(parser: argparse.ArgumentParser) -> None:
    """``--loop``: which event loop runs the gateway (propylon.commands.event_loops)."""
    parser.add_argument(
        "--loop",
        type=_loop,
        default=os.environ.get(LOOP_ENV) or "auto",
        metavar="{" + ",".join(LOOPS) + "}",
        help=f"the event loop (default: ${LOOP_ENV}, then auto: uvloop when installed, else asyncio)",
    )


def add_gateway_throttle(parser: argparse.ArgumentParser) -> None:
    """``--gateway-rate``/``--gateway-burst``: the gateway-wide limit the snapshot carries."""
    default = model.Settings().gateway_throttle
    parser.add_argument(
        "--gateway-rate",
        type=_rate,
        default=None,
        metavar="N",
        help="the gateway-wide limit every request passes last, in requests per second per proxy process "
        f"(default {default.rate_limit:g})",
    )
    parser.add_argument(
        "--gateway-burst",
        type=_burst,
        default=None,
        metavar="N",
        help=f"the gateway-wide limit's bucket size, in requests (default {default.burst_limit})",
    )


def gateway_throttle(args: argparse.Namespace) -> model.Throttle:
    """The gateway-wide limit the flags ask for; a flag not given keeps the default's half."""
    default = model.Settings().gateway_throttle
    rate: float | None = args.gateway_rate
    burst: int | None = args.gateway_burst
    return model.Throttle(
        rate_limit=default.rate_limit if rate is None else rate,
        burst_limit=default.burst_limit if burst is None else burst,
    )


def redis_timeout(args: argparse.Namespace) -> float | None:
    """``--redis-timeout-ms`` in seconds, as ``limit_stores.open_store`` takes it (None: its default)."""
    milliseconds: float | None = args.redis_timeout_ms
    return None if milliseconds is None else milliseconds / 1000


def ws_registry_ttl(args: argparse.Namespace) -> float:
    """``--ws-registry-ttl`` in seconds, ``ProxySettings``'s default when not given."""
    seconds: float | None = args.ws_registry_ttl
    return settings.WS_REGISTRY_TTL_SECONDS if seconds is None else seconds


def _env_note(environment: bool, variable: str) -> str:
    return f" (default: ${variable})" if environment else ""


def _flag_from_env(variable: str) -> bool:
    return os.environ.get(variable, "").lower() in ("1", "true", "yes")


def add_trusted_proxies(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trusted-proxies",
        default="",
        type=_trusted_proxies,
        metavar="CIDR,...",
        help="peers whose X-Forwarded-For and X-Forwarded-Proto count: your Ingress controller's or load "
        "balancer's addresses, such as the pod CIDR 10.0.0.0/8 (default: none)",
    )


def add_redis_arguments(parser: argparse.ArgumentParser, *, store: Literal["url", "secret"], environment: bool) -> None:
    """The shared store's flags; ``store`` and ``environment`` as the module docstring says."""
    if store == "url":
        parser.add_argument(
            "--redis",
            type=redis_url,
            # A text default goes through ``type`` too: a bad $PROPYLON_REDIS_URL exits 2 naming it.
            default=_env_default(REDIS_URL_ENV) if environment else None,
            metavar="URL",
            help="shared store for limits and quotas (redis://, rediss:// or unix://); none: in memory"
            + _env_note(environment, REDIS_URL_ENV),
        )
    else:
        parser.add_argument(
            "--redis-secret",
            default=(os.environ.get(REDIS_SECRET_ENV) or None) if environment else None,
            metavar="NAME",
            help="Secret in the gateway namespace whose 'url' proxies share limits and quotas through; none: "
            "limits in memory per proxy" + _env_note(environment, REDIS_SECRET_ENV),
        )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=_flag_from_env(REDIS_CLUSTER_ENV) if environment else False,
        help="the Redis URL names any node of a Redis Cluster" + _env_note(environment, REDIS_CLUSTER_ENV),
    )
    parser.add_argument(
        "--redis-failure",
        choices=FAILURE_MODES,
        default=(os.environ.get(REDIS_FAILURE_ENV) or "open") if environment else "open",
        help="while Redis is down: open = local limits, closed = 503 on routes with limits"
        + (f" (default: ${REDIS_FAILURE_ENV}, then open)" if environment else " (default: open)"),
    )
    parser.add_argument(
        "--redis-timeout-ms",
        type=_milliseconds,
        # A text default goes through ``type`` when this command is parsed: a bad variable is
        # refused like a bad flag, and breaks no other command.
        default=_env_default(REDIS_TIMEOUT_ENV) if environment else None,
        metavar="MS",
        help="how long one Redis call may take before it counts as unanswered: that request is then decided "
        "locally, and three in a row are an outage"
        + (f" (default: ${REDIS_TIMEOUT_ENV}, then 50)" if environment else " (default: 50)"),
    )
    parser.add_argument(
        "--ws-registry-ttl",
        type=_seconds,
        default=_env_default(WS_REGISTRY_TTL_ENV) if environment else None,
        metavar="S",
        help="with Redis: seconds a replica that died keeps its WebSocket connections in the shared registry "
        "(its heartbeat renews them every third of it; @connections answers 410 for them after)"
        + (f" (default: ${WS_REGISTRY_TTL_ENV}, then 30)" if environment else " (default: 30)"),
    )


# The slow-client limits (DESIGN.md section 8): flag, variable, ``ListenerSettings`` field, help.
_SLOW_CLIENT_FLAGS = (
    (
        "--header-timeout",
        HEADER_TIMEOUT_ENV,
        "header_timeout",
        "seconds a request head may take to arrive once its first byte has; then 408 and the connection closes",
    ),
    (
        "--body-stall-timeout",
        BODY_STALL_TIMEOUT_ENV,
        "body_stall_timeout",
        "seconds a request body being read may go without a byte; then 408 and the connection closes",
    ),
    (
        "--keepalive-timeout",
        KEEPALIVE_TIMEOUT_ENV,
        "keepalive_timeout",
        "seconds an idle keep-alive connection is kept open between requests",
    ),
    (
        "--response-stall-timeout",
        RESPONSE_STALL_TIMEOUT_ENV,
        "response_stall_timeout",
        "seconds a response body being sent may go without progress (a backend that stops sending, "
        "or a client that stops reading); then both connections close and the response stays cut",
    ),
)


def add_slow_clients(parser: argparse.ArgumentParser, *, environment: bool) -> None:
    """The listeners' slow-client limits; ``environment`` as for the store's flags."""
    defaults = settings.ListenerSettings()
    for flag, variable, field, text in _SLOW_CLIENT_FLAGS:
        default: float = getattr(defaults, field)
        parser.add_argument(
            flag,
            type=_seconds,
            default=_env_default(variable) if environment else None,
            metavar="S",
            help=text + (f" (default: ${variable}, then {default:g})" if environment else f" (default: {default:g})"),
        )


def slow_client_variables(args: argparse.Namespace) -> tuple[tuple[str, float], ...]:
    """The slow-client limits given, as the variables ``proxy`` reads them from: what the operator
    sets on each proxy it deploys (a limit not given is left to the proxy's default)."""
    return tuple(
        (variable, value) for _, variable, field, _ in _SLOW_CLIENT_FLAGS if (value := getattr(args, field)) is not None
    )


def listener_settings(args: argparse.Namespace) -> settings.ListenerSettings:
    """``ListenerSettings`` with the slow-client limits the flags (or variables) ask for; a flag
    not given keeps its default, so the defaults live in ``settings`` only."""
    chosen = {field: value for _, _, field, _ in _SLOW_CLIENT_FLAGS if (value := getattr(args, field)) is not None}
    return dataclasses.replace(settings.ListenerSettings(), **chosen)
