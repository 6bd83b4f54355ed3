"""Reads each UsagePlan's quota use from the proxies, at most every 30 s, for its status.

The proxies announce where their admin listener is in the Lease they already keep
(``propylon.dev/admin-url``); only fresh Leases count. With a shared store (``--redis``) one
answer is the whole truth, so the proxies are asked one at a time until one answers; with
in-memory stores every proxy is asked (concurrently) and ``usage_reports`` sums them.

A proxy that does not answer never fails anything: the plan keeps the last usage it had, and
``UsageReported`` says what happened. This runs beside the reconcile, never inside it, so a slow
proxy cannot hold up publishing; the reconcile writes what ``UsageBook`` holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiohttp

from propylon_config import model
from propylon_operator import conditions, leases, usage_reports
from propylon_operator import settings as settings_

logger = logging.getLogger("propylon.operator")

ADMIN_ANNOTATION = "propylon.dev/admin-url"
FLOOR_SECONDS = 30.0  # DESIGN.md §1: usage in status is updated at most every 30 s
ASK_TIMEOUT = 2.0

Fetch = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    usage: dict[str, Any] | None  # the last usage read; kept when a later read fails
    reported: conditions.Condition


class UsageBook:
    """Plan id -> what its status should show about usage; written by the poller only."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def record(self, plan_id: str, combined: usage_reports.Combined) -> None:
        before = self.entries.get(plan_id)
        if combined.usage is not None:
            partial = combined.answered < combined.asked
            reported = conditions.Condition(
                type="UsageReported",
                status=conditions.TRUE,
                reason="PartiallyReported" if partial else "Reported",
                message=f"{combined.answered} of {combined.asked} proxies answered",
            )
            self.entries[plan_id] = Entry(usage=combined.usage, reported=reported)
            return
        reason = "NoProxies" if combined.asked == 0 else "ProxiesUnreachable"
        message = (
            "no fresh proxy announces an admin URL"
            if combined.asked == 0
            else f"none of {combined.asked} proxies answered; showing the last usage read"
        )
        self.entries[plan_id] = Entry(
            usage=before.usage if before else None,
            reported=conditions.Condition(
                type="UsageReported", status=conditions.FALSE, reason=reason, message=message
            ),
        )

    def forget_others(self, plan_ids: Iterable[str]) -> None:
        keep = set(plan_ids)
        for plan_id in [p for p in self.entries if p not in keep]:
            del self.entries[plan_id]


def admin_urls(lease_bodies: Iterable[dict[str, Any]], secret: str, now: datetime.datetime) -> list[str]:
    """The admin URLs of fresh proxies of ``secret``, sorted (so a shared read asks the same one)."""
    urls = set()
    for lease in lease_bodies:
        meta = lease.get("metadata") or {}
        if (meta.get("labels") or {}).get(leases.SECRET_LABEL) != secret or not leases.is_fresh(lease, now):
            continue
        url = (meta.get("annotations") or {}).get(ADMIN_ANNOTATION)
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            urls.add(url.rstrip("/"))
    return sorted(urls)


async def read_plan(
    plan: model.UsagePlan, urls: Sequence[str], fetch: Fetch, *, shared: bool, read_at: str
) -> usage_reports.Combined:
    """One plan's usage from the proxies at ``urls``."""
    limit = plan.quota.limit if plan.quota else None
    path = f"/admin/usage/{plan.id}"
    if shared:
        for url in urls:
            answer = await fetch(url + path)
            if answer is not None:
                combined = usage_reports.combine([answer], shared=True, limit=limit, read_at=read_at)
                # One answer is complete: the others read the same store.
                return dataclasses.replace(combined, asked=combined.answered) if combined.usage else combined
        return usage_reports.combine([None] * len(urls), shared=True, limit=limit, read_at=read_at)
    answers = await asyncio.gather(*(fetch(url + path) for url in urls))
    return usage_reports.combine(list(answers), shared=False, limit=limit, read_at=read_at)


class UsagePoller:
    def __init__(
        self,
        settings: settings_.Settings,
        *,
        book: UsageBook,
        lease_bodies: Callable[[], Iterable[dict[str, Any]]],
        snapshot: Callable[[], model.GatewayConfig | None],
        changed: Callable[[], None],
        clock: Callable[[], datetime.datetime],
        interval: float = FLOOR_SECONDS,
    ) -> None:
        self._settings = settings
        self._book = book
        self._lease_bodies = lease_bodies
        self._snapshot = snapshot
        self._changed = changed
        self._clock = clock
        self._interval = max(FLOOR_SECONDS, interval)
        self._session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """Poll forever; the first pass waits for a snapshot, later ones every ``interval``."""
        try:
            while True:
                try:
                    await self.poll_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let one odd answer stop usage reporting for good
                    logger.exception("reading usage from the proxies failed")
                await asyncio.sleep(self._interval if self._snapshot() is not None else 1.0)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def poll_once(self) -> None:
        snapshot = self._snapshot()
        if snapshot is None:
            return
        now = self._clock()
        urls = admin_urls(self._lease_bodies(), self._settings.snapshot_secret, now)
        read_at = conditions.rfc3339(now)
        shared = self._settings.redis_secret is not None
        for plan in snapshot.usage_plans:
            self._book.record(plan.id, await read_plan(plan, urls, self.fetch, shared=shared, read_at=read_at))
        self._book.forget_others(plan.id for plan in snapshot.usage_plans)
        self._changed()

    async def fetch(self, url: str) -> dict[str, Any] | None:
        """One proxy's answer, or None for any failure (refused, timed out, not JSON, not 200)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT))
        headers = {"Authorization": f"Bearer {self._settings.admin_token}"} if self._settings.admin_token else {}
        try:
            async with self._session.get(url, headers=headers) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.debug("usage from %s: %s", url, exc)
            return None
        return body if isinstance(body, dict) else None
