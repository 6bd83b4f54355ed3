"""Fixtures of the control-plane tier (marker ``controlplane``).

``control_plane`` is one real etcd + kube-apiserver for the whole session with the CRDs of
crds/ installed and Established. ``test_hosts`` makes backends in network namespaces whose
addresses may appear in EndpointSlices. The tier skips, saying why, when the binaries are
missing (run tools/controlplane/build.sh); CI builds them, so there it always runs.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import cluster
import netns
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[cluster.ControlPlane]:
    missing = cluster.binaries_missing()
    if missing:
        pytest.skip(
            f"control-plane binaries missing in {cluster.binaries_dir()}: {', '.join(missing)} "
            "(run tools/controlplane/build.sh)"
        )
    plane = cluster.ControlPlane()
    try:
        plane.start()
        plane.install_crds()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: cluster.ControlPlane) -> pathlib.Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kubectl(control_plane: cluster.ControlPlane) -> Callable[..., object]:
    return control_plane.kubectl


@pytest.fixture(scope="session")
def apply(control_plane: cluster.ControlPlane) -> Callable[..., object]:
    return control_plane.apply


@pytest.fixture
def api_client(control_plane: cluster.ControlPlane) -> Iterator[object]:
    client = control_plane.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def test_hosts() -> Iterator[Callable[[str], netns.TestHost]]:
    """A factory: ``test_hosts("blue")`` starts an echo backend named "blue" in a new namespace."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    made: list[netns.TestHost] = []

    def make(name: str) -> netns.TestHost:
        host = netns.TestHost(name)
        made.append(host)
        return host.start()

    try:
        yield make
    finally:
        for host in made:
            host.close()
