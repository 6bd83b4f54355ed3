"""Integration responses (DESIGN.md §2.5): from what the integration answered to what the client gets.

Prepared once per plan from the route's ``responses``: patterns compiled, templates parsed.
Per request, ``select`` picks the response whose ``selectionPattern`` matches the whole value
(the backend status as three digits for HTTP, a function error's ``errorMessage`` for a custom
FUNCTION), else the default (``None`` for "nothing selected": the integration then answers as
if it had no responses); ``needs_body`` says whether the answer must be read whole (a template
applies); ``respond`` sets the status, the static headers, renders the template chosen by
``Accept`` and applies ``$context.responseOverride``. A template that cannot be rendered is
500 API_CONFIGURATION_ERROR. No I/O here; the integrations read the body.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import airspeed

from propylon_config import headers as header_names
from propylon_config import model
from propylon_proxy import context, gateway_responses, replies, template_variables, utf8, vtl

DEFAULT_TYPE = "application/json"
# Headers that describe the integration's body; a body the gateway rendered is another one.
_REPRESENTATION = frozenset(
    {"content-type", "content-encoding", "content-length", "content-md5", "content-range", "digest", "etag"}
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SAFE_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """One integration response, ready to apply."""

    pattern: re.Pattern[str] | None
    status: int
    headers: tuple[tuple[str, str], ...]
    templates: tuple[tuple[str, airspeed.Template], ...]  # in the manifest's order
    # ``headers`` less any Content-Type: a rendered body's type is its template's (DESIGN.md
    # section 2.5), so a static one would be a second, contradicting Content-Type.
    rendered_headers: tuple[tuple[str, str], ...] = ()

    def template_for(self, accept: str | None) -> tuple[str, airspeed.Template] | None:
        """The template for the request's ``Accept`` (its media types in order of preference),
        else ``application/json``, else the first; None when there are none."""
        if not self.templates:
            return None
        by_type = dict(self.templates)
        for wanted in accepted(accept):
            if wanted in by_type:
                return wanted, by_type[wanted]
        if DEFAULT_TYPE in by_type:
            return DEFAULT_TYPE, by_type[DEFAULT_TYPE]
        return self.templates[0]


def accepted(accept: str | None) -> list[str]:
    """The media types of an ``Accept`` header, most preferred first (q=0 left out)."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept or "").split(",")):
        kind, _, params = item.partition(";")
        kind = kind.strip().lower()
        if not kind:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, kind))
    return [kind for _, _, kind in sorted(ranked)]


class Responses:
    """A route's integration responses; falsy when it has none."""

    def __init__(self, responses: Sequence[model.IntegrationResponse], resource: str) -> None:
        self._resource = resource
        self._prepared = tuple(_prepare(r) for r in responses)
        self._default = next((p for p in self._prepared if p.pattern is None), None)

    def __bool__(self) -> bool:
        return bool(self._prepared)

    def select(self, value: str | None) -> Prepared | None:
        """The first response whose pattern matches all of ``value``, else the default; a success
        of a function (``value`` None) only ever selects the default."""
        if value is not None:
            for prepared in self._prepared:
                if prepared.pattern is not None and prepared.pattern.fullmatch(value):
                    return prepared
        return self._default

    def respond(
        self,
        ctx: context.RequestContext,
        chosen: Prepared,
        *,
        headers: list[tuple[str, str]],
        body: bytes,
        template: tuple[str, airspeed.Template] | None,
    ) -> replies.Reply | replies.Refusal:
        """The client's reply to an answer read whole: ``headers`` and ``body`` are the
        integration's; without a template the body passes through unchanged."""
        if template is None:
            return replies.Reply(status=chosen.status, headers=with_static(headers, chosen), body=body)
        media_type, compiled = template
        override: dict[str, Any] = {"status": None, "header": {}}
        try:
            text = vtl.render(compiled, template_variables.namespace(ctx, body, self._resource, override=override))
            status = _status(override.get("status"), chosen.status)
        except vtl.RenderError:
            return replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)
        kept = [(n, v) for n, v in headers if n.lower() not in _REPRESENTATION]
        out = _with(kept, (("Content-Type", media_type), *chosen.rendered_headers))
        answered = _with(out, _overridden(override.get("header")))
        return replies.Reply(status=status, headers=answered, body=utf8.encode(text))


def _prepare(response: model.IntegrationResponse) -> Prepared:
    # Framing and the gateway's own headers cannot come from configuration (the compiler
    # refuses them too).
    headers = tuple((n, v) for n, v in response.headers if not header_names.is_gateway_owned(n))
    return Prepared(
        pattern=re.compile(response.selection_pattern) if response.selection_pattern is not None else None,
        status=response.status_code,
        headers=headers,
        templates=tuple((kind, vtl.compile(text)) for kind, text in response.response_templates),
        rendered_headers=tuple((n, v) for n, v in headers if n.lower() != "content-type"),
    )


def with_static(headers: list[tuple[str, str]], chosen: Prepared) -> list[tuple[str, str]]:
    """``headers`` with the chosen response's static headers in place of the same names."""
    return _with(headers, chosen.headers)


def _with(headers: list[tuple[str, str]], extra: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` with each name in ``extra`` replaced by its value there."""
    if not extra:
        return list(headers)
    names = {n.lower() for n, _ in extra}
    return [*((n, v) for n, v in headers if n.lower() not in names), *extra]


def _status(value: Any, default: int) -> int:
    """``$context.responseOverride.status`` as a final status code (a 1xx is interim, never the
    answer: written with a body, that body would be read as the next response); unset keeps the
    response's."""
    if value is None or value == "":
        return default
    try:
        status = int(str(value).strip())
    except ValueError as exc:
        raise vtl.RenderError(f"responseOverride.status {value!r} is not a number") from exc
    if not 200 <= status <= 599:
        raise vtl.RenderError(f"responseOverride.status {status} is not a final HTTP status code")
    return status


def _overridden(values: Any) -> tuple[tuple[str, str], ...]:
    """``$context.responseOverride.header.*``: names that are tokens and not the gateway's own,
    values without CR, LF or NUL (like mappings, anything else is dropped, never injected)."""
    if not isinstance(values, dict):
        return ()
    out: list[tuple[str, str]] = []
    for name, value in values.items():
        name = str(name)
        text = value if isinstance(value, str) else "" if value is None else str(value)
        if not _TOKEN.match(name) or not _SAFE_VALUE.match(text):
            continue
        if header_names.is_gateway_owned(name):
            continue
        out.append((name, text))
    return tuple(out)
