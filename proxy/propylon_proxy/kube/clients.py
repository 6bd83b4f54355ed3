"""An API client for the proxy: from ``--kubeconfig``, in-cluster credentials, or the default kubeconfig.

In a pod the service-account token is mounted and rotated by the kubelet; the client's in-cluster
loader re-reads it, so long-running watches keep working across rotations.
"""

from __future__ import annotations

import os

from kubernetes import client, config


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config()
