"""The Redis ``StateStore``: limits and quotas shared, and exact, across gateway replicas.

One decision is one Lua script run (``EVALSHA``; the script is sent once per server, the first
time it is missing): it refills and checks every bucket in order, then the quota, and takes a
token from each bucket and one unit of quota only when all admit. Redis runs a script
atomically, so N replicas deciding at once never admit more than the limits allow. Bucket time
is the server's (``TIME`` inside the script), so replicas' clocks do not matter; tests pass
``server_time=False`` and drive the buckets with the ``now`` they give instead of sleeping.

Keys (``limits`` names them; this module adds ``propylon:`` and, for quotas, the period start)
carry a hash tag, so in a Redis Cluster one API key's plan buckets and quota live in one slot
and a route's stage bucket in another. A decision runs one script per slot it touches (at most
two), one after the other: the key's slot first, the stage's only when the key's admitted. So
a key's excess (the requests most likely refused) never holds a stage token another key was
owed. When the stage refuses, the key's tokens and quota unit are given back; until the
give-back lands they are held, which can refuse that same key's concurrent request (never
another key's, never admitting one too many). A quota refusal peeks at the stage bucket
(``PEEK``) so that a request both refuse is THROTTLED, as with one server. Each slot stays
exact. (The order costs a second round trip on admitted requests: docs/usage-plans.md.)

Every call is bounded by ``timeout`` (50 ms by default, DESIGN.md §8): a Redis that is down,
refuses, or accepts connections and never answers raises ``state.StoreUnavailable``, and the
``limiter`` decides what that means (for one slow call: that request alone; for an outage,
a connection that fails or ``SLOW_CALLS_FOR_OUTAGE`` unanswered calls in a row: every request
until Redis answers again). At most ``IN_FLIGHT`` decisions per process are on the wire at
once and the budget starts when a call is sent, not while it waits its turn, and stretches
while this process was too busy to read an answer (``_bounded``): a burst of requests must
neither open hundreds of connections nor make a healthy Redis look down. A call still
waiting its turn when an outage begins gives up at once. The client reconnects by itself on
the next call. A call that timed out may still run once Redis gets to it, and its request was
decided without it (503 in ``closed`` mode, locally in ``open`` mode), so what it took must not
count: on the pipe its late answer is still read (for as long as the connection lasts) and an
admit is given back (``REFUND``), as is a slot's admit when the next slot's call failed. Only
admitted requests use quota (DESIGN.md §4); an answer lost with its connection is the one case
left, and it can only have taken tokens, so the error leans toward refusing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio import cluster as aiocluster
from redis.crc import key_slot

from propylon_proxy import redis_pipe, state

T = TypeVar("T")

PREFIX = "propylon:"
DEFAULT_TIMEOUT = 0.05
IN_FLIGHT = 16
BUSY_LATENESS = 0.005  # a deadline noticed later than this means the event loop was busy
BUSY_SHARE = 0.2  # or this share of the window spent on this process's CPU
SLOW_CALLS_FOR_OUTAGE = 3  # unanswered calls in a row that make Redis count as down
MAX_BUSY_EXTENSION = 0.5
_KEPT_COMMANDS = 4096  # packed admit commands kept (``_send``), one per key and route in use
QUOTA_GRACE_SECONDS = 86400  # a period's count outlives its end by a day, for usage reports

# KEYS: the buckets in order, then the quota (when ARGV says there is one).
# ARGV: now (negative: use TIME), bucket count, then rate and burst per bucket, then
# (quota) limit and seconds to keep the count.
# Returns {admitted 0|1, 1-based index of the refusing bucket (count + 1: the quota), seconds
# to wait as text, quota remaining (-1: no quota)}. ``_CHECK`` refills and checks the buckets.
_CHECK = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local n = tonumber(ARGV[2])
local levels = {}
for i = 1, n do
  local rate = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'u')
  local tokens = tonumber(state[1])
  local updated = tonumber(state[2])
  if tokens == nil or updated == nil then
    tokens = burst
  elseif now > updated then
    tokens = math.min(burst, tokens + (now - updated) * rate)
  end
  if tokens < 1 then
    local wait = -1
    if rate > 0 then wait = (1 - tokens) / rate end
    return {0, i, tostring(wait), -1}
  end
  levels[i] = tokens
end
"""
ADMIT = (
    _CHECK
    + """local remaining = -1
if #KEYS > n then
  local at = 3 + 2 * n
  local limit = tonumber(ARGV[at])
  local used = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
  if used >= limit then
    return {0, n + 1, '0', 0}
  end
  redis.call('INCR', KEYS[n + 1])
  redis.call('EXPIRE', KEYS[n + 1], tonumber(ARGV[at + 1]))
  remaining = limit - used - 1
end
for i = 1, n do
  local rate = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  redis.call('HSET', KEYS[i], 't', levels[i] - 1, 'u', now)
  if rate > 0 then
    redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
  end
end
return {1, 0, '0', remaining}
"""
)

