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
    folder = pytester.mkpydir("tests").joinpath("controlplane")
    folder.mkdir()
    folder.joinpath("test_needs_binaries.py").write_text(
        "import pytest\n\ndef test_cluster():\n    pytest.skip('no kube-apiserver binary')\n"
    )
    pytester.mkpydir("tests/kind").joinpath("test_docker.py").write_text(
        "import pytest\n\ndef test_kind():\n    pytest.skip('no Docker')\n"
    )
    result = pytester.runpytest("tests/controlplane")
    result.assert_outcomes(**expected)
    assert pytester.runpytest("tests/kind").parseoutcomes() == {"skipped": 1}  # kind stays a skip
