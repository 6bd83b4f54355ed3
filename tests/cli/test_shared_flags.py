"""`serve`, `proxy` and `operator` take the shared-store and forwarding flags alike.

The flags are defined once (propylon/commands/shared_flags.py); these tests hold the three
commands to it: the same names, help, choices and refusal of a bad value, and only the
Deployment-run commands take defaults from the environment.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from propylon import cli
from propylon.commands import shared_flags
from propylon_operator import settings as operator_settings
from propylon_operator import workloads
from propylon_proxy import settings

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("serve", "proxy", "operator")
# What each command needs besides the flags under test to parse at all.
REQUIRED = {"serve": ["-f", "x.yaml"], "proxy": ["--config-secret", "ns/name"], "operator": []}
SHARED = {"--redis-cluster", "--redis-failure", "--redis-timeout-ms", "--ws-registry-ttl", "--trusted-proxies"}


def _command(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command: argparse.ArgumentParser = sub.choices[name]
    return command


def _actions(name: str) -> dict[str, argparse.Action]:
    return {option: action for action in _command(name)._actions for option in action.option_strings}


def test_the_three_commands_accept_the_same_shared_flags() -> None:
    for name in COMMANDS:
        assert set(_actions(name)) >= SHARED, name
    # Redis is reached by URL by the commands that talk to it, by a Secret's name by the operator.
    assert "--redis" in _actions("serve") and "--redis" in _actions("proxy")
    assert "--redis-secret" in _actions("operator") and "--redis" not in _actions("operator")


def test_the_shared_flags_have_one_help_text_and_the_same_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("URL", "CLUSTER", "FAILURE", "TIMEOUT_MS"):
        monkeypatch.delenv(f"PROPYLON_REDIS_{variable}", raising=False)
    monkeypatch.delenv("PROPYLON_WS_REGISTRY_TTL", raising=False)
    per_command = {name: _actions(name) for name in COMMANDS}
    for flag in SHARED | {"--redis"}:
        having = [actions[flag] for actions in per_command.values() if flag in actions]
        # Help differs at most by the "(default: $VARIABLE)" note of the Deployment-run commands.
        assert len({(a.help or "").split(" (default")[0] for a in having}) == 1, flag
        assert len({(a.choices and tuple(a.choices), a.metavar, a.default) for a in having}) == 1, flag


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_parses_the_shared_flags(name: str) -> None:
    store = "--redis-secret" if name == "operator" else "--redis"
    value = "redis://x" if store == "--redis" else "x"  # --redis takes a URL redis-py opens
    flags = [store, value, "--redis-cluster", "--redis-failure", "closed", "--redis-timeout-ms", "250"]
    flags += ["--ws-registry-ttl", "7.5"]
    args = _command(name).parse_args([*REQUIRED[name], *flags, "--trusted-proxies", "10.0.0.0/8"])
    assert (args.redis_cluster, args.redis_failure, args.trusted_proxies) == (True, "closed", "10.0.0.0/8")
    assert shared_flags.redis_timeout(args) == 0.25  # seconds, as limit_stores.open_store takes it
    assert shared_flags.ws_registry_ttl(args) == 7.5


def test_only_the_deployed_commands_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPYLON_REDIS_URL", "redis://store:6379/0")
    monkeypatch.setenv("PROPYLON_REDIS_SECRET", "shared-store")
    monkeypatch.setenv("PROPYLON_REDIS_CLUSTER", "true")
    monkeypatch.setenv("PROPYLON_REDIS_FAILURE", "closed")
    monkeypatch.setenv("PROPYLON_REDIS_TIMEOUT_MS", "120")
    monkeypatch.setenv("PROPYLON_WS_REGISTRY_TTL", "9")
    proxy = _command("proxy").parse_args(REQUIRED["proxy"])
    assert (proxy.redis, proxy.redis_cluster, proxy.redis_failure) == ("redis://store:6379/0", True, "closed")
    operator = _command("operator").parse_args([])
    assert (operator.redis_secret, operator.redis_cluster, operator.redis_failure) == ("shared-store", True, "closed")
    assert proxy.redis_timeout_ms == operator.redis_timeout_ms == 120.0
    assert proxy.ws_registry_ttl == operator.ws_registry_ttl == 9.0
    serve = _command("serve").parse_args(REQUIRED["serve"])
    assert (serve.redis, serve.redis_cluster, serve.redis_failure) == (None, False, "open")
    assert shared_flags.redis_timeout(serve) is None  # the store's own 50 ms
    assert shared_flags.ws_registry_ttl(serve) == 30.0  # the proxy's own default


def _propylon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console script: a refusal while parsing comes before any file, cluster or port."""
    script = shutil.which("propylon")
    command = [script] if script else [sys.executable, "-m", "propylon"]
    environment = {**os.environ, **(env or {})}
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=environment)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_trusted_proxy_is_refused_alike_by_every_command(name: str) -> None:
    done = _propylon(name, *REQUIRED[name], "--trusted-proxies", "10.0.0.0/8,not-an-ip")
    assert done.returncode == 2
    assert "argument --trusted-proxies: not a CIDR: 'not-an-ip'" in done.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_a_redis_budget_must_be_a_positive_number_of_milliseconds(name: str) -> None:
    for bad, said in (("0", "must be above 0 ms"), ("-5", "must be above 0 ms"), ("fast", "not a number")):
        done = _propylon(name, *REQUIRED[name], "--redis-timeout-ms", bad)
        assert done.returncode == 2, bad
        assert f"argument --redis-timeout-ms: {said}" in done.stderr, done.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_a_websocket_registry_ttl_must_be_a_positive_number_of_seconds(name: str) -> None:
    for bad, said in (("0", "must be above 0 s"), ("-1", "must be above 0 s"), ("inf", "must be above 0 s")):
        done = _propylon(name, *REQUIRED[name], "--ws-registry-ttl", bad)
        assert done.returncode == 2, bad
        assert f"argument --ws-registry-ttl: {said}" in done.stderr, done.stderr
    done = _propylon(name, *REQUIRED[name], "--ws-registry-ttl", "soon")
    assert "argument --ws-registry-ttl: not a number of seconds: 'soon'" in done.stderr


