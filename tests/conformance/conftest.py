"""Fixtures of the conformance tables: one target per kind for the whole session.

``serve_target`` needs nothing but this checkout. ``operator_target`` needs the control-plane
tier (etcd + kube-apiserver from tools/controlplane/build.sh, root for the network namespace);
it reuses that tier's ``cluster`` and ``netns`` helpers and skips, saying why, where they
cannot run. Items that play the operator target carry the ``controlplane`` marker.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
import types
from collections.abc import Iterator

import conformance_cases as cases
import conformance_echo as echo
import conformance_targets as targets
import pytest

CONTROLPLANE_TESTS = pathlib.Path(__file__).resolve().parents[1] / "controlplane"


@pytest.fixture(scope="session")
def serve_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[targets.ServeTarget]:
    backend = echo.EchoBackend("127.0.0.1").start()
    target = targets.ServeTarget(backend, tmp_path_factory.mktemp("conformance-serve"))
    try:
        yield target
    finally:
        target.close()
        backend.close()


def _controlplane_helpers() -> tuple[types.ModuleType, types.ModuleType]:
    """The ``cluster`` and ``netns`` modules of tests/controlplane, shared rather than copied."""
    if str(CONTROLPLANE_TESTS) not in sys.path:
        sys.path.append(str(CONTROLPLANE_TESTS))
    import cluster
    import netns

    return cluster, netns


@pytest.fixture(scope="session")
def operator_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[targets.OperatorTarget]:
    cluster, netns = _controlplane_helpers()
    missing = cluster.binaries_missing()
    if missing:
        pytest.skip(f"control-plane binaries missing in {cluster.binaries_dir()}: {', '.join(missing)}")
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with contextlib.ExitStack() as cleanup:
        plane = cluster.ControlPlane()
        cleanup.callback(plane.stop)
        plane.start()
        plane.install_crds()
        # The namespace's address is one the API server accepts in an EndpointSlice. (The tier's
        # own echo server answers on port 8080 there; this one, which keeps records, on 8090.)
        host = netns.TestHost("conformance")
        cleanup.callback(host.close)
        host.start()
        backend = echo.RemoteEcho(host.namespace, host.address)
        cleanup.callback(backend.close)
        backend.start()
        target = targets.OperatorTarget(
            backend,
            tmp_path_factory.mktemp("conformance-operator"),
            plane.kubectl,
            plane.kubeconfig,
            [case.name for case in cases.load_all()],
        )
        cleanup.callback(target.stop)
        yield target.start()
