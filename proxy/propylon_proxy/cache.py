"""Step 8: the response cache (DESIGN.md sections 4 and 8).

One byte-bounded LRU per stage and proxy replica, claimed through ``runtime.resources`` under
an id made of the stage id and its cache settings: a plan swap that leaves a stage's cache
settings unchanged keeps its entries; a change of ``ttlSeconds``/``capacityMiB``/... starts an
empty cache (the old one is retired with the old plan). Entries expire by ``runtime.clock``
(injected in tests) at the route's effective TTL.

The key is built from parts the dispatcher already parsed: stage (and canary side), method, Host,
path, the whole query (or only the ``cacheKeyParameters`` values), the listed headers, and when
the route has an authorizer the caller: its principal (or, without one, a digest of its token or
identity values) and a digest of the authorizer's context; an authorized request that names
neither is not cached. A stored reply's ``Vary`` headers are then keyed as a second level
(``Vary: Origin`` included: the CORS step adds the gateway's own after the store, so one seen
here is the backend's).

Concurrent misses for one key are coalesced: the first request (the leader) goes to the
backend; the others wait for its outcome and get its reply when it was cacheable and its
``Vary`` headers have the follower's values too, else (not cacheable, failed, cancelled, varied
by a header the follower sent otherwise) go to the backend themselves.

A request carrying an underscore twin of a ``Vary`` name (``X_Lang`` for ``Vary: X-Lang``: one
name to a backend that folds ``_`` into ``-``) is never answered from, nor stored under, that
Vary key: the key reads ``X-Lang``, the backend read the twin (``_twin_sent``). It is ``bypass``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.parse
from collections.abc import AsyncIterator

import cachetools

from propylon_config import model
from propylon_config.headers import folded
from propylon_proxy import (
    caller_keys,
    context,
    fast_responding,
    gateway_responses,
    incoming,
    metrics,
    replies,
    runtime,
    steps,
)

MAX_ENTRY_BYTES = 1024 * 1024
HEADER = "x-propylon-cache"
_UNCACHED_CONTROL = ("no-store", "private")
_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def _twin_sent(request: incoming.Request, vary: tuple[str, ...]) -> bool:
    """Whether the request carries a header that is not one of ``vary``'s names but that a
    backend folding ``_`` into ``-`` (nginx with ``underscores_in_headers``, CGI/WSGI, Spring)
    reads as one: the Vary key reads the name as named, so a reply such a header chose would
    be stored, or served, for callers that never sent it (DESIGN.md section 8). Called only
    when a Vary list is known, so a route whose replies vary by nothing pays nothing."""
    raw = request.raw_headers
    if "_" not in "".join(vary):
        # The usual Vary (dashed names): only a request name with "_" can fold onto one, and
        # the usual request has none (one join and a byte search: no name decoded).
        if b"_" not in b"".join([name for name, _ in raw]):
            return False
        return any(b"_" in name and folded(name.decode("latin-1").strip()) in vary for name, _ in raw)
    targets = {folded(n) for n in vary}
    for name, _ in raw:
        lower = name.decode("latin-1").strip().lower()
        if lower not in vary and folded(lower) in targets:
            return True
    return False


def _caller(ctx: context.RequestContext) -> tuple[str, ...]:
    """The key parts that keep one caller's answers from another's (DESIGN.md section 4): the
    principal, or when the authorizer named none (a 2.0 simple answer, a policy without
    ``principalId``, a JWT without ``sub``) the digest of what proved the caller; and a digest of
    the authorizer's ``context``, which mappings and templates read (a TOKEN authorizer that
    answers ``principalId: "user"`` to everyone tells its callers apart there)."""
    principal = ctx.principal_id
    who = "u:" + principal if principal is not None else "d:" + (ctx.caller_digest or b"").hex()
    found = ctx.authorizer_context
    if not found:
        return (who,)
    # The authorizer step computed it with its answer; a context set another way is hashed here.
    digest = ctx.authorizer_context_digest or caller_keys.context_digest(found)
    return (who, digest) if digest is not None else (who,)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A stored 200: its headers prebuilt (with ``x-propylon-cache: hit``) and its body."""

    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires: float
    vary: tuple[str, ...]  # lower-case header names the reply's Vary lists
    # The head's header lines rendered once for the httptools writer (None: it renders them).
    prepared: replies.Prepared | None = None
    # The whole key it is stored under (base and Vary values): what a coalesced follower's own
    # key must equal for the leader's reply to be its reply too.
    key: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        rendered = len(self.prepared.lines) if self.prepared is not None else 0
        keyed = sum(len(part) for part in self.key)
        return len(self.body) + sum(len(n) + len(v) for n, v in self.headers) + rendered + keyed + 64


