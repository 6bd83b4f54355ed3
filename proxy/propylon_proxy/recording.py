"""What a finished request leaves behind: its metrics and its access-log line.

Both read the request's ``context.RequestContext`` and nothing else, so the principal, key
id, cache outcome and canary flag that steps recorded appear here without any step knowing
about logs or metrics.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from propylon_proxy import access_log, context, metrics, runtime


def record(run: runtime.Runtime, ctx: context.RequestContext) -> None:
    duration = time.monotonic() - ctx.started
    stage = ctx.stage
    status = ctx.status or 500
    series = ctx.series
    if series is not None:  # a routed request: its plan bound the series
        series.record(status, duration, ctx.integration_latency)
    else:
        route = ctx.route
        labels = ctx.labels or metrics.GatewayMetrics.labels(
            stage.api if stage else "", stage.id if stage else "", route.route_key if route else ""
        )
        run.metrics.record(labels, status, duration, ctx.integration_latency)
    if run.spans is not None:
        run.spans.export(ctx, status, duration)
    if stage is None or not stage.access_log:
        return
    if run.log_writer is not None:
        run.log_writer.write(access_log.line(_fields(ctx, status, duration)))
    else:
        access_log.write(_fields(ctx, status, duration), run.log_stream)


def _fields(ctx: context.RequestContext, status: int, duration: float) -> dict[str, Any]:
    request = ctx.request
    stage, route = ctx.stage, ctx.route
    assert stage is not None
    latency = ctx.integration_latency
    return {
        "requestId": ctx.request_id,
        "ip": ctx.source_ip,
        "requestTime": access_log.rfc3339_millis(datetime.datetime.fromtimestamp(ctx.started_wall, datetime.UTC)),
        "httpMethod": request.method,
        "routeKey": route.route_key if route else None,
        "path": request.raw_path.partition("?")[0],
        "status": status,
        "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
        "responseLength": ctx.response_length,
        "responseLatencyMs": round(duration * 1000),
        "integrationLatencyMs": round(latency * 1000) if latency is not None else None,
        "integrationStatus": ctx.integration_status,
        "apiId": stage.api,
        "stage": stage.name,
        "apiKeyId": ctx.api_key_id,
        "principalId": ctx.principal_id,
        "userAgent": request.headers.get("User-Agent"),
        "canary": ctx.canary,
        "cache": ctx.cache,
        "errorType": ctx.error_type,
        "stalled": ctx.stalled,
    }
