"""Fixtures of the kind tier (marker ``kind``): the cluster tools/kind/e2e.sh made, and the gateway's Services.

The tier needs a real cluster with Propylon installed and examples/kubernetes applied, which is
what e2e.sh sets up before it runs pytest with ``PROPYLON_KIND_KUBECONFIG``. Without that variable
every test of test_kind_e2e.py skips and says how to run it; test_static.py needs no cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import kind_cluster
import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kind: needs a kind cluster set up by tools/kind/e2e.sh (tests/kind)")


@pytest.fixture(scope="session")
def kind_settings() -> kind_cluster.Settings:
    settings = kind_cluster.Settings.from_environment()
    if settings is None:
        pytest.skip(kind_cluster.SKIP_REASON)
    return settings


@pytest.fixture(scope="session")
def kubectl(kind_settings: kind_cluster.Settings) -> kind_cluster.Kubectl:
    return kind_cluster.Kubectl(kind_settings)


@pytest.fixture(scope="session")
def public(kubectl: kind_cluster.Kubectl, kind_settings: kind_cluster.Settings) -> Iterator[kind_cluster.PortForward]:
    """The gateway's public Service, named after the release (the gateway's name)."""
    forward = kind_cluster.PortForward(kubectl, kind_settings.namespace, kind_settings.release)
    try:
        yield forward
    finally:
        forward.close()


@pytest.fixture(scope="session")
def internal(kubectl: kind_cluster.Kubectl, kind_settings: kind_cluster.Settings) -> Iterator[kind_cluster.PortForward]:
    """The in-cluster Service: PRIVATE stages as well as PUBLIC ones."""
    forward = kind_cluster.PortForward(kubectl, kind_settings.namespace, f"{kind_settings.release}-internal")
    try:
        yield forward
    finally:
        forward.close()
