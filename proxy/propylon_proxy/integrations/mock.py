"""MOCK integrations (DESIGN.md §2.4): the configured response, with two substitutions.

The status and headers are fixed per route, so they are prepared once per plan (their head lines
too: ``fast_responding.prepare``); only the body (``${stageVariables.x}`` and
``$context.requestId``) is rendered per request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from propylon_config import model
from propylon_proxy import context, fast_responding, forwarding, replies, steps

_SUBSTITUTED = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_.-]+)\}|\$context\.requestId")


def render_body(body: str, *, variables: Mapping[str, str], request_id: str) -> str:
    """Substitute ``${stageVariables.x}`` (unknown -> empty) and ``$context.requestId``, in one
    pass over the body: a substituted value is never read again (DESIGN.md section 2.4), so a
    variable holding the text ``$context.requestId`` keeps it."""
    if "$" not in body:
        return body
    return _SUBSTITUTED.sub(lambda m: request_id if m.group(1) is None else variables.get(m.group(1), ""), body)


class MockIntegration:
    def __init__(self, setup: steps.RouteSetup) -> None:
        mock = setup.route.integration.mock or model.Mock()
        self._status = mock.status_code
        # Framing is the gateway's, set from the body it sends: configuration cannot contradict it;
        # nor can it speak for the gateway (x-propylon-error-type, x-propylon-cache*), as a backend cannot.
        dropped = forwarding.GATEWAY_FRAMED | forwarding.GATEWAY_SAYS
        self._headers = tuple((n, v) for n, v in mock.headers if n.lower() not in dropped)
        self._body = mock.body
        self._fixed = None if "$" in mock.body else mock.body.encode()
        # The head's header lines rendered once for the httptools writer (as a cache hit's are).
        self._prepared = fast_responding.prepare(list(self._headers))

    async def invoke(self, ctx: context.RequestContext) -> replies.Reply:
        body = self._fixed
        if body is None:
            body = render_body(self._body, variables=ctx.stage_variables, request_id=ctx.request_id).encode()
        return replies.Reply(status=self._status, headers=list(self._headers), body=body, prepared=self._prepared)
