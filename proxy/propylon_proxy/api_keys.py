"""Step 4 of the chain: the API key (DESIGN.md §1 "UsagePlan and API keys", §3, §8).

On a route with ``apiKeyRequired``, the key comes from the ``x-api-key`` header
(``apiKeySource: HEADER``; a repeated header never gets here, hygiene answers 400) or from the
authorizer's ``usageIdentifierKey`` (``AUTHORIZER``, set on the request context by the
authorizer step; without it there is no key). The key is hashed with the install's
key-hashing secret and the digest looked up (``propylon_config.key_hashing``): no stored value
is compared byte by byte, so timing says nothing about stored keys. A missing, unknown or
disabled key, or one none of whose plans covers this Stage, is 403 INVALID_API_KEY. A found
key sets ``ctx.api_key_id`` (the Secret name, never the value) and ``ctx.usage_plan``.

The key value is never logged, counted or echoed; it lives only in this step's locals.
"""

from __future__ import annotations

import dataclasses
import logging

from propylon_config import key_hashing, model
from propylon_proxy import context, gateway_responses, incoming, replies, steps

log = logging.getLogger("propylon.proxy")

_INVALID = replies.refuse(gateway_responses.INVALID_API_KEY)
HEADER = "x-api-key"


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """What a key is allowed on one Stage: its id as logs show it and the plan that applies."""

    key_id: str  # the Secret name
    plan: str  # UsagePlan id


class KeyTable:
    """Every key of one snapshot, by digest, with the plan that covers each Stage for it.

    Built once per snapshot (shared by all its routes through ``runtime.resources``). When the
    proxy's key-hashing secret is not the one the snapshot was compiled with, the table is
    empty: every key is refused (fail closed) and the mismatch is logged once, by fingerprint.
    """

    def __init__(self, config: model.GatewayConfig, secret: bytes | None) -> None:
        self._digest = key_hashing.hasher(secret) if secret is not None else None
        self._grants: dict[str, dict[str, Grant]] = {}  # digest -> stage id -> grant
        hashing = config.key_hashing
        if not config.api_keys:
            return
        if secret is None or hashing is None or hashing.key_id != key_hashing.key_id(secret):
            log.error(
                "API keys refused: the snapshot's keys were hashed with secret %s, this proxy holds %s",
                hashing.key_id if hashing is not None else "none",
                key_hashing.key_id(secret) if secret is not None else "none",
            )
            return
        plans = {plan.id: plan for plan in config.usage_plans}
        for key in config.api_keys:
            if not key.enabled or not key.digest:
                continue
            by_stage = self._grants.setdefault(key.digest, {})
            for plan_id in key.plans:  # sorted: the first plan covering a Stage applies (as compiled)
                plan = plans.get(plan_id)
                for plan_stage in plan.stages if plan is not None else ():
                    by_stage.setdefault(plan_stage.stage, Grant(key_id=key.name, plan=plan_id))

    def grant(self, value: bytes, stage: str) -> Grant | None:
        if self._digest is None or not self._grants:
            return None
        by_stage = self._grants.get(self._digest(value))
        return by_stage.get(stage) if by_stage is not None else None


def table_for(setup: steps.RouteSetup) -> KeyTable:
    """The snapshot's key table, built by the first route that asks and shared by the rest."""
    run = setup.runtime
    return run.resources.claim(f"api-keys@{setup.config.version}", lambda: KeyTable(setup.config, run.api_key_secret))


def step_for(setup: steps.RouteSetup) -> steps.Step | None:
    if not setup.route.api_key_required:
        return None
    table = table_for(setup)
    stage = setup.stage.id
    from_authorizer = setup.api is not None and setup.api.api_key_source == "AUTHORIZER"

    async def from_header(ctx: context.RequestContext) -> replies.Refusal | None:
        # The header's first value as both servers decode it (UTF-8 with surrogateescape), so
        # encoding it back the same way gives exactly the bytes the client sent; fast_server
        # noted it while parsing (incoming.header_lookup), no header multidict is built.
        value = incoming.header(ctx.request, HEADER)
        if not value:
            return _INVALID
        grant = table.grant(value.encode("utf-8", "surrogateescape"), stage)
        return _admit(ctx, grant)

    async def from_usage_identifier(ctx: context.RequestContext) -> replies.Refusal | None:
        value = ctx.usage_identifier_key
        if not value:
            return _INVALID
        # surrogatepass: JSON lets an authorizer send a lone surrogate ("\ud800"), which plain
        # UTF-8 refuses to encode (a 500); its bytes match no Secret's value, so it is a wrong key.
        return _admit(ctx, table.grant(value.encode("utf-8", "surrogatepass"), stage))

    check = from_usage_identifier if from_authorizer else from_header
    return steps.BeforeOnly(name="api key", check=check)


def _admit(ctx: context.RequestContext, grant: Grant | None) -> replies.Refusal | None:
    if grant is None:
        return _INVALID
    ctx.api_key_id = grant.key_id
    ctx.usage_plan = grant.plan
    return None