def test_a_bad_budget_in_the_environment_is_refused_by_the_command_that_reads_it_only() -> None:
    done = _propylon("proxy", *REQUIRED["proxy"], env={"PROPYLON_REDIS_TIMEOUT_MS": "soon"})
    assert done.returncode == 2
    assert "argument --redis-timeout-ms: not a number of milliseconds: 'soon'" in done.stderr
    assert _propylon("validate", "-f", "examples/kubernetes", env={"PROPYLON_REDIS_TIMEOUT_MS": "soon"}).returncode == 0


SLOW_CLIENTS = {
    "--header-timeout": ("PROPYLON_HEADER_TIMEOUT", "header_timeout"),
    "--body-stall-timeout": ("PROPYLON_BODY_STALL_TIMEOUT", "body_stall_timeout"),
    "--keepalive-timeout": ("PROPYLON_KEEPALIVE_TIMEOUT", "keepalive_timeout"),
    "--response-stall-timeout": ("PROPYLON_RESPONSE_STALL_TIMEOUT", "response_stall_timeout"),
}
DATA_PLANES = ("serve", "proxy")  # the commands that run listeners


def test_the_data_planes_take_the_slow_client_limits_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, _ in SLOW_CLIENTS.values():
        monkeypatch.delenv(variable, raising=False)
    for flag in SLOW_CLIENTS:
        having = [_actions(name)[flag] for name in DATA_PLANES]
        assert len({(a.help or "").split(" (default")[0] for a in having}) == 1, flag
        assert len({(a.metavar, a.default) for a in having}) == 1, flag
    # The defaults stay ListenerSettings' own (DESIGN.md §8: 10 s, 30 s, 75 s, and 30 s for a
    # response body that makes no progress).
    for name in DATA_PLANES:
        chosen = shared_flags.listener_settings(_command(name).parse_args(REQUIRED[name]))
        assert chosen == settings.ListenerSettings()
        assert (chosen.header_timeout, chosen.body_stall_timeout, chosen.keepalive_timeout) == (10, 30, 75)
        assert chosen.response_stall_timeout == 30


