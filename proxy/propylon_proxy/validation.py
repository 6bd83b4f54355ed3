"""Request validation: step 7 of THE ORDER (DESIGN.md sections 1, 3 and 8).

A route's ``requestValidation`` checks its ``requiredParameters`` (400 BAD_REQUEST_PARAMETERS,
``Missing required request parameters: [a, b]``, bare names in declared order) and, when it
names a ``body`` model, the JSON body against that model's JSON Schema (draft 4 semantics)
-> 400 BAD_REQUEST_BODY ``Invalid request body``.

The schema is compiled once per plan with jsonschema-rs (a Rust validator with a draft 4
mode). Measured against fastjsonschema (which generates Python code per schema) on a
realistic order body: 0.8 us vs 5.4 us per valid document, 0.16 us vs 6.0 us per invalid one
(docs/validation.md), so jsonschema-rs. What is validated is what is forwarded: the
body is read whole once, parsed with duplicate keys refused (a backend's parser could keep
either value, so the validated document and the forwarded one could differ), and the same
bytes are put back in front of the request stream for the integration, byte for byte. Deep
nesting answers 400 (the parser's or validator's ``RecursionError``), never a crash. A
compressed body (``Content-Encoding`` other than ``identity``) cannot be validated without
inflating it, so a validating route answers 415 UNSUPPORTED_MEDIA_TYPE.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from typing import Any

import aiohttp

from propylon_config import model_schemas
from propylon_proxy import context, fast_json, gateway_responses, guards, replies, steps, whole_body

Validator = model_schemas.Validator


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # in C; a repeated key makes it shorter than the pairs
    if len(out) != len(pairs):
        raise _Duplicate()
    return out


# json refusing NaN and Infinity (not JSON), with and without the per-object duplicate check.
_NO_DUPLICATES = fast_json.strict_decoder(_no_duplicates)


def _text(body: bytes) -> str | bytes:
    """The body as ``json.loads`` would decode it: UTF-8 (``surrogatepass``, as json does) unless
    it starts the way json's encoding sniffing reads as a BOM or UTF-16/32; those stay bytes
    for json.loads to sniff. Decoding here spares its sniffing, a fifth of a small body's parse."""
    if body[:1] in _SNIFFED or b"\x00" in body[:4]:
        return body
    return body.decode("utf-8", "surrogatepass")


_SNIFFED = (b"\xef", b"\xfe", b"\xff")  # the first bytes of the UTF-8, UTF-16 and UTF-32 BOMs


@functools.lru_cache(maxsize=256)
def compile_model(schema_text: str) -> Validator:
    """The model's validator with draft 4 semantics (DESIGN.md section 1), as ``is_valid``.

    Compiled once per model text, not once per route and plan: routes that share a model, and
    plan swaps that keep it, reuse the compiled validator (it holds no per-request state)."""
    return model_schemas.build(json.loads(schema_text))


# The end of an object key: its closing quote, JSON whitespace, the colon. Every key of a document
# ends in one match; the other matches can only be inside strings (an escaped quote or an opening
# quote followed by a colon), so there are never fewer matches than keys.
_KEY_END = re.compile(r'"[ \t\n\r]*:')
_KEY_END_BYTES = re.compile(rb'"[ \t\n\r]*:')  # the same, on a body orjson parsed (valid UTF-8)


def _no_repeat(body: bytes, keys: int) -> bool:
    """Whether a body holding one object with ``keys`` distinct keys wrote no key twice. Every
    key written is followed by its own colon, so colons no more than the keys prove it (counted
    in C: 0.1 us); colons inside strings (a URL, a time) leave it to ``_KEY_END``'s count, which
    skips most of them (1.0 us on bench/validated.lua's body)."""
    return body.count(b":") == keys or len(_KEY_END_BYTES.findall(body)) == keys


