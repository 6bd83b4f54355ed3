"""The layering of the code base, checked the way CI checks it.

import-linter enforces who may import whom (.importlinter). The second test guards a trap of
this layout: the control plane lives in a folder named ``operator/``; if that folder ever became
a package (or landed on sys.path as one), ``import operator`` would shadow the standard library
module that half of Python's own library depends on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("lint-imports is not installed (pip install import-linter)")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_operator_folder_does_not_shadow_the_stdlib_module() -> None:
    # Put the repository root and both source folders first on sys.path, as an editable install
    # or a careless PYTHONPATH would, and ask a fresh interpreter which `operator` it gets.
    path = os.pathsep.join(str(p) for p in (ROOT, ROOT / "proxy", ROOT / "operator"))
    probe = (
        "import json, operator; "
        "print(json.dumps({'file': operator.__file__, 'itemgetter': hasattr(operator, 'itemgetter')}))"
    )
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["itemgetter"] is True
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(found["file"]).resolve().is_relative_to(stdlib), found["file"]


def test_no_top_level_operator_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