@pytest.mark.parametrize("name", DATA_PLANES)
def test_the_slow_client_flags_become_the_listener_settings(name: str) -> None:
    flags = ["--header-timeout", "2.5", "--body-stall-timeout", "4", "--keepalive-timeout", "120"]
    flags += ["--response-stall-timeout", "9"]
    chosen = shared_flags.listener_settings(_command(name).parse_args([*REQUIRED[name], *flags]))
    assert chosen == settings.ListenerSettings(
        header_timeout=2.5, body_stall_timeout=4.0, keepalive_timeout=120.0, response_stall_timeout=9.0
    )
    only_one = shared_flags.listener_settings(_command(name).parse_args([*REQUIRED[name], "--keepalive-timeout", "5"]))
    assert only_one == settings.ListenerSettings(keepalive_timeout=5.0)


def test_only_proxy_reads_the_slow_client_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, _ in SLOW_CLIENTS.values():
        monkeypatch.setenv(variable, "7")
    proxy = shared_flags.listener_settings(_command("proxy").parse_args(REQUIRED["proxy"]))
    assert (proxy.header_timeout, proxy.body_stall_timeout, proxy.keepalive_timeout) == (7.0, 7.0, 7.0)
    assert proxy.response_stall_timeout == 7.0
    given = _command("proxy").parse_args([*REQUIRED["proxy"], "--header-timeout", "3"])
    assert shared_flags.listener_settings(given).header_timeout == 3.0  # a flag beats its variable
    assert (
        shared_flags.listener_settings(_command("serve").parse_args(REQUIRED["serve"])) == settings.ListenerSettings()
    )