def parse(body: bytes) -> Any:
    """The JSON document, refusing duplicate keys (``_Duplicate``, a ValueError) and the
    non-JSON constants json's parser takes (``NaN``, ``Infinity``: ValueError too).

    Most bodies are one flat object: text with at most one ``{`` holds at most that one object,
    and if it is the document and the key ends counted in the text are no more than its keys,
    no key was repeated (a repeat would make the text hold more keys than the dict). Such a body
    is parsed without the per-object hook that sees every key; any other (nested objects, a
    count that does not prove it) is parsed by json with that hook.

    The flat body is first given to orjson (``fast_json``: only where its answer is json's),
    which parses bench/validated.lua's body with its proof in 1.5 us against 3.3 (best of 10
    alternating timeit rounds, cheaper in all 10; issue 15, sixth pass). Everything it leaves
    undecided goes to json as before, so every body's verdict is json's.
    A body orjson parsed is valid UTF-8, so its bytes count braces and key ends as its text."""
    braces = body.count(b"{")
    if braces <= 1:
        document = fast_json.loads(body)
        if document is not fast_json.UNDECIDED:
            if braces == 0 or (document.__class__ is dict and _no_repeat(body, len(document))):
                return document
            # json's count below would prove no more than this one: straight to the hook.
            return fast_json.strict_loads(_text(body), _NO_DUPLICATES)
    text = _text(body)
    if isinstance(text, str):
        braces = text.count("{")
        if braces <= 1:
            document = fast_json.strict_loads(text)
            if braces == 0 or (document.__class__ is dict and len(_KEY_END.findall(text)) == len(document)):
                return document
    return fast_json.strict_loads(text, _NO_DUPLICATES)


def body_valid(validate: Validator, body: bytes) -> bool:
    try:
        document = parse(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        return False  # not JSON, duplicate keys, or too deep to parse
    try:
        return validate(document)
    except (ValueError, RecursionError):
        return False


def _missing(ctx: context.RequestContext, required: tuple[str, ...]) -> list[str]:
    """The required parameters the request lacks: absent or blank (AWS's basic validation wants
    each "included and not blank"; ``?limit=`` and an empty ``X-Trace:`` are blank)."""
    request = ctx.request
    params = dict(ctx.match.params) if ctx.match is not None else {}
    missing = []
    for declared in required:
        where, _, name = declared.partition(".")
        if where == "querystring":
            present = any(request.query.getall(name, ()))
        elif where == "header":
            present = any(request.headers.getall(name, ()))
        else:
            present = bool(params.get(name))
        if not present:
            missing.append(name)
    return missing


class ValidationStep:
    name = "validation"
    after = None

    def __init__(self, required: tuple[str, ...], validate: Validator | None, max_body_bytes: int, stall: float):
        self._required = required
        self._validate = validate
        self._max_body_bytes = max_body_bytes
        self._stall = stall

    async def before(self, ctx: context.RequestContext) -> steps.Outcome:
        missing = _missing(ctx, self._required) if self._required else None  # none: no params copied
        if missing:
            message = f"Missing required request parameters: [{', '.join(missing)}]"
            return replies.refuse(gateway_responses.BAD_REQUEST_PARAMETERS, message=message)
        if self._validate is None:
            return None
        request = ctx.request
        body = await whole_body.read(request, self._max_body_bytes, self._stall)
        if isinstance(body, replies.Refusal):
            return body
        if not body_valid(self._validate, body):
            return replies.refuse(gateway_responses.BAD_REQUEST_BODY)
        # Put the validated bytes back for the integration: the forwarded body is the validated
        # one. aiohttp marks its StreamReader's unread_data deprecated (it is the one way to
        # rewind its request stream without rebuilding the request); the httptools server's
        # body has its own, so the warning filter (1.1 us) is set only for aiohttp's.
        content = request.content
        if isinstance(content, aiohttp.StreamReader):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                content.unread_data(body)
        else:
            content.unread_data(body)
        return None


def step_for(setup: steps.RouteSetup) -> steps.Step | None:
    spec = setup.route.request_validation
    if spec is None:
        return None
    validate = None
    if spec.body_model is not None:
        models = dict(setup.api.models) if setup.api is not None else {}
        try:
            validate = compile_model(models[spec.body_model])
        except model_schemas.ModelError:
            return guards.broken_model()
    settings = setup.runtime.settings
    return ValidationStep(
        spec.required_parameters, validate, setup.config.settings.max_body_bytes, settings.listener.body_stall_timeout
    )
