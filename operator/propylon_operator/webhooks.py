"""The ValidatingWebhookConfiguration that points the API server at the operator's webhook.

kopf serves the admission reviews; this module says where the API server should send them.
kopf could manage the configuration itself, but it then also insists on a mutating one (more
RBAC, for nothing), and it cannot limit the webhook to the namespaces this operator watches.
Here, one webhook per Propylon kind, each routed to the kopf handler of the same id, failing
open (with the operator down, status conditions still catch what the webhook would have).
Pure builder; the reconcile applies it.
"""

from __future__ import annotations

import base64
from typing import Any

from propylon_operator import settings as settings_

GROUP = "propylon.dev"
VERSION = "v1alpha1"
PLURALS = ("apis", "stages", "usageplans", "authorizers")


def handler_id(plural: str) -> str:
    """The kopf handler id, which is also the URL path kopf's webhook server routes by."""
    return f"validate-{plural}"


def configuration(settings: settings_.Settings, ca_pem: bytes) -> dict[str, Any]:
    base = settings.webhook_url or f"https://{_host(settings.webhook_host)}:{settings.webhook_port}"
    webhook: list[dict[str, Any]] = []
    for plural in PLURALS:
        entry: dict[str, Any] = {
            "name": f"{handler_id(plural)}.{settings.webhook_configuration}",
            "clientConfig": {
                "url": f"{base.rstrip('/')}/{handler_id(plural)}",
                "caBundle": base64.b64encode(ca_pem).decode(),
            },
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "apiVersions": [VERSION],
                    "resources": [plural],
                    "operations": ["CREATE", "UPDATE"],
                    "scope": "Namespaced",
                }
            ],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
            "matchPolicy": "Equivalent",
        }
        if not settings.watches_all_namespaces:
            entry["namespaceSelector"] = {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(settings.namespaces)}
                ]
            }
        webhook.append(entry)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": settings.webhook_configuration,
            "labels": {"app.kubernetes.io/managed-by": "propylon", "app.kubernetes.io/instance": settings.gateway_name},
        },
        "webhooks": webhook,
    }


def path(name: str) -> str:
    return f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
