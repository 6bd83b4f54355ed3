"""Choosing a request's mapping template (DESIGN.md §2.5, §8 "Mappings"), once per request.

Shared by the two integrations that take templates (HTTP and custom FUNCTION): the template is
the one for the request's media type (no parameters; none sent counts as
``application/json``); without one, ``passthroughBehavior`` either passes the body through or
refuses with 415. Templates are compiled once per plan, here.
"""

from __future__ import annotations

import airspeed

from propylon_config import model
from propylon_proxy import gateway_responses, replies, vtl

DEFAULT_TYPE = "application/json"


def media_type(header: str | None) -> str:
    """The media type of a Content-Type, lower-cased without parameters; none -> JSON."""
    kind = (header or "").partition(";")[0].strip().lower()
    return kind or DEFAULT_TYPE


class RequestTemplates:
    def __init__(self, integration: model.Integration) -> None:
        self._templates: dict[str, airspeed.Template] = {
            kind.lower(): vtl.compile(text) for kind, text in integration.request_templates
        }
        self._passthrough = integration.passthrough_behavior

    def _refuses(self) -> bool:
        """True when a request without a matching template gets 415 (§8)."""
        if self._passthrough is model.PassthroughBehavior.NEVER:
            return True
        return self._passthrough is model.PassthroughBehavior.WHEN_NO_TEMPLATES and bool(self._templates)

    def choose(self, content_type: str | None) -> tuple[str, airspeed.Template | None] | replies.Refusal:
        """(media type, its template or None to pass the body through), or the 415 refusal."""
        kind = media_type(content_type)
        template = self._templates.get(kind)
        if template is None and self._refuses():
            return replies.refuse(gateway_responses.UNSUPPORTED_MEDIA_TYPE)
        return kind, template
