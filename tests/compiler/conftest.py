"""Golden-file support for the compiler tests.

``python -m pytest tests/compiler --update-golden`` rewrites every ``.out.yaml`` from the
compiler's current output and deletes outputs whose ``.in.yaml`` is gone. Read the diff of
every rewritten golden before committing it: the goldens are the reviewed contract, not a
recording.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/compiler/testdata/*.out.yaml from the compiler's output, pruning stale ones",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    # getoption with a default: the option is unknown when this conftest was not loaded at startup.
    return bool(request.config.getoption("--update-golden", default=False))