# Whether buckets would admit, taking nothing: with ``--redis-cluster``, asked of the stage's
# slot only when the key's slot refused on its quota, so that a request both limits refuse is
# answered as one script would (the stage bucket comes before the quota). Same KEYS, ARGV and
# answer as ``ADMIT`` without a quota.
PEEK = _CHECK + "return {1, 0, '0', -1}\n"

# Give back what an admitted slot took when another slot refused the same request.
# KEYS: buckets, then the quota (when there is one); ARGV: bucket count, then each burst.
REFUND = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local tokens = tonumber(redis.call('HGET', KEYS[i], 't'))
  if tokens ~= nil then
    redis.call('HSET', KEYS[i], 't', math.min(tonumber(ARGV[1 + i]), tokens + 1))
  end
end
if #KEYS > n then
  local used = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
  if used > 0 then redis.call('DECR', KEYS[n + 1]) end
end
return 1
"""

_FAILURES = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    redis_pipe.ReplyError,
    OSError,
    TimeoutError,
    # redis-py's asyncio cluster client can leave a connection half made when a call is cut
    # at the budget, and the next call on it fails inside the library ("'NoneType' object has
    # no attribute 'writelines'", redis-py #3546 and #3835). Seen here as 500s under load; it is
    # the store failing, so it is handled as one (logged, counted, reconnected) like the rest.
    AttributeError,
    TypeError,
)


def quota_key(quota_name: str, period_start: float) -> str:
    """A period's count has its own key, so a new period starts at zero and old ones expire."""
    return f"{PREFIX}{quota_name}:{int(period_start)}"


def _quota_ttl(quota: state.Quota, now: float) -> int:
    """Seconds a period's count is kept: to the period's end, then ``QUOTA_GRACE_SECONDS``."""
    return max(1, math.ceil(quota.period_end - now)) + QUOTA_GRACE_SECONDS


def _admitted(groups: list[_Group], results: list[Any]) -> state.Decision | None:
    """The decision when every group admitted (no coroutine: nothing to give back), else None."""
    remaining = None
    for group, result in zip(groups, results, strict=True):
        if int(result[0]) != 1:
            return None
        if group.quota and remaining is None:  # the quota lives in one group
            remaining = int(result[3])
    return state.ADMITTED if remaining is None else state.Decision(admitted=True, quota_remaining=remaining)