@dataclasses.dataclass(slots=True)
class _Note:
    """Per request: the miss this request leads (others wait on it), a denied refresh."""

    lead: tuple[tuple[str, ...], asyncio.Future[Entry | None]] | None = None
    denied: bool = False
    refreshed: bool = False  # an allowed max-age=0: stored anew, reported "bypass" (DESIGN.md §8)


def _note_of(ctx: context.RequestContext) -> _Note:
    """This request's note, made on first use (most requests never need one)."""
    note = ctx.cache_note
    if not isinstance(note, _Note):
        note = ctx.cache_note = _Note()
    return note


class StageCache:
    """One stage's entries: an LRU bounded by bytes, and the in-flight misses by key."""

    def __init__(self, capacity_bytes: int, generation: str = "") -> None:
        self.generation = generation  # the flush annotation's value this cache was last flushed for
        self.entries: cachetools.LRUCache[tuple[str, ...], Entry] = cachetools.LRUCache(
            maxsize=capacity_bytes, getsizeof=lambda e: e.size
        )
        self.vary: dict[tuple[str, ...], tuple[str, ...]] = {}  # base key -> Vary names
        self.inflight: dict[tuple[str, ...], asyncio.Future[Entry | None]] = {}

    def flush(self) -> None:
        self.entries.clear()
        self.vary.clear()

    def store(self, key: tuple[str, ...], entry: Entry) -> None:
        if entry.size > self.entries.maxsize:
            return
        self.entries[key] = entry

    async def close(self) -> None:
        self.flush()


def _ident(stage_id: str, settings: model.CacheSettings | None) -> str:
    return f"cache:{stage_id}:{settings!r}"


def stage_cache(setup: steps.RouteSetup, settings: model.CacheSettings) -> StageCache:
    """The stage's cache: kept across plans while its settings are unchanged, flushed when the
    Stage's flush annotation has a new value (the generation is remembered on the cache)."""
    capacity = (setup.stage.cache or settings).capacity_mib * 1024 * 1024
    found = setup.runtime.resources.claim(
        _ident(setup.stage.id, setup.stage.cache), lambda: StageCache(capacity, setup.stage.cache_flush)
    )
    if found.generation != setup.stage.cache_flush:
        found.flush()
        found.generation = setup.stage.cache_flush
    return found


def flush(run: runtime.Runtime, stage: model.Stage) -> bool:
    """Empty one stage's cache on this replica (the admin API); False when it has none."""
    found = run.resources.peek(_ident(stage.id, stage.cache))
    if not isinstance(found, StageCache):
        return False
    found.flush()
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class _Buffered:
    """A streamed body whose first part was read while checking its size."""

    head: bytes
    rest: replies.BodyStream

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        async for chunk in self.rest.iter_chunks():
            yield chunk

    def body_ready(self) -> bool:
        return True

    async def release(self) -> None:
        await self.rest.release()


