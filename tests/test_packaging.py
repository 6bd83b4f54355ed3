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
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("propylon", "propylon_config", "propylon_proxy", "propylon_compiler", "propylon_operator")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel installed; returns the venv's bin folder.

    The wheel is built the way the Dockerfile's build stage builds it: from a folder holding only
    what its COPY lines take from the checkout (minus .dockerignore), so a file the build needs
    but the Dockerfile forgets fails here.
    """
    work = tmp_path_factory.mktemp("packaging")
    context = _docker_build_context(work / "context")
    wheels = work / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(context), "--no-deps", "-w", str(wheels), "-q"]
    if importlib.util.find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # no download needed when the backend is at hand
    done = subprocess.run(build, cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = wheels.glob("propylon-*.whl")

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    _see_running_site_packages(bin_dir)
    install = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)]
    done = subprocess.run(install, cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return bin_dir


def _see_running_site_packages(bin_dir: Path) -> None:
    """Let the new venv import the dependencies this interpreter has (aiohttp, kopf, ...).

    ``--system-site-packages`` would only show the *base* interpreter's packages, which inside a
    virtualenv (as the README advises on PEP 668 systems) lack them. Plain directory lines in a
    .pth are appended after the venv's own site-packages, so the installed wheel still wins, and
    the outer environment's own .pth files (an editable install of this checkout) are not run.
    """
    inner = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    outer = [path for path in [*site.getsitepackages(), site.getusersitepackages()] if Path(path).is_dir()]
    (Path(inner) / "_propylon_test_deps.pth").write_text("".join(f"{path}\n" for path in outer))


def _docker_build_context(target: Path) -> Path:
    """The files the Dockerfile's first stage copies into its WORKDIR, laid out as it lays them."""
    patterns = _dockerignore_patterns()
    target.mkdir(parents=True)
    for word, rest in _instructions():
        if word != "COPY" or "--from" in rest:
            continue
        *sources, dest = rest.split()
        for source in sources:
            origin = ROOT / source
            into = target / dest / origin.name if dest.endswith("/") else target / dest
            if origin.is_dir():
                for file in sorted(origin.rglob("*")):
                    relative = file.relative_to(ROOT)
                    if file.is_file() and not _ignored(str(relative), patterns):
                        (into / file.relative_to(origin)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, into / file.relative_to(origin))
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)
    return target


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


def test_the_wheel_requires_what_the_documented_serve_flags_import(installed: Path, tmp_path: Path) -> None:
    """``serve --redis`` and ``serve --workers 2`` import redis-py: after the README's plain
    ``pip install .`` (no extras) both ended in ModuleNotFoundError until it was a dependency."""
    probe = "import importlib.metadata, json; print(json.dumps(importlib.metadata.requires('propylon')))"
    done = _run(installed, str(installed / "python"), "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    unconditional = [r for r in json.loads(done.stdout) if "extra ==" not in r]
    assert any(
        r.replace(" ", "").startswith("redis>") or r.replace(" ", "").startswith("redis<") for r in unconditional
    ), unconditional


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


# There is no Docker engine on the test machines, so the Dockerfile is checked statically: what
# it copies must exist and must not be excluded by .dockerignore, and it must end as a non-root
# image whose entry point is the installed command.


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = Path(relative).parts
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        # A pattern names a path from the context root; "**/x" names x at any depth.
        candidates = [Path(*parts[: i + 1]) for i in range(len(parts))]
        for candidate in candidates:
            if candidate.match(pattern) or (pattern.startswith("**/") and candidate.name == bare):
                return True
    return False


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    patterns = _dockerignore_patterns()
    copies = [rest.split() for word, rest in _instructions() if word == "COPY" and "--from" not in rest]
    assert copies, "the Dockerfile copies nothing from the build context"
    for *sources, _dest in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the checkout"
            assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    # Everything the wheel is built from must reach the build stage.
    copied = {source for *sources, _dest in copies for source in sources}
    assert {"pyproject.toml", "README.md", "proxy", "operator", "propylon", "crds"} <= copied


def test_dockerfile_runs_as_non_root_with_the_propylon_entry_point() -> None:
    steps = _instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build"
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    assert args.get("PYTHON_IMAGE") == "python:3.11-slim"
    last_stage = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [rest for word, rest in last_stage if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["propylon"]') in last_stage
    assert ("CMD", '["operator"]') in last_stage
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "pip install -e" not in runs and "--editable" not in runs