class _Group:
    """The part of one decision that lives in one slot: some buckets, maybe the quota."""

    __slots__ = ("buckets", "positions", "quota")

    def __init__(self) -> None:
        self.buckets: list[state.Bucket] = []
        self.positions: list[int] = []  # each bucket's index in the whole decision
        self.quota = False


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        server_time: bool = True,
    ) -> None:
        self._timeout = timeout
        self._server_time = server_time
        self._cluster = cluster
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "decode_responses": True,
            "max_connections": IN_FLIGHT * 2,
        }
        client: Any
        if cluster:
            client = aiocluster.RedisCluster.from_url(url, **options)
        else:
            client = aioredis.Redis.from_url(url, health_check_interval=0, **options)
        self._client = client
        self._admit = client.register_script(ADMIT)
        self._refund = client.register_script(REFUND)
        self._peek_script = client.register_script(PEEK)
        # One pipelined connection for a single server (``redis_pipe``); redis-py for the rest.
        self._pipe = redis_pipe.Pipe(url) if not cluster and redis_pipe.supports(url) else None
        self._turns = asyncio.Semaphore(IN_FLIGHT)
        self._outages = 0  # outages seen so far: a call waiting its turn that sees it move gives up
        self._slow = 0  # calls in a row that went unanswered within the budget
        # (id of the buckets, id of the quota) -> (buckets, quota, ttl, script sha, packed EVALSHA)
        self._commands: dict[tuple[int, int], tuple[Any, Any, int, str, bytes]] = {}
        self._cpu_read_at = -1.0  # the loop time of the last process_time() read, and its value
        self._cpu_read = 0.0
        self._background: set[asyncio.Future[Any]] = set()  # late answers awaited, give-backs

    async def admit(self, buckets: Sequence[state.Bucket], quota: state.Quota | None, now: float) -> state.Decision:
        if not buckets and quota is None:
            return state.ADMITTED
        groups = self._groups(buckets, quota)
        outages = self._outages
        if self._pipe is not None:
            try:
                fast = self._send(buckets, groups[0], quota, now)
                results: list[Any] = []
                try:
                    if fast is not None:
                        results = [await self._bounded_future(fast, groups, quota)]
                except redis_pipe.ReplyError as exc:
                    if not str(exc).startswith("NOSCRIPT"):
                        raise
                if not results:  # not connected, or a server that lost the script: load and retry
                    results = [await self._bounded(self._run(groups[0], quota, now), self._late(groups, quota))]
            except _FAILURES as exc:
                raise self._failure(exc) from exc
            self._slow = 0
            return _admitted(groups, results) or await self._refused(groups, results, buckets, quota, now)
        async with self._turns:
            if self._outages != outages:
                raise state.StoreUnavailable("the store went down while this call waited")
            results = []
            try:
                # One slot after the other, the key's first (``_groups``), and none after a
                # refusal: a key's excess is refused before it reaches the stage's slot, so it
                # never holds a stage token that another key's request was owed.
                for group in groups:
                    results.append(await self._bounded(self._run(group, quota, now)))
                    self._slow = 0
                    if int(results[-1][0]) != 1:
                        break
            except _FAILURES as exc:
                # The request is decided without the store: a slot that admitted before this
                # failure gives back what it took (in the background: the answer is not held).
                if admitted := [g for g, r in zip(groups, results, strict=False) if int(r[0]) == 1]:
                    self._later(self._give_back(admitted, quota))
                raise self._failure(exc) from exc
        ran = groups[: len(results)]
        return _admitted(ran, results) or await self._refused(ran, results, buckets, quota, now, groups[len(ran) :])

    async def _refused(
        self,
        groups: list[_Group],
        results: list[Any],
        buckets: Sequence[state.Bucket],
        quota: state.Quota | None,
        now: float,
        unasked: Sequence[_Group] = (),
    ) -> state.Decision:
        """The decision when a group refused (``_admitted`` answered None): what the other
        groups took is given back, and the earliest refusing limit speaks. ``unasked`` are the
        groups not run after the refusal; when the quota refused, their buckets (checked
        before the quota in one script) are peeked at, so a stage bucket that is empty too
        answers THROTTLED as with one server, and QUOTA_EXCEEDED only when it has tokens."""
        refused = [(g, r) for g, r in zip(groups, results, strict=True) if int(r[0]) != 1]
        admitted = [g for g, r in zip(groups, results, strict=True) if int(r[0]) == 1]
        if admitted:
            await self._give_back(admitted, quota)
        found = min((self._refusal(g, r, buckets, quota, now) for g, r in refused), key=lambda pair: pair[0])
        if found[1].reason == "quota":
            for group in unasked:
                if group.buckets and (peeked := await self._peek(group, now)) is not None:
                    found = min(found, self._refusal(group, peeked, buckets, quota, now), key=lambda pair: pair[0])
        return found[1]

    async def _peek(self, group: _Group, now: float) -> list[Any] | None:
        """``PEEK``'s answer for ``group`` when it would refuse, else None (also when Redis does
        not answer in time: the refusal already found stands)."""
        keys, args = self._admit_call(group, None, now)
        try:
            async with asyncio.timeout(self._timeout):
                result: list[Any] = await self._script(self._peek_script, keys, args)
        except _FAILURES:
            return None
        return result if int(result[0]) != 1 else None

    def _failure(self, exc: BaseException) -> state.StoreUnavailable:
        """One failed call: an outage if the connection failed or ``SLOW_CALLS_FOR_OUTAGE``
        calls in a row went unanswered; otherwise one slow call, decided without Redis."""
        slow = isinstance(exc, TimeoutError | redis.exceptions.TimeoutError)
        self._slow = self._slow + 1 if slow else 0
        outage = not slow or self._slow >= SLOW_CALLS_FOR_OUTAGE
        if outage:
            self._outages += 1
        return state.StoreUnavailable(_describe(exc), outage=outage)

    def _late(self, groups: list[_Group], quota: state.Quota | None) -> Callable[[Any], None]:
        """What to do with an admit's answer that came after its caller gave up: the request
        was decided without it, so tokens and quota it took are given back."""

        def late(result: Any) -> None:
            if isinstance(result, list) and result and result[0] == 1:
                self._later(self._give_back(groups, quota))

        return late

    def _late_task(self, task: asyncio.Future[Any], late: Callable[[Any], None]) -> None:
        """``late`` with the result of a call kept running after its timeout, if it got one."""
        if not task.cancelled() and task.exception() is None:
            late(task.result())

    def _later(self, work: Coroutine[Any, Any, None] | asyncio.Future[Any]) -> None:
        """Runs ``work`` in the background, kept referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _bounded(self, call: Awaitable[T], late: Callable[[T], None] | None = None) -> T:
        """``call`` within the time budget, counted in time this process could look at it.

        A budget overrun is Redis's fault only if this process was free to read the answer.
        When the budget runs out while the process was busy (most of the window spent on CPU
        serving other requests, or the deadline itself noticed late), an answer may be waiting
        unread, so the window is extended, up to ``MAX_BUSY_EXTENSION`` in all. A Redis that
        does not answer an idle process is given exactly ``timeout``.

        ``late`` (pipe calls only: the pipe has no timeouts of its own, its answers come or its
        connection fails) keeps the call running after a timeout and gets its result.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(call)
        try:
            started, cpu = loop.time(), time.process_time()
            deadline = started + self._timeout
            last = deadline + MAX_BUSY_EXTENSION
            while True:
                done, _ = await asyncio.wait((task,), timeout=max(0.0, deadline - loop.time()))
                if done:
                    return task.result()
                now, cpu_now = loop.time(), time.process_time()
                busy = (cpu_now - cpu) / max(now - started, 1e-6)
                if now >= last or (busy < BUSY_SHARE and now - deadline < BUSY_LATENESS):
                    raise TimeoutError
                started, cpu = now, cpu_now
                deadline = min(last, now + self._timeout)
        finally:
            if not task.done():
                if late is None:
                    task.cancel()
                else:
                    task.add_done_callback(lambda t: self._late_task(t, late))
                    self._later(task)

    async def _bounded_future(
        self, future: asyncio.Future[Any], groups: list[_Group], quota: state.Quota | None
    ) -> Any:
        """``_bounded`` for an answer already on the wire: the same budget and busy extension,
        kept by one timer on the loop instead of a task and ``asyncio.wait`` per decision
        (the keyed-redis route's admit in perf-jwt's profile). On expiry the future fails
        with TimeoutError; the pipe still reads the late answer in its place and hands it to
        ``_late(groups, quota)``, registered before the future fails (no answer slips between)."""
        loop = future.get_loop()  # not asyncio.get_running_loop(): a getpid system call in 3.11
        started = loop.time()
        cpu = self._process_time(started)
        last = started + self._timeout + MAX_BUSY_EXTENSION
        timer: list[asyncio.TimerHandle] = []

        def expire(started: float, cpu: float, deadline: float) -> None:
            if future.done():
                return
            now, cpu_now = loop.time(), time.process_time()
            busy = (cpu_now - cpu) / max(now - started, 1e-6)
            if now >= last or (busy < BUSY_SHARE and now - deadline < BUSY_LATENESS):
                if self._pipe is not None:
                    self._pipe.on_late(future, self._late(groups, quota))
                future.set_exception(TimeoutError())
                return
            next_deadline = min(last, now + self._timeout)
            timer[0] = loop.call_at(next_deadline, expire, now, cpu_now, next_deadline)

        deadline = started + self._timeout
        timer.append(loop.call_at(deadline, expire, started, cpu, deadline))
        try:
            return await future
        finally:
            timer[0].cancel()
            if not future.done():
                future.cancel()

    def _process_time(self, now: float) -> float:
        """``time.process_time()``, read at most once per loop clock value: the clock is a real
        system call (no vDSO), and a batch of decisions started in one loop turn (uvloop's
        clock moves by milliseconds) shares one reading. A reading up to a millisecond early
        only widens the busy share of a window of ``timeout`` by that much."""
        if now != self._cpu_read_at:
            self._cpu_read_at, self._cpu_read = now, time.process_time()
        return self._cpu_read

    def _send(
        self, buckets: Sequence[state.Bucket], group: _Group, quota: state.Quota | None, now: float
    ) -> asyncio.Future[Any] | None:
        """The admit script sent on the pipe by SHA (redis-py computes it locally), or None when
        the pipe is not connected: then ``_run`` connects (and loads the script on NOSCRIPT).

        With the server's clock (the default) the command depends only on the buckets, the
        quota and its whole seconds to keep: the limits step hands the same bucket tuple and
        Quota object to every request of a key, so the packed bytes are kept per (buckets,
        quota) for the second they are good for (an admit's command 4.6 -> 0.9 us, timeit).
        ``buckets`` is the caller's sequence, the one group's (the pipe serves one server)."""
        assert self._pipe is not None
        if not self._server_time or not isinstance(buckets, tuple):  # a list could change under us
            return self._pipe.send_packed(self._command(group, quota, now))
        ttl = _quota_ttl(quota, now) if group.quota and quota else 0
        slot = (id(buckets), id(quota))
        kept = self._commands.get(slot)
        sha = self._admit.sha
        if kept is None or kept[0] is not buckets or kept[1] is not quota or kept[2] != ttl or kept[3] != sha:
            if len(self._commands) >= _KEPT_COMMANDS:
                self._commands.clear()  # more keys than that in one second: rebuilt as they come
            kept = self._commands[slot] = (buckets, quota, ttl, sha, self._command(group, quota, now))
        return self._pipe.send_packed(kept[4])

    def _command(self, group: _Group, quota: state.Quota | None, now: float) -> bytes:
        """The admit script's EVALSHA for one group, packed."""
        keys, args = self._admit_call(group, quota, now)
        return redis_pipe.pack(("EVALSHA", self._admit.sha, len(keys), *keys, *args))

    def _admit_call(self, group: _Group, quota: state.Quota | None, now: float) -> tuple[list[str], list[Any]]:
        """The admit script's KEYS and ARGV for one group (the layout above ``ADMIT``)."""
        keys = [PREFIX + b.key for b in group.buckets]
        args: list[Any] = [-1 if self._server_time else repr(now), len(group.buckets)]
        for bucket in group.buckets:
            args.extend((repr(float(bucket.rate)), bucket.burst))
        if group.quota and quota is not None:
            keys.append(quota_key(quota.key, quota.period_start))
            args.extend((quota.limit, _quota_ttl(quota, now)))
        return keys, args

    def _groups(self, buckets: Sequence[state.Bucket], quota: state.Quota | None) -> list[_Group]:
        if not self._cluster:
            group = _Group()
            group.buckets, group.positions, group.quota = list(buckets), list(range(len(buckets))), quota is not None
            return [group]
        by_slot: dict[int, _Group] = {}
        for position, bucket in enumerate(buckets):
            group = by_slot.setdefault(key_slot((PREFIX + bucket.key).encode()), _Group())
            group.buckets.append(bucket)
            group.positions.append(position)
        if quota is not None:
            by_slot.setdefault(key_slot(quota_key(quota.key, quota.period_start).encode()), _Group()).quota = True
        # The key's slot (its quota, else its plan buckets, which come first) before the stage's.
        return sorted(by_slot.values(), key=lambda g: (not g.quota, g.positions[0] if g.positions else len(buckets)))

    async def _run(self, group: _Group, quota: state.Quota | None, now: float) -> list[Any]:
        keys, args = self._admit_call(group, quota, now)
        result: list[Any] = await self._script(self._admit, keys, args)
        return result

    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA, loading the script the first time a server does not know it."""
        if self._pipe is None:
            return await script(keys=keys, args=args)
        try:
            return await self._pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis_pipe.ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            script.sha = await self._pipe.call("SCRIPT", "LOAD", script.script)
            return await self._pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def _refusal(
        self,
        group: _Group,
        result: list[Any],
        buckets: Sequence[state.Bucket],
        quota: state.Quota | None,
        now: float,
    ) -> tuple[int, state.Decision]:
        """(position in the whole decision, the refusal): the earliest refusing limit speaks."""
        index = int(result[1]) - 1
        if index >= len(group.buckets):
            assert quota is not None
            wait = quota.period_end - now
            return len(buckets), state.Decision(
                admitted=False, reason="quota", retry_after=state.whole_seconds(wait), quota_remaining=0
            )
        bucket = group.buckets[index]
        wait = float(result[2])
        return group.positions[index], state.Decision(
            admitted=False, reason=bucket.reason, retry_after=state.whole_seconds(math.inf if wait < 0 else wait)
        )

    async def give_back(self, buckets: Sequence[state.Bucket], quota: state.Quota | None) -> None:
        """Undo an admit whose request a later check refused (the limiter's gateway-wide limit)."""
        if buckets or quota is not None:
            await self._give_back(self._groups(buckets, quota), quota)

    async def _give_back(self, groups: list[_Group], quota: state.Quota | None) -> None:
        async def one(group: _Group) -> None:
            keys = [PREFIX + b.key for b in group.buckets]
            args: list[Any] = [len(group.buckets), *(b.burst for b in group.buckets)]
            if group.quota and quota is not None:
                keys.append(quota_key(quota.key, quota.period_start))
            await self._script(self._refund, keys, args)

        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.gather(*(one(g) for g in groups))
        except _FAILURES:
            pass  # a token not given back refuses a request too many later, never admits one

    async def used(self, quota_keys: Sequence[str], period_start: float) -> dict[str, int]:
        names = [quota_key(key, period_start) for key in quota_keys]
        try:
            async with asyncio.timeout(max(self._timeout, 0.5)):
                if self._pipe is not None:
                    values = await self._pipe.call("MGET", *names) if names else []
                else:
                    values = await asyncio.gather(*(self._client.get(name) for name in names))
        except _FAILURES as exc:
            raise state.StoreUnavailable(_describe(exc)) from exc
        return {key: int(value or 0) for key, value in zip(quota_keys, values, strict=True)}

    async def ping(self) -> None:
        """Check Redis answers and load the scripts, so the first decisions are one round trip."""
        try:
            async with asyncio.timeout(max(self._timeout, 0.5)):
                for script in (self._admit, self._refund, self._peek_script):
                    if self._pipe is not None:
                        script.sha = await self._pipe.call("SCRIPT", "LOAD", script.script)
                    else:
                        script.sha = await self._client.script_load(script.script)
        except _FAILURES as exc:
            raise state.StoreUnavailable(_describe(exc)) from exc

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._pipe is not None:
            await self._pipe.close()
        with contextlib.suppress(*_FAILURES):
            await self._client.aclose()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the time limit"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
