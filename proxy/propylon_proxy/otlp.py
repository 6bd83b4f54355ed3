"""OTLP/HTTP export of one server span per request (the ``otel`` extra; see ``tracing``).

Only imported by ``tracing.from_env`` when export is configured, so the gateway never pays
for OpenTelemetry's import otherwise. The gateway does not run a tracer: its span is known in
full when the request is recorded (ids from ``tracing.traceparent``, the times and outcome from
the request context), so a finished ``ReadableSpan`` is built then and handed to the SDK's
``BatchSpanProcessor``, whose ``on_end`` only appends to a bounded queue; a worker thread batches
and sends, so the event loop never waits on the collector (a full queue drops spans, as the SDK
does). The exporter itself reads the standard ``OTEL_EXPORTER_OTLP_*`` settings (endpoint,
headers, timeout, compression, certificates); ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` describe the service (``propylon`` unless set); ``OTEL_BSP_*`` tune
the batching.

Attributes are what the access log already shows, never more: no query string, no headers, no
credentials.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from propylon_proxy import context, forwarding, tracing

_SCOPE = InstrumentationScope("propylon")
_OK = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


def _resource() -> Resource:
    """The environment's resource, named ``propylon`` when it names no service itself."""
    detected = Resource.create()
    name = str(detected.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: "propylon"}))
    return detected


class SpanExport:
    """A ``tracing.SpanSink`` sending each request's span through a ``BatchSpanProcessor``."""

    def __init__(self, processor: BatchSpanProcessor, resource: Resource) -> None:
        self._processor = processor
        self._resource = resource

    @classmethod
    def create(cls) -> SpanExport:
        return cls(BatchSpanProcessor(OTLPSpanExporter()), _resource())

    def export(self, ctx: context.RequestContext, status: int, duration: float) -> None:
        _, trace_hex, span_hex, flags_hex = tracing.traceparent(ctx).split("-")
        flags = TraceFlags(int(flags_hex, 16))
        if not flags.sampled:
            return  # the caller's trace is not sampled: neither is the gateway's span
        trace_id = int(trace_hex, 16)
        request = ctx.request
        continued = forwarding.incoming_trace(request.headers.get("traceparent"))
        parent = None
        if continued is not None:
            parent = SpanContext(trace_id, int(continued[1], 16), is_remote=True, trace_flags=flags)
        stage, route = ctx.stage, ctx.route
        method = request.method
        attributes: dict[str, str | int | bool] = {
            "http.request.method": method,
            "http.response.status_code": status,
            "url.path": request.raw_path.partition("?")[0],
            "propylon.request_id": ctx.request_id,
            "propylon.canary": ctx.canary,
        }
        name = method
        if route is not None:
            route_key = route.route_key
            attributes["propylon.route_key"] = route_key
            route_method, _, route_path = route_key.partition(" ")
            if route_path:
                attributes["http.route"] = route_path
                name = route_key if route_method == method else f"{method} {route_path}"
            else:
                name = f"{method} {route_key}"  # $default
        if stage is not None:
            attributes["propylon.api"] = stage.api
            attributes["propylon.stage"] = stage.id
        if ctx.integration_status is not None:
            attributes["propylon.integration.status_code"] = ctx.integration_status
        if ctx.cache is not None:
            attributes["propylon.cache"] = ctx.cache
        if ctx.error_type is not None:
            attributes["propylon.error_type"] = ctx.error_type
        start = int(ctx.started_wall * 1e9)
        span = ReadableSpan(
            name=name,
            context=SpanContext(trace_id, int(span_hex, 16), is_remote=False, trace_flags=flags),
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.SERVER,
            status=_ERROR if status >= 500 else _OK,
            start_time=start,
            end_time=start + int(duration * 1e9),
            instrumentation_scope=_SCOPE,
        )
        self._processor.on_end(span)

    def close(self) -> None:
        self._processor.shutdown()
