"""Trace context for one request, and whether its span is exported (OTLP, optional).

Every request has one span of the gateway's: the client's W3C trace continued with a new span
id, or a new trace. ``traceparent(ctx)`` makes it once and keeps it on the request's context, so
every integration (HTTP_PROXY, HTTP, FUNCTION) is sent the same value and the span exported for
the request (``otlp``) carries exactly that trace id and span id: a trace viewer links the
backend's spans under the gateway's.

Export is off unless the standard OpenTelemetry environment asks for it (``from_env``) and the
``otel`` extra is installed. Nothing here imports OpenTelemetry: without the packages, or
without the configuration, the request path pays one ``is None`` test in ``recording``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Protocol

from propylon_proxy import context, forwarding, incoming

log = logging.getLogger("propylon.proxy")

#: The only OTLP protocol exported; others are refused loudly rather than sent to the wrong port.
PROTOCOL = "http/protobuf"


def traceparent(ctx: context.RequestContext) -> str:
    """The request's own ``traceparent``, made on first use and the same for every reader."""
    trace = ctx.traceparent
    if trace is None:
        trace = ctx.traceparent = forwarding.traceparent(incoming.header(ctx.request, "traceparent"))
    return trace


class SpanSink(Protocol):
    """Where finished requests' spans go (``otlp.SpanExport``); must not block the event loop."""

    def export(self, ctx: context.RequestContext, status: int, duration: float) -> None: ...

    def close(self) -> None:
        """Flush what is queued and stop; blocking, so called off the event loop."""
        ...


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def wanted(environ: Mapping[str, str]) -> bool:
    """Does the environment ask for OTLP span export?

    Off by default, unlike the OpenTelemetry SDK's own default of ``otlp``: a gateway that
    starts sending spans to localhost because a package got installed would surprise. On when
    ``OTEL_TRACES_EXPORTER`` names ``otlp``, or when an OTLP endpoint is set and
    ``OTEL_TRACES_EXPORTER`` does not say otherwise; ``OTEL_SDK_DISABLED=true`` and
    ``OTEL_TRACES_EXPORTER=none`` always turn it off.
    """
    if _truthy(environ.get("OTEL_SDK_DISABLED")):
        return False
    exporters = {name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()}
    if exporters:
        unsupported = exporters - {"otlp", "none"}
        if unsupported:
            log.warning("OTEL_TRACES_EXPORTER %s not supported (only otlp); ignored", ",".join(sorted(unsupported)))
        return "otlp" in exporters and "none" not in exporters
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def from_env(environ: Mapping[str, str] | None = None) -> SpanSink | None:
    """The span exporter the environment configures, or None (off, or the packages missing).

    Never raises: tracing is an aid, and a gateway must start without it.
    """
    env = os.environ if environ is None else environ
    if not wanted(env):
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or PROTOCOL
    if protocol.strip().lower() != PROTOCOL:
        log.warning("OTLP protocol %r not supported (only %s): spans are not exported", protocol, PROTOCOL)
        return None
    try:
        from propylon_proxy import otlp  # the optional extra: imported only when configured
    except ImportError as missing:
        log.warning("OTLP span export is configured but %s; install propylon[otel]", missing)
        return None
    try:
        return otlp.SpanExport.create()
    except Exception:
        log.warning("OTLP span export could not start; spans are not exported", exc_info=True)
        return None
