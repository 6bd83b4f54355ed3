"""The package as a user (and the Docker image) installs it: a wheel, not this checkout.

The Dockerfile runs ``pip install .`` into a virtualenv; this test does the same thing without
Docker: build a wheel, install it into a fresh venv, and run the installed ``propylon`` from a
directory that is not the checkout. What it catches: a module missing from the wheel's package
list, CRDs not shipped (the compiler validates against them at run time), a broken entry point.

The venv sees the system site-packages so that dependencies need not be downloaded again; the
test checks that ``propylon`` itself is imported from the venv, not from the editable checkout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("propylon", "propylon_config", "propylon_proxy", "propylon_compiler", "propylon_operator")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel built from this checkout installed; returns the venv's bin folder."""
    work = tmp_path_factory.mktemp("packaging")
    wheels = work / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(wheels), "-q"]
    if importlib.util.find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # no download needed when the backend is at hand
    done = subprocess.run(build, cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = wheels.glob("propylon-*.whl")

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    install = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)]
    done = subprocess.run(install, cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return bin_dir


def _run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, env=_clean_env(bin_dir))


def _clean_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_packages_come_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib, json; "
        f"print(json.dumps({{name: importlib.import_module(name).__file__ for name in {PACKAGES!r}}}))"
    )
    done = _run(installed, str(installed / "python"), "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    venv = installed.parent.resolve()
    for name, file in json.loads(done.stdout).items():
        assert Path(file).resolve().is_relative_to(venv), f"{name} imported from {file}, not from the wheel"


def test_installed_command_answers_help(installed: Path, tmp_path: Path) -> None:
    done = _run(installed, str(installed / "propylon"), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "validate", "render", "operator", "proxy"):
        assert command in done.stdout


def test_installed_command_validates_the_quickstart(installed: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "quickstart", tmp_path / "quickstart")
    done = _run(installed, str(installed / "propylon"), "validate", "-f", "quickstart", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_crds_ship_inside_the_compiler_package(installed: Path, tmp_path: Path) -> None:
    expected = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    if not expected:
        pytest.skip("no CRDs in crds/ yet")
    probe = (
        "import json, pathlib, propylon_compiler; "
        "d = pathlib.Path(propylon_compiler.__file__).parent / 'crds'; "
        "print(json.dumps({p.name: p.read_text() for p in sorted(d.glob('*.yaml'))}))"
    )
    done = _run(installed, str(installed / "python"), "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shipped = json.loads(done.stdout)
    assert sorted(shipped) == expected
    for name in expected:
        assert shipped[name] == (ROOT / "crds" / name).read_text(), f"{name} differs from crds/{name}"
