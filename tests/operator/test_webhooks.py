from __future__ import annotations

import base64

from propylon_operator import settings, webhooks


def test_one_webhook_per_kind_routed_to_its_handler_failing_open() -> None:
    s = settings.Settings(webhook_port=9443, webhook_host="op-webhook.sys.svc", webhook_configuration="gw.propylon.dev")
    config = webhooks.configuration(s, b"PEM")
    assert config["metadata"]["name"] == "gw.propylon.dev"
    assert [w["name"] for w in config["webhooks"]] == [
        "validate-apis.gw.propylon.dev",
        "validate-stages.gw.propylon.dev",
        "validate-usageplans.gw.propylon.dev",
        "validate-authorizers.gw.propylon.dev",
    ]
    first = config["webhooks"][0]
    assert first["clientConfig"] == {
        "url": "https://op-webhook.sys.svc:9443/validate-apis",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert first["rules"][0]["resources"] == ["apis"]
    assert first["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert first["failurePolicy"] == "Ignore"
    assert "namespaceSelector" not in first  # all namespaces watched


def test_watched_namespaces_limit_the_webhook_and_a_url_overrides_host_and_port() -> None:
    s = settings.Settings(namespaces=("b", "a"), webhook_port=1, webhook_url="https://tunnel.example/")
    first = webhooks.configuration(s, b"x")["webhooks"][0]
    assert first["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
    ]
    assert first["clientConfig"]["url"] == "https://tunnel.example/validate-apis"
