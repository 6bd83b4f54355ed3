"""Issue 8, item 10: under CI=true a skipped control-plane test fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

RULES = (Path(__file__).parent / "conftest.py").read_text()


@pytest.mark.parametrize(("ci", "expected"), [("true", {"failed": 1}), ("", {"skipped": 1})])
def test_a_skipped_control_plane_test_fails_only_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, expected: dict[str, int]
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(RULES.replace('pytest_plugins = ["pytester"]', ""))
    # Subprocesses, so the inner runs never meet this run's own imported tests.* modules.
    folder = pytester.path / "tests" / "controlplane"
    folder.mkdir(parents=True)
    folder.joinpath("test_needs_binaries.py").write_text(
        "import pytest\n\ndef test_cluster():\n    pytest.skip('no kube-apiserver binary')\n"
    )
    (pytester.path / "tests" / "kind").mkdir()
    (pytester.path / "tests" / "kind" / "test_docker.py").write_text(
        "import pytest\n\ndef test_kind():\n    pytest.skip('no Docker')\n"
    )
    result = pytester.runpytest_subprocess("tests/controlplane")
    result.assert_outcomes(**expected)
    assert pytester.runpytest_subprocess("tests/kind").parseoutcomes() == {"skipped": 1}  # kind stays a skip


def test_test_module_basenames_are_unique() -> None:
    """tests/ has no packages (rootdir-relative imports), so two test files with one basename make
    pytest refuse to collect the second: the whole run stops before a single test."""
    import collections
    import pathlib

    root = pathlib.Path(__file__).parent
    names = collections.Counter(path.name for path in root.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