class CacheStep:
    """The lookup (before) and the store (after) for one cache-enabled route."""

    name = "cache"

    def __init__(self, setup: steps.RouteSetup, settings: model.CacheSettings) -> None:
        self.settings = settings
        self.cache = stage_cache(setup, settings)
        self.clock = setup.runtime.clock
        self.stage_id = setup.stage.id
        counted = metrics.GatewayMetrics.labels(setup.stage.api, setup.stage.id, setup.route.route_key)
        self.counter = setup.runtime.metrics.cache
        self.counted = {r: (*counted, ("result", r)) for r in ("hit", "miss", "bypass")}
        self.method = setup.route.method
        self.authorized = setup.route.authorizer is not None
        self.query_keys: list[str] = []
        self.header_keys: list[str] = []
        self.path_keys: list[str] = []
        for p in setup.route.cache_key_parameters:
            kind, _, name = p.partition(".")
            {"querystring": self.query_keys, "header": self.header_keys, "path": self.path_keys}[kind].append(name)
        self.whole_query = not setup.route.cache_key_parameters
        # The common key (whole query, no listed headers, no principal) is one tuple built at once.
        self.simple_key = self.whole_query and not self.header_keys and not self.authorized
        self.prefixes = (self.stage_id, self.stage_id + "|canary")
        self.hit_labels = self.counted["hit"]
        self.hit_count: list[float] | None = None  # the hit counter's cell, bound on the first hit
        self.invalidating = frozenset(p.id for p in setup.config.usage_plans if p.allow_cache_invalidation)
        fixed = setup.route.method
        self.methods = frozenset({"GET", "HEAD"} if fixed in ("GET", "ANY", "$default") else {fixed})
        self.after = self._after

    def _key(self, ctx: context.RequestContext) -> tuple[str, ...]:
        request = ctx.request
        target = ctx.target
        if target is not None:
            path, query = target.raw_path, target.query
        else:
            path, _, query = request.raw_path.partition("?")
        host = request.headers.get("Host", "").lower().rpartition(":")
        # The two sides of a canary never answer for each other (docs/canary.md).
        prefix = self.prefixes[1] if ctx.canary else self.prefixes[0]
        host_key = host[0] if host[1] and "]" not in host[2] else host[2]
        if self.simple_key:
            return (prefix, request.method, host_key, path, query)
        parts = [prefix, request.method, host_key, path]
        if self.whole_query:
            parts.append(query)
        else:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
            for name in self.query_keys:
                parts.append("q:" + name + "=" + "\x00".join(v for k, v in pairs if k == name))
            for name in self.path_keys:
                parts.append("p:" + name)
        for name in self.header_keys:
            parts.append("h:" + name + "=" + "\x00".join(request.headers.getall(name, ())))
        if self.authorized:
            parts.extend(_caller(ctx))
        return tuple(parts)

    @staticmethod
    def _vary_key(base: tuple[str, ...], names: tuple[str, ...], ctx: context.RequestContext) -> tuple[str, ...]:
        if not names:
            return base
        return base + tuple("v:" + n + "=" + "\x00".join(ctx.request.headers.getall(n, ())) for n in names)

    def _bypass(self, ctx: context.RequestContext) -> bool:
        request = ctx.request
        if request.method not in self.methods:
            return True
        if request.body_exists:
            return True  # a GET with a body is never cached
        if self.authorized:
            # No principal and nothing else that tells this caller from another: never shared.
            return ctx.principal_id is None and ctx.caller_digest is None
        return "Authorization" in request.headers

    def _refresh(self, ctx: context.RequestContext, control: str) -> replies.Refusal | bool | None:
        """A ``Cache-Control: max-age=0`` request: True to refresh, a Refusal, or None (ignore)."""
        control = control.replace(" ", "").lower()
        if "max-age=0" not in control.split(","):
            return None
        allowed = not self.settings.require_authorization_for_cache_control or (
            ctx.usage_plan is not None and ctx.usage_plan in self.invalidating
        )
        if allowed:
            return True
        strategy = self.settings.unauthorized_cache_control_header_strategy
        if strategy == "FAIL_WITH_403":
            self.counter.inc(self.counted["bypass"])  # a step's own refusal skips its after hook
            return replies.refuse(gateway_responses.ACCESS_DENIED, (HEADER, "bypass"))  # §8: ACCESS_DENIED as is
        if strategy == "SUCCEED_WITH_RESPONSE_HEADER":
            ctx.cache_note = _Note(denied=True)
        return False

    async def before(self, ctx: context.RequestContext) -> steps.Outcome:
        # The hit path is the one to keep short (bench: propylon-cached): one header lookup when
        # no Cache-Control was sent, one tuple for the usual key, one LRU lookup.
        if self._bypass(ctx):
            ctx.cache = "bypass"
            return None
        control = ctx.request.headers.get("Cache-Control")
        refresh = None if control is None else self._refresh(ctx, control)
        if isinstance(refresh, replies.Refusal):
            ctx.cache = "bypass"
            return refresh
        base = self._key(ctx)
        cache = self.cache
        if refresh is not True:
            vary = cache.vary.get(base)
            if vary and _twin_sent(ctx.request, vary):
                ctx.cache = "bypass"  # neither answered from nor stored under a key it could sway
                return None
            key = self._vary_key(base, vary, ctx) if vary else base
            try:
                entry: Entry | None = cache.entries[key]
            except KeyError:
                entry = None
            if entry is not None and entry.expires > self.clock():
                return self._hit(ctx, entry)
            leader = cache.inflight.get(base)
            if leader is not None:
                try:
                    got = await asyncio.shield(leader)
                except BaseException:
                    got = None
                # The leader's reply is this caller's only when the headers it varies by have
                # this caller's values too (DESIGN.md section 4: never another user's data).
                if (
                    got is not None
                    and got.expires > self.clock()
                    and got.key == self._vary_key(base, got.vary, ctx)
                    and not (got.vary and _twin_sent(ctx.request, got.vary))
                ):
                    return self._hit(ctx, got)
                ctx.cache = "miss"
                return None
        ctx.cache = "miss"
        if refresh is True:
            _note_of(ctx).refreshed = True
        if base not in cache.inflight:
            future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
            cache.inflight[base] = future
            _note_of(ctx).lead = (base, future)
            task = asyncio.current_task()
            if task is not None:  # a cancelled or failed leader never leaves its followers waiting
                task.add_done_callback(lambda _: self._abandon(base, future))
        return None

    def _hit(self, ctx: context.RequestContext, entry: Entry) -> replies.Reply:
        """The stored reply; its headers were prebuilt at store time (x-propylon-cache: hit)."""
        ctx.cache = "hit"
        count = self.hit_count
        if count is None:
            count = self.hit_count = self.counter.cell(self.hit_labels)
        count[0] += 1
        headers = list(entry.headers)
        if ctx.cache_note is not None and ctx.cache_note.denied:
            headers.append(("x-propylon-cache-invalidation", "denied"))
        return replies.Reply(status=200, headers=headers, body=entry.body, prepared=entry.prepared)

    def _abandon(self, base: tuple[str, ...], future: asyncio.Future[Entry | None]) -> None:
        if self.cache.inflight.get(base) is future:
            del self.cache.inflight[base]
        if not future.done():
            future.set_result(None)

    async def _after(self, ctx: context.RequestContext, reply: replies.Reply) -> replies.Reply:
        note = ctx.cache_note if isinstance(ctx.cache_note, _Note) else None
        lead = note.lead if note is not None else None
        entry: Entry | None = None
        try:
            if ctx.cache == "miss":
                reply, entry = await self._storable(ctx, reply)
                if entry is not None and entry.vary and _twin_sent(ctx.request, entry.vary):
                    entry = None  # the twin may have chosen this reply: never another caller's
                if entry is None:
                    ctx.cache = "bypass"  # a first response that cannot be cached
                else:
                    base = lead[0] if lead is not None else self._key(ctx)
                    entry = dataclasses.replace(entry, key=self._vary_key(base, entry.vary, ctx))
                    self.cache.vary[base] = entry.vary
                    self.cache.store(entry.key, entry)
        finally:
            if lead is not None:
                base, future = lead
                if self.cache.inflight.get(base) is future:
                    del self.cache.inflight[base]
                if not future.done():
                    future.set_result(entry)
        if note is not None and note.refreshed:
            ctx.cache = "bypass"  # fetched anew (and stored): the caller did not get the cache's reply
        result = ctx.cache or "bypass"
        self.counter.inc(self.counted[result])
        reply.headers.append((HEADER, result))
        if note is not None and note.denied:
            reply.headers.append(("x-propylon-cache-invalidation", "denied"))
        return reply

    async def _storable(self, ctx: context.RequestContext, reply: replies.Reply) -> tuple[replies.Reply, Entry | None]:
        if reply.status != 200 or reply.error_type is not None:
            return reply, None
        vary: list[str] = []
        for name, value in reply.headers:
            lower = name.lower()
            if lower == "set-cookie":
                return reply, None
            if lower == "cache-control" and any(d in value.lower() for d in _UNCACHED_CONTROL):
                return reply, None
            if lower == "vary":
                for item in value.split(","):
                    item = item.strip().lower()
                    if item == "*":
                        return reply, None
                    # Origin too: the CORS step's after hook runs after this store (chains.py), so
                    # the gateway's own Vary: Origin is never seen here; this one is the backend's.
                    if item and item not in vary:
                        vary.append(item)
        if reply.stream is not None:
            stream = reply.stream
            chunks: list[bytes] = []
            size = 0
            done = True
            async for chunk in stream.iter_chunks():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ENTRY_BYTES:
                    done = False
                    break
            body = b"".join(chunks)
            if not done:
                reply.stream = _Buffered(body, stream)
                return reply, None
            await stream.release()
            reply.stream = None
            reply.body = body
        if len(reply.body) > MAX_ENTRY_BYTES:
            return reply, None
        kept = [(n, v) for n, v in reply.headers if n.lower() not in _HOP]
        headers = (*kept, (HEADER, "hit"))
        entry = Entry(
            headers=headers,
            body=reply.body,
            expires=self.clock() + self.settings.ttl_seconds,
            vary=tuple(vary),
            prepared=fast_responding.prepare(list(headers)),
        )
        return reply, entry