def test_the_operator_passes_the_slow_client_limits_given_to_every_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """DESIGN.md section 8 "All configurable", in the cluster too: the operator takes the same
    flags (or the chart's variables) and sets only those given on the proxies it deploys."""
    for variable, _ in SLOW_CLIENTS.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PROPYLON_KEEPALIVE_TIMEOUT", "120")
    args = _command("operator").parse_args([*REQUIRED["operator"], "--header-timeout", "4.5"])
    chosen = shared_flags.slow_client_variables(args)
    assert chosen == (("PROPYLON_HEADER_TIMEOUT", 4.5), ("PROPYLON_KEEPALIVE_TIMEOUT", 120.0))
    proxy = workloads.deployment(operator_settings.Settings(slow_clients=chosen), None)
    env = {e["name"]: e.get("value") for e in proxy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PROPYLON_HEADER_TIMEOUT"] == "4.5" and env["PROPYLON_KEEPALIVE_TIMEOUT"] == "120"
    assert "PROPYLON_BODY_STALL_TIMEOUT" not in env  # the proxy keeps its own 30 s
    # ... and the proxy reads them back as the limits the operator was given.
    for name, value in env.items():
        if name in ("PROPYLON_HEADER_TIMEOUT", "PROPYLON_KEEPALIVE_TIMEOUT"):
            monkeypatch.setenv(name, str(value))
    listener = shared_flags.listener_settings(_command("proxy").parse_args(REQUIRED["proxy"]))
    assert (listener.header_timeout, listener.body_stall_timeout, listener.keepalive_timeout) == (4.5, 30.0, 120.0)


@pytest.mark.parametrize("name", DATA_PLANES)
@pytest.mark.parametrize("flag", sorted(SLOW_CLIENTS))
def test_a_slow_client_limit_must_be_a_positive_number_of_seconds(name: str, flag: str) -> None:
    for bad, said in (("0", "must be above 0 s"), ("-1", "must be above 0 s"), ("inf", "must be above 0 s")):
        done = _propylon(name, *REQUIRED[name], flag, bad)
        assert done.returncode == 2, bad
        assert f"argument {flag}: {said}, got '{bad}'" in done.stderr, done.stderr
    done = _propylon(name, *REQUIRED[name], flag, "soon")
    assert done.returncode == 2
    assert f"argument {flag}: not a number of seconds: 'soon'\n" in done.stderr, done.stderr


@pytest.mark.parametrize("flag", sorted(SLOW_CLIENTS))
def test_a_bad_slow_client_variable_is_refused_naming_it_by_proxy_only(flag: str) -> None:
    variable = SLOW_CLIENTS[flag][0]
    for bad, said in (("soon", "not a number of seconds: 'soon'"), ("-3", "must be above 0 s, got '-3'")):
        done = _propylon("proxy", *REQUIRED["proxy"], env={variable: bad})
        assert done.returncode == 2, bad
        assert f"argument {flag}: {said} (from ${variable})" in done.stderr, done.stderr
    assert _propylon("validate", "-f", "examples/kubernetes", env={variable: "soon"}).returncode == 0


def test_a_bad_store_variable_is_named_too() -> None:
    done = _propylon("proxy", *REQUIRED["proxy"], env={"PROPYLON_WS_REGISTRY_TTL": "0"})
    assert "argument --ws-registry-ttl: must be above 0 s, got '0' (from $PROPYLON_WS_REGISTRY_TTL)" in done.stderr


@pytest.mark.parametrize("name", DATA_PLANES)
def test_drain_seconds_is_zero_or_more_and_finite(name: str) -> None:
    """A negative grace was taken as it was: a stopping gateway cut running requests at once."""
    for good, value in (("0", 0.0), ("2.5", 2.5)):
        assert _command(name).parse_args([*REQUIRED[name], "--drain-seconds", good]).drain_seconds == value
    assert _command(name).parse_args(REQUIRED[name]).drain_seconds == 25.0
    for bad in ("-1", "inf", "nan"):
        done = _propylon(name, *REQUIRED[name], "--drain-seconds", bad)
        assert done.returncode == 2, bad
        assert f"argument --drain-seconds: must be 0 s or more, and finite, got '{bad}'" in done.stderr, done.stderr
    done = _propylon(name, *REQUIRED[name], "--drain-seconds", "soon")
    assert done.returncode == 2
    assert "argument --drain-seconds: not a number of seconds: 'soon'" in done.stderr, done.stderr


REDIS_URL_PROBLEMS = (
    ("foo://bar", "must be a redis://, rediss:// or unix:// URL, got scheme 'foo'"),
    ("redis://127.0.0.1:notaport", "not a Redis URL: the port must be a number 0..65535"),
    ("redis://127.0.0.1:99999", "not a Redis URL: the port must be a number 0..65535"),
    ("127.0.0.1:6379", "must be a redis://, rediss:// or unix:// URL, got no scheme"),
    ("redis://store/0?db=zero", "not a Redis URL: Invalid value for 'db' in connection URL."),
)


@pytest.mark.parametrize("name", DATA_PLANES)
def test_a_malformed_redis_url_exits_2_naming_the_flag(name: str) -> None:
    """Audit: these crashed ``serve`` and ``proxy`` with a traceback and exit 1 once the store was built."""
    for bad, said in REDIS_URL_PROBLEMS:
        done = _propylon(name, *REQUIRED[name], "--redis", bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert f"argument --redis: {said}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", DATA_PLANES)
def test_a_redis_url_refusal_never_shows_its_password(name: str) -> None:
    for bad in ("foo://user:hunter2@bar", "redis://:hunter2", "redis://u:hunter2@h:port", "redis://h?db=hunter2"):
        done = _propylon(name, *REQUIRED[name], "--redis", bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert "argument --redis: " in done.stderr and "hunter2" not in done.stderr, done.stderr


@pytest.mark.parametrize("name", DATA_PLANES)
def test_the_urls_redis_py_opens_are_taken(name: str) -> None:
    for good in ("redis://store:6379/0", "rediss://user:pw@store:6380/1", "unix:///run/redis.sock?db=2", "redis://"):
        assert _command(name).parse_args([*REQUIRED[name], "--redis", good]).redis == good


def test_a_malformed_redis_url_in_the_environment_is_refused_naming_it_by_proxy_only() -> None:
    done = _propylon("proxy", *REQUIRED["proxy"], env={"PROPYLON_REDIS_URL": "redis://:hunter2@store:notaport"})
    assert done.returncode == 2, done.stderr
    assert (
        "argument --redis: not a Redis URL: the port must be a number 0..65535 (from $PROPYLON_REDIS_URL)"
        in done.stderr
    ), done.stderr
    assert "hunter2" not in done.stderr
    # serve reads no variable, so a stray one never stops it from parsing.
    assert _command("serve").parse_args(REQUIRED["serve"]).redis is None


@pytest.mark.parametrize("name", DATA_PLANES)
def test_a_redis_cluster_over_a_unix_socket_exits_2_naming_the_flag(name: str) -> None:
    """A cluster is reached over TCP: redis-py's cluster client raised a traceback (exit 1) on a
    unix:// URL once the store was built."""
    done = _propylon(name, *REQUIRED[name], "--redis", "unix:///run/redis.sock", "--redis-cluster")
    assert done.returncode == 2, done.stderr
    assert "--redis-cluster needs a redis:// or rediss:// URL" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
