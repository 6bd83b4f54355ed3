"""Fixtures of the control-plane tier (marker ``controlplane``).

``control_plane`` is one real etcd + kube-apiserver for the whole session with the CRDs of
crds/ installed and Established; ``kube_apiserver`` is the same cluster for tests that need no
CRD (so a CRD the API server refuses fails only the tests that need one). ``test_hosts`` makes
backends in network namespaces whose addresses may appear in EndpointSlices. ``gateway`` is
one gateway's namespaces and processes (operator_env.Env); ``backend`` a loopback echo server.
The tier skips, saying why, when the binaries are missing (run tools/controlplane/build.sh);
CI builds them, so there it always runs.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import cluster
import netns
import operator_env
import pytest

from tests import backends


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def kube_apiserver() -> Iterator[cluster.ControlPlane]:
    """The bare cluster (core APIs only), for tests that need no Propylon CRD."""
    missing = cluster.binaries_missing()
    if missing:
        pytest.skip(
            f"control-plane binaries missing in {cluster.binaries_dir()}: {', '.join(missing)} "
            "(run tools/controlplane/build.sh)"
        )
    plane = cluster.ControlPlane()
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def control_plane(kube_apiserver: cluster.ControlPlane) -> cluster.ControlPlane:
    """The same cluster with every crds/*.yaml applied and Established (applied once per session)."""
    kube_apiserver.install_crds()
    return kube_apiserver


@pytest.fixture(scope="session")
def kubeconfig(kube_apiserver: cluster.ControlPlane) -> pathlib.Path:
    return kube_apiserver.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kube_apiserver: cluster.ControlPlane) -> Callable[..., object]:
    return kube_apiserver.kubectl


@pytest.fixture(scope="session")
def apply(kube_apiserver: cluster.ControlPlane) -> Callable[..., object]:
    return kube_apiserver.apply


@pytest.fixture
def api_client(kube_apiserver: cluster.ControlPlane) -> Iterator[object]:
    client = kube_apiserver.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def test_hosts() -> Iterator[Callable[[str], netns.TestHost]]:
    """A factory: ``test_hosts("blue")`` starts an echo backend named "blue" in a new namespace;
    ``test_hosts("fn", function="plain.echo", path=DIR)`` runs that Lambda handler under
    ``python -m propylon.function`` instead."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    made: list[netns.TestHost] = []

    def make(name: str, function: str | None = None, path: str | None = None) -> netns.TestHost:
        host = netns.TestHost(name, function=function, path=path)
        made.append(host)
        return host.start()

    try:
        yield make
    finally:
        for host in made:
            host.close()


@pytest.fixture
def gateway(control_plane: cluster.ControlPlane, tmp_path: pathlib.Path) -> Iterator[operator_env.Env]:
    """One gateway: its namespaces, and the operator and proxies a test starts in it, gone after."""
    made = operator_env.Env(control_plane, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def backend() -> Iterator[str]:
    """The URL of a loopback backend answering what it was sent as JSON (``path``, ``headers``)."""
    with backends.Backend(backends.echo_json) as server:
        yield server.url
