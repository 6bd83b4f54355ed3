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


def test_proxy_env_flags_become_pairs_and_refuse_the_operators_own_names() -> None:
    from propylon.commands import kube_operator

    args = cli.build_parser().parse_args(
        ["operator", "--proxy-env", "OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318", "--proxy-env", "OTEL_X=a=b"]
    )
    assert kube_operator._proxy_env(args.proxy_env) == (
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_X", "a=b"),
    )
    for bad, why in (("NOEQUALS", "expected NAME=VALUE"), ("1X=y", "expected"), ("PROPYLON_REDIS_URL=x", "operator")):
        with pytest.raises(SystemExit, match=why):
            kube_operator._proxy_env([bad])


def test_proxy_loop_is_one_of_the_proxies_loops(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.build_parser().parse_args(["operator"]).proxy_loop == "auto"
    assert cli.build_parser().parse_args(["operator", "--proxy-loop", "uvloop"]).proxy_loop == "uvloop"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["operator", "--proxy-loop", "trio"])
    assert "invalid choice" in capsys.readouterr().err