def step_for(setup: steps.RouteSetup) -> steps.Step | None:
    settings = setup.route.cache
    if settings is None or not settings.enabled:
        return None
    return CacheStep(setup, settings)


def refusals_step_for(setup: steps.RouteSetup) -> steps.Step | None:
    """On a cache-enabled route, what the steps before the lookup refuse (the authorizer's 401,
    the API key's 403, a 429, a validation 400) says ``x-propylon-cache: bypass`` and counts as a
    bypass too: DESIGN.md §8 puts the header on every response of such a route. Placed just
    inside CORS, so its after hook sees those refusals and never a preflight's answer."""
    settings = setup.route.cache
    if settings is None or not settings.enabled:
        return None
    counter = setup.runtime.metrics.cache
    route_labels = metrics.GatewayMetrics.labels(setup.stage.api, setup.stage.id, setup.route.route_key)
    labels = (*route_labels, ("result", "bypass"))

    async def after(ctx: context.RequestContext, reply: replies.Reply) -> replies.Reply:
        if ctx.cache is None:  # the lookup never ran: refused before it
            ctx.cache = "bypass"
            counter.inc(labels)
            reply.headers.append((HEADER, "bypass"))
        return reply

    return steps.AfterOnly(name="cache verdict of earlier refusals", after=after)
