"""What can be checked of the kind suite without Docker: the script, the kind config, the values.

The kind run itself (tools/kind/e2e.sh) needs a Docker engine, which this project's CI does not
have, so these checks keep its parts honest where it never runs: the script parses and passes
shellcheck, the kind config is one kind v0.33.0 accepts in shape, the Helm values validate
against the chart's schema and render an operator that runs the image the script builds, and
the script's own control flow (order of steps, deleting the cluster on failure, keeping it with
KEEP_CLUSTER=1) holds when docker, kind, kubectl, helm and python are stand-ins that log calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "kind" / "e2e.sh"
KIND_CONFIG = ROOT / "tools" / "kind" / "cluster.yaml"
VALUES = ROOT / "tools" / "kind" / "values.yaml"
CHART = ROOT / "charts" / "propylon"
RELEASE = "propylon"
NAMESPACE = "propylon-system"

# Top-level and node fields of kind's v1alpha4 Cluster (sigs.k8s.io/kind@v0.33.0,
# pkg/apis/config/v1alpha4/types.go); kind decodes strictly, so any other key fails `create`.
KIND_CLUSTER_FIELDS = {
    "kind",
    "apiVersion",
    "name",
    "nodes",
    "networking",
    "featureGates",
    "runtimeConfig",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
    "containerdConfigPatches",
    "containerdConfigPatchesJSON6902",
}
KIND_NODE_FIELDS = {
    "role",
    "image",
    "labels",
    "extraMounts",
    "extraPortMappings",
    "kubeadmConfigPatches",
    "kubeadmConfigPatchesJSON6902",
}


def _script_constant(name: str) -> str:
    found = re.search(rf"^readonly {name}=(\S+)$", SCRIPT.read_text(), re.MULTILINE)
    assert found, f"tools/kind/e2e.sh has no 'readonly {name}=...'"
    return found.group(1)


# --- the script -------------------------------------------------------------------------------


def test_script_parses() -> None:
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    done = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_script_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)


# --- the kind config --------------------------------------------------------------------------


def test_kind_config_is_a_v1alpha4_cluster() -> None:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(config) <= KIND_CLUSTER_FIELDS, set(config) - KIND_CLUSTER_FIELDS
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1, roles
    for node in config["nodes"]:
        assert set(node) <= KIND_NODE_FIELDS, set(node) - KIND_NODE_FIELDS
    assert config["name"] == "propylon-e2e"


# --- the Helm values --------------------------------------------------------------------------


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return values


def test_values_validate_against_the_chart_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(_values(), schema)
    # Helm validates the merged values; a key the overrides add must survive that too.
    merged = {key: {**defaults.get(key, {}), **value} for key, value in _values().items()}
    jsonschema.validate({**defaults, **merged}, schema)


def test_values_name_the_image_the_script_builds() -> None:
    image = _script_constant("IMAGE")
    values = _values()
    assert f"{values['image']['repository']}:{values['image']['tag']}" == image
    assert values["proxy"]["image"] == image
    # A pull would go to Docker Hub for a name that only exists in the node: never pull.
    assert values["image"]["pullPolicy"] == "Never"
    assert _script_constant("RELEASE") == RELEASE
    assert _script_constant("NAMESPACE") == NAMESPACE


def _find_helm() -> str | None:
    found = shutil.which("helm")
    if found:
        return found
    for candidate in sorted((Path.home() / ".cache" / "propylon").glob("k8s-*/bin/helm"), reverse=True):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def test_chart_renders_an_operator_running_the_e2e_image(tmp_path: Path) -> None:
    helm = _find_helm()
    if helm is None:
        pytest.skip("no helm binary (PATH or ~/.cache/propylon/k8s-*/bin/helm; tools/controlplane/build.sh)")
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(VALUES)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    documents = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    deployments = [doc for doc in documents if doc["kind"] == "Deployment"]
    # The tests and the script wait for these names.
    assert [d["metadata"]["name"] for d in deployments] == [f"{RELEASE}-operator"]
    assert deployments[0]["metadata"]["namespace"] == NAMESPACE
    (container,) = deployments[0]["spec"]["template"]["spec"]["containers"]
    image = _script_constant("IMAGE")
    assert container["image"] == image
    assert container["imagePullPolicy"] == "Never"
    assert container["args"][0] == "operator"
    assert f"--proxy-image={image}" in container["args"]
    assert "--replicas=2" in container["args"]
    assert f"--gateway-name={RELEASE}" in container["args"]
    assert f"--gateway-namespace={NAMESPACE}" in container["args"]
    assert f"--owner-deployment={RELEASE}-operator" in container["args"]


# --- the script's control flow, with stand-ins ------------------------------------------------

STUB = """#!/usr/bin/env bash
printf '%s %s\\n' "$(basename "$0")" "$*" >> "$CALLS"
case "$(basename "$0") $*" in
  "kind version"*) echo "kind v0.33.0 (stand-in)" ;;
  "kind get clusters"*) echo "$EXISTING" ;;
  "python3 -m pytest"*) echo "PROPYLON_KIND_KUBECONFIG=$PROPYLON_KIND_KUBECONFIG" >> "$CALLS" ;;
