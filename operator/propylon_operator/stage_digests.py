"""What serves a Stage, as one digest per Stage of a snapshot.

The reconciler counts a replica still on an older snapshot version as serving a Stage when that
version's digest for the Stage equals the current one (``Reconciler._replicas``), so an edit
elsewhere leaves the Stage Ready. A digest that leaves out something the proxies serve the Stage
with would show Ready while they still serve the old one; one that takes in too much makes the
Stage flap to ReplicasPending on edits that do not touch it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib

from propylon_config import model


def stage_digests(snapshot: model.GatewayConfig) -> dict[str, str]:
    """Stage id -> a digest of everything in the snapshot that changes how the proxies serve it.

    It covers, and must keep covering, more than the Stage: its Api (and canary Api), the
    Authorizers its routes name, the UsagePlans that cover it with their API keys (as the
    snapshot holds them: keyed digests, never values; only hashed, never logged), the other
    Stages that can take its requests (``_rivals``), and the gateway-wide settings and key
    hashing. Other Stages' Authorizers and plans stay out, so editing those does not touch this
    one. The snapshot's Service endpoints stay out too: each proxy balances over the
    EndpointSlices it watches itself (``propylon_proxy.kube.sources``), whatever version it
    runs, so they say nothing about what a replica serves, and a backend's pods coming and
    going would make every Stage using it flap to ReplicasPending.
    """
    apis = {api.id: api for api in snapshot.apis}
    authorizers = {authorizer.id: authorizer for authorizer in snapshot.authorizers}
    rivals = _rivals(snapshot.stages)
    # Indexed once, not scanned per Stage: a snapshot of 1,000 Stages and 10,000 keys would
    # otherwise test every key against every Stage on each new version.
    plans_of_stage: dict[str, list[model.UsagePlan]] = collections.defaultdict(list)
    for plan in snapshot.usage_plans:  # sorted by id, so each list is too
        for stage_id in dict.fromkeys(s.stage for s in plan.stages):
            plans_of_stage[stage_id].append(plan)
    keys_of_plan: dict[str, list[model.ApiKey]] = collections.defaultdict(list)
    for key in snapshot.api_keys:
        for plan_id in key.plans:
            keys_of_plan[plan_id].append(key)
    digests: dict[str, str] = {}
    for stage in snapshot.stages:
        routes = stage.routes + (stage.canary.routes if stage.canary is not None else ())
        named = sorted({route.authorizer for route in routes if route.authorizer is not None})
        used = [(name, authorizers.get(name)) for name in named]
        plans = plans_of_stage.get(stage.id, [])
        plan_ids = {plan.id for plan in plans}
        selected = {key.id: key for plan_id in plan_ids for key in keys_of_plan.get(plan_id, ())}
        keys = [  # a key's other plans do not grant it this Stage: only its plans that cover it count
            dataclasses.replace(key, plans=tuple(p for p in key.plans if p in plan_ids))
            for _, key in sorted(selected.items())
        ]
        served = (
            stage,
            apis.get(stage.api),
            apis.get(stage.canary.api) if stage.canary is not None else None,
            used,
            plans,
            keys,
            rivals.get(stage.id, ()),
            snapshot.settings,
            snapshot.key_hashing,
        )
        digests[stage.id] = hashlib.sha256(repr(served).encode()).hexdigest()
    return digests


_Entry = tuple[int, model.Stage]  # (snapshot order, Stage)


@dataclasses.dataclass(slots=True)
class _Claims:
    """The Stages whose basePath starts with one prefix: all of them, and by the hosts they name."""

    every: list[_Entry] = dataclasses.field(default_factory=list)
    any_host: list[_Entry] = dataclasses.field(default_factory=list)
    exact: dict[str, list[_Entry]] = dataclasses.field(default_factory=dict)
    exact_by_parent: dict[str, list[_Entry]] = dataclasses.field(default_factory=dict)
    wildcard: dict[str, list[_Entry]] = dataclasses.field(default_factory=dict)
    digests: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    def digest(self, kind: str, key: str = "") -> str:
        """The Stages of one list as (id, basePath, hosts), hashed once however many ask."""
        found = self.digests.get((kind, key))
        if found is None:
            if kind == "every":
                entries = self.every
            elif kind == "any":
                entries = self.any_host
            else:
                entries = {"exact": self.exact, "parent": self.exact_by_parent, "wildcard": self.wildcard}[kind].get(
                    key, []
                )
            text = repr([(stage.id, stage.base_path, stage.hosts) for _, stage in entries])
            found = self.digests[(kind, key)] = hashlib.sha256(text.encode()).hexdigest()
        return found


def _rivals(stages: tuple[model.Stage, ...]) -> dict[str, tuple[str, ...]]:
    """Stage id -> digests of the Stages that can take a request from it (itself among them).

    The proxies give a request to the Stage with the longest matching basePath, then the most
    specific host, then the one declared first (``propylon_proxy.routing.StageTable``). So a
    Stage loses requests to another one whose basePath starts with its own and whose hosts can
    name the same host, on either listener: a new ``/shop/admin`` Stage beside ``/shop`` takes
    ``/shop/admin/...`` from it. Without them in its digest, ``/shop`` would stay Ready on
    replicas still serving those paths to it. Stages on other hosts, or on basePaths beside
    its own, stay out: adding one of those serves it the same.

    Indexed by basePath prefix and host, and each list hashed once: host-routed installs put
    many Stages on "/" with a host each beside many any-host Stages under it, and listing the
    rivals of each Stage would be quadratic (2,000 of each: 2 s, now tens of ms).
    """
    claims: dict[tuple[str, ...], _Claims] = collections.defaultdict(_Claims)
    for order, stage in enumerate(stages):
        base = _segments(stage.base_path)
        entry = (order, stage)
        for length in range(len(base) + 1):
            claim = claims[base[:length]]
            claim.every.append(entry)
            if not stage.hosts:
                claim.any_host.append(entry)
            for host in dict.fromkeys(stage.hosts):
                if host.startswith("*."):
                    claim.wildcard.setdefault(host, []).append(entry)
                else:
                    claim.exact.setdefault(host, []).append(entry)
                    head, _, parent = host.partition(".")
                    if head and parent:
                        claim.exact_by_parent.setdefault(parent, []).append(entry)
    rivals: dict[str, tuple[str, ...]] = {}
    for stage in stages:
        claim = claims[_segments(stage.base_path)]
        if not stage.hosts:  # it serves any host: every Stage under its basePath can take from it
            rivals[stage.id] = (claim.digest("every"),)
            continue
        parts = [claim.digest("any")]
        for host in stage.hosts:
            if host.startswith("*."):
                parts += (claim.digest("wildcard", host), claim.digest("parent", host[2:]))
            else:
                head, _, parent = host.partition(".")
                parts += (claim.digest("exact", host), claim.digest("wildcard", "*." + parent if head else ""))
        rivals[stage.id] = tuple(parts)
    return rivals


def _segments(base_path: str) -> tuple[str, ...]:
    """A basePath as routing compares it: its segments, none for "/"."""
    stripped = base_path.strip("/")
    return tuple(stripped.split("/")) if stripped else ()
