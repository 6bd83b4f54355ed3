"""What a finished request leaves behind: its metrics and its access-log line.

Both read the request's ``context.RequestContext`` and nothing else, so the principal, key
id, cache outcome and canary flag that steps recorded appear here without any step knowing
about logs or metrics.
"""

from __future__ import annotations

import time

from propylon_proxy import access_log, context, incoming, metrics, runtime


def record(run: runtime.Runtime, ctx: context.RequestContext) -> None:
    duration = time.monotonic() - ctx.started
    stage = ctx.stage
    status = ctx.status or 500
    series = ctx.series
    if series is not None:  # a routed request: its plan bound the series
        series.record(status, duration, ctx.integration_latency)
    else:
        labels = ctx.labels or metrics.route_labels(stage, ctx.route)
        run.metrics.record(labels, status, duration, ctx.integration_latency)
    if run.spans is not None:
        run.spans.export(ctx, status, duration)
    if stage is None or not stage.access_log:
        return
    if run.log_writer is not None:
        run.log_writer.write(entry(ctx, status, duration))  # formatted on the writer thread
    else:
        access_log.write(entry(ctx, status, duration), run.log_stream)


def entry(ctx: context.RequestContext, status: int, duration: float) -> access_log.Entry:
    """The access-log line's raw values, in ``access_log.text``'s order: read from the context and
    nothing formatted, so the loop pays a tuple (the time, path, protocol and JSON are the
    writer thread's). Every value is immutable: the tuple may cross to that thread as it is."""
    request = ctx.request
    stage, match = ctx.stage, ctx.match
    assert stage is not None
    return (
        ctx.request_id,
        ctx.source_ip,
        ctx.started_wall,
        request.method,
        match.route.route_key if match is not None else None,
        request.raw_path,
        status,
        request.version,
        ctx.response_length,
        duration,
        ctx.integration_latency,
        ctx.integration_status,
        ctx.served_api,  # as metrics and function events name it
        stage.name,
        ctx.api_key_id,
        ctx.principal_id,
        incoming.header(request, "User-Agent"),  # noted while parsing: no multidict
        ctx.canary,
        ctx.cache,
        ctx.error_type,
        ctx.stalled,
    )