esac
case " $* " in
  *" $FAIL_ON "*) exit 1 ;;
esac
exit 0
"""


def _run_with_stand_ins(
    tmp_path: Path, fail_on: str, *, keep: bool = False, existing: str = ""
) -> tuple[int, list[str], str]:
    """Run e2e.sh with logging stand-ins; ``fail_on``: an argument whose stand-in exits 1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "kind", "kubectl", "helm", "python3"):
        stub = bin_dir / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "CALLS": str(calls),
        "FAIL_ON": fail_on,
        "EXISTING": existing,
        "KIND": str(bin_dir / "kind"),
        "KUBECTL": str(bin_dir / "kubectl"),
        "HELM": str(bin_dir / "helm"),
        "PYTHON": str(bin_dir / "python3"),
    }
    if keep:
        env["KEEP_CLUSTER"] = "1"
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    return done.returncode, calls.read_text().splitlines(), done.stderr


def _index(calls: list[str], prefix: str) -> int:
    for number, call in enumerate(calls):
        if call.startswith(prefix):
            return number
    raise AssertionError(f"no call starting with {prefix!r} in:\n" + "\n".join(calls))


def test_script_runs_its_steps_in_order_and_deletes_the_cluster(tmp_path: Path) -> None:
    rc, calls, stderr = _run_with_stand_ins(tmp_path, fail_on="no-such-argument")
    assert rc == 0, stderr
    order = [
        "docker info",
        "docker build -t propylon:e2e",
        "kind create cluster --name propylon-e2e --config tools/kind/cluster.yaml",
        "kind load docker-image propylon:e2e --name propylon-e2e",
        f"helm install {RELEASE} charts/propylon --namespace {NAMESPACE} --create-namespace -f tools/kind/values.yaml",
        "kubectl apply -f examples/kubernetes/",
        f"kubectl -n {NAMESPACE} wait --for=condition=Available deployment/{RELEASE}",
        "kubectl -n demo wait --for=condition=Ready stages.propylon.dev/prod",
        "python3 -m pytest tests/kind -m kind",
        "kind delete cluster --name propylon-e2e",
    ]
    positions = [_index(calls, prefix) for prefix in order]
    assert positions == sorted(positions), "\n".join(calls)
    handed = calls[_index(calls, "PROPYLON_KIND_KUBECONFIG=")]
    assert handed.endswith("/kubeconfig") and str(tmp_path) in handed
    # Timestamped progress on stderr.
    assert re.search(r"^\[\d\d:\d\d:\d\d \+ *\d+s\] kind create cluster", stderr, re.MULTILINE), stderr


def test_a_failed_step_prints_diagnostics_and_still_deletes_the_cluster(tmp_path: Path) -> None:
    rc, calls, stderr = _run_with_stand_ins(tmp_path, fail_on="install")
    assert rc != 0
    assert "python3 -m pytest" not in "\n".join(calls)
    assert _index(calls, "kubectl get pods -A") > _index(calls, "helm install")
    assert calls[-1].startswith("kind delete cluster --name propylon-e2e"), calls
    assert "failed" in stderr


def test_a_refused_image_load_falls_back_to_a_single_platform_archive(tmp_path: Path) -> None:
    rc, calls, stderr = _run_with_stand_ins(tmp_path, fail_on="docker-image")
    assert rc == 0, stderr
    saved = _index(calls, "docker image save --platform linux/")
    assert "propylon:e2e" in calls[saved]
    assert _index(calls, "kind load image-archive") > saved


def test_keep_cluster_keeps_it(tmp_path: Path) -> None:
    rc, calls, stderr = _run_with_stand_ins(tmp_path, fail_on="no-such-argument", keep=True)
    assert rc == 0, stderr
    assert not any(call.startswith("kind delete") for call in calls), calls
    assert "KEEP_CLUSTER=1" in stderr and "export KUBECONFIG=" in stderr


def test_an_existing_cluster_of_that_name_is_left_alone(tmp_path: Path) -> None:
    """A kept cluster from an earlier run is neither reused half-configured nor deleted."""
    rc, calls, stderr = _run_with_stand_ins(tmp_path, fail_on="no-such-argument", existing="propylon-e2e")
    assert rc != 0
    assert "exists already" in stderr
    assert not any(call.startswith(("kind delete", "kind create", "docker build")) for call in calls), calls
