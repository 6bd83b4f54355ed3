"""Deleted data-plane objects come back at once: the operator owns them (DESIGN §7).

Without a watch on them the operator would apply them again only on its workload resync
(``workload_resync_s``, 300 s) or a new snapshot. Run as the chart runs it, under its
ServiceAccount's RBAC (the chart's Role lets it watch them in the gateway namespace).
"""

from __future__ import annotations

import operator_env as op
import pytest
from test_operator_token import start_chart_operator_with_token

from propylon_operator import workloads

pytestmark = pytest.mark.controlplane

BACK_WITHIN = 15.0  # seconds; far below the 300 s workload resync


def test_deleted_proxy_deployment_services_and_pdb_are_recreated_promptly(gateway: op.Env) -> None:
    env = gateway
    release, operator = start_chart_operator_with_token(env)
    settings = release.settings()
    owned = [
        ("deployment", op.GATEWAY),
        ("service", f"{op.GATEWAY}-internal"),
        ("service", op.GATEWAY),
        ("poddisruptionbudget", op.GATEWAY),
        ("serviceaccount", workloads.proxy_name(settings)),
        ("rolebinding", workloads.proxy_name(settings)),
    ]
    first = {
        (kind, name): op.eventually(
            lambda kind=kind, name=name: operator.alive() and env.get(kind, "-n", env.gw_ns, name),
            op.START_WITHIN,
            f"{kind} {name} applied",
        )
        for kind, name in owned
    }

    for kind, name in owned:
        env.plane.kubectl("delete", kind, "-n", env.gw_ns, name)
        again = op.eventually(
            lambda kind=kind, name=name: (
                (found := env.get(kind, "-n", env.gw_ns, name))
                and found["metadata"]["uid"] != first[kind, name]["metadata"]["uid"]
                and found
            ),
            BACK_WITHIN,
            f"{kind} {name} recreated after its deletion",
        )
        assert again["metadata"]["ownerReferences"] == first[kind, name]["metadata"]["ownerReferences"]
        assert f"{kind} {name} is gone".lower() in operator.log().lower()

    # Several at once (as a careless `kubectl delete -l` would): all back.
    deleted = env.plane.kubectl(
        "delete",
        "deployment,service,poddisruptionbudget",
        "-n",
        env.gw_ns,
        "-l",
        f"app.kubernetes.io/instance={op.GATEWAY},app.kubernetes.io/name=propylon-proxy",
    )
    assert deleted.stdout.count("deleted") == 4, deleted.stdout
    for kind, name in owned:
        op.eventually(
            lambda kind=kind, name=name: env.get(kind, "-n", env.gw_ns, name), BACK_WITHIN, f"{kind} {name} back"
        )
    log = operator.log()
    assert "cannot watch" not in log and "Forbidden" not in log, log[-4000:]
