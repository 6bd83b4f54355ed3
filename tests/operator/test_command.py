from __future__ import annotations

import pytest

from propylon import cli


def test_flags_parse_as_documented() -> None:
    args = cli.build_parser().parse_args(
        ["operator", "-n", "shop", "-n", "blog", "--gateway-name", "edge", "--hpa-max", "5", "--webhook-port", "9443"]
    )
    assert args.namespace == ["shop", "blog"]
    assert (args.gateway_name, args.hpa_max, args.webhook_port) == ("edge", 5, 9443)
    assert args.webhook_configuration == "propylon.dev"
    assert args.peering is None  # standalone unless told otherwise
    assert args.proxy_cluster_role is None  # the operator binds the proxies' ClusterRole itself


def test_proxy_cluster_role_names_the_installers_cluster_role() -> None:
    args = cli.build_parser().parse_args(["operator", "--proxy-cluster-role", "propylon-proxy-edge"])
    assert args.proxy_cluster_role == "propylon-proxy-edge"


def test_namespaces_and_all_namespaces_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["operator", "-n", "shop", "--all-namespaces"])
    assert "not allowed with" in capsys.readouterr().err


def test_missing_credentials_are_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert cli.main(["operator", "--kubeconfig", str(tmp_path / "nope")]) == 2
    assert "cannot load cluster credentials" in capsys.readouterr().err
