"""Golden tests: each ``testdata/<feature>-<scenario>.in.yaml`` compiles to its ``.out.yaml``.

An output holds the diagnostics as printed, each object's status, and the snapshot as
``codec.to_data`` gives it. The input is read with its file name as the display path, so the
sources and diagnostics in a golden do not depend on where the checkout lives. An input whose
first line is ``# base: NAME`` is compiled together with ``testdata/base/NAME.yaml``, the shared
objects (Services, EndpointSlices, Secrets) that scenarios would otherwise each repeat.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from propylon_compiler import compiler, manifests
from propylon_config import codec

TESTDATA = Path(__file__).parent / "testdata"
INPUTS = sorted(TESTDATA.glob("*.in.yaml"))
# A fixed key-hashing secret, so API-key digests in goldens are stable (an install's is random).
GOLDEN_KEY_SECRET = b"golden-files-key-hashing-secret"
_BASE = re.compile(r"^# base: ([a-z0-9-]+)\s*$")


def _output_path(input_path: Path) -> Path:
    return input_path.with_name(input_path.name.removesuffix(".in.yaml") + ".out.yaml")


def _load(input_path: Path) -> tuple[list[manifests.Document], list[Any]]:
    text = input_path.read_text(encoding="utf-8")
    documents, problems = manifests.parse_text(text, input_path.name)
    documents, problems = list(documents), list(problems)
    found = _BASE.match(text.partition("\n")[0])
    if found:
        base = TESTDATA / "base" / f"{found.group(1)}.yaml"
        more, more_problems = manifests.parse_text(base.read_text(encoding="utf-8"), f"base/{base.name}")
        documents.extend(more)
        problems.extend(more_problems)
    return documents, problems


def render(input_path: Path) -> str:
    documents, problems = _load(input_path)
    result = compiler.compile(documents, options=compiler.CompileOptions(api_key_secret=GOLDEN_KEY_SECRET))
    data: dict[str, Any] = {
        "diagnostics": [str(d) for d in (*problems, *result.diagnostics)],
        "objects": [
            f"{s.kind} {s.namespace}/{s.name}: accepted={s.accepted} ready={s.ready} {s.reason}" for s in result.objects
        ],
        "snapshot": codec.to_data(result.snapshot),
    }
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


@pytest.mark.parametrize("input_path", INPUTS, ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_golden(input_path: Path, update_golden: bool) -> None:
    actual = render(input_path)
    output = _output_path(input_path)
    if update_golden:
        output.write_text(actual, encoding="utf-8")
        return
    assert output.exists(), f"{output.name} is missing: run pytest tests/compiler --update-golden and review it"
    assert actual == output.read_text(encoding="utf-8")


def test_no_stale_goldens(update_golden: bool) -> None:
    wanted = {_output_path(p) for p in INPUTS}
    stale = [p for p in TESTDATA.glob("*.out.yaml") if p not in wanted]
    if update_golden:
        for path in stale:
            path.unlink()
        return
    assert not stale, f"outputs without an input (run with --update-golden to prune): {stale}"
