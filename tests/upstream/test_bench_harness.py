"""bench/run.py's own parts: wrk parsing, ratios, generated nginx configs, the Propylon manifests.

The harness is run by hand, so these keep it from rotting between runs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

WRK_REPORT = """Running 1s test @ http://127.0.0.1:18081/hello
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    65.89us  122.37us   3.53ms   99.23%
    Req/Sec    54.76k     3.03k   60.70k    80.00%
  Latency Distribution
     50%   59.00us
     75%   67.00us
     90%   77.00us
     99%    1.37ms
  54327 requests in 1.00s, 7.72MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 12
Requests/sec:  54279.51
Transfer/sec:      7.71MB
"""


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))  # run.py imports its siblings, as a script does
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_wrk_report_is_parsed(bench: ModuleType) -> None:
    assert bench.parse_wrk(WRK_REPORT) == {
        "requests_per_s": 54279.51,
        "requests": 54327,
        "p50_ms": pytest.approx(0.059),
        "p99_ms": pytest.approx(1.37),
        "non_2xx": 12,
        "socket_errors": 3,
    }


def test_summary_takes_medians_and_ratios(bench: ModuleType) -> None:
    rows = [
        bench.Measurement("backend", r, rps, 0.1, 1.0, 100, 0, 0, cpu)
        for r, rps, cpu in [(1, 100.0, 10.0), (2, 300.0, 10.0), (3, 200.0, 12.0)]
    ] + [bench.Measurement("x", r, 50.0, 1.0, 2.0, 100, 0, 0, 40.0) for r in (1, 2, 3)]
    summary = bench.summarize(rows, ["backend", "x"])
    assert summary["backend"]["requests_per_s"] == 200.0
    assert (summary["backend"]["requests_per_s_min"], summary["backend"]["requests_per_s_max"]) == (100.0, 300.0)
    assert summary["x"]["vs_backend"] == 0.25
    assert summary["x"]["per_core_vs_backend"] == 0.25
    text = bench.table(summary)
    assert "| x | 50 | 50..50 | 1.00 | 2.00 | 0 | 0.25x |" in text


def test_propylon_manifests_get_the_backend_port(bench: ModuleType, tmp_path: Path) -> None:
    folder = bench.propylon_manifests(tmp_path, 45678)
    text = (folder / "bench.yaml").read_text()
    assert 'backendPort: "45678"' in text
    assert "8081" not in text.split("---", 1)[1].split("variables:", 1)[1]


def test_bench_manifests_are_valid(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "propylon", "validate", "-f", str(ROOT / "bench" / "manifests")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("proxy_to", [None, 18081])
def test_generated_nginx_config_is_accepted(bench: ModuleType, tmp_path: Path, proxy_to: int | None) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    conf = bench.nginx_conf(tmp_path / "n", 18080, proxy_to)
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path / "n"), "-c", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


def test_baseline_tree_holds_the_data_plane_of_a_revision(bench: ModuleType, tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout")
    path = bench.baseline_tree(tmp_path, "HEAD")  # PYTHONPATH entries: proxy, operator, the root
    folder = Path(path.split(os.pathsep)[0])
    assert (folder / "propylon_proxy" / "handling.py").is_file()
    assert (folder / "propylon_config" / "model.py").is_file()
    # Run from that folder, the data plane is the extracted one, not the working tree's.
    done = subprocess.run(
        [sys.executable, "-P", "-c", "import propylon_proxy; print(propylon_proxy.__file__)"],
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(folder / "propylon_proxy" / "__init__.py")


def test_target_names_carry_an_optional_revision(bench: ModuleType) -> None:
    assert bench.split_name("propylon-pool") == ("propylon-pool", None)
    assert bench.split_name("propylon-pool@HEAD~3") == ("propylon-pool", "HEAD~3")
