"""Every row of every case file, played against ``propylon serve`` and against the operator tier.

One pytest item per row and target (``serve-routing-literal-beats-param``), so a failure names
the promise that broke; a target keeps a case deployed while its rows run in order and
switches to the next case when the first row of that case comes. Rows marked ``xfail`` in
their case file are strict: a row that starts to pass must lose its mark.
"""

from __future__ import annotations

from typing import Any

import conformance_cases as cases
import conformance_http as http
import conformance_targets as targets
import pytest

CASES = cases.load_all()


def _params() -> list[Any]:
    params: list[Any] = []
    for target in ("serve", "operator"):
        for case in CASES:
            for row in case.rows:
                marks = [pytest.mark.controlplane] if target == "operator" else []
                reason = row.xfail.get(target)
                if reason:
                    marks.append(pytest.mark.xfail(reason=reason, strict=True))
                params.append(pytest.param(target, case, row, marks=marks, id=f"{target}-{case.name}-{row.slug}"))
    return params


@pytest.mark.parametrize(("target_name", "case", "row"), _params())
def test_row(target_name: str, case: cases.Case, row: cases.Row, request: pytest.FixtureRequest) -> None:
    target: targets.Target = request.getfixturevalue(f"{target_name}_target")
    try:
        target.ensure(case)
    except AssertionError as failure:
        pytest.fail(str(failure), pytrace=False)
    headers = [("Host", row.host)] if row.host is not None else []
    headers += list(row.headers)
    before = target.backend.count()
    probe = "closes" in row.expect
    try:
        response = http.exchange(target.port(row.listener), row.method, row.path, headers, row.body, probe_close=probe)
    except (OSError, ValueError) as error:  # ValueError: a response whose framing cannot be read
        shown = f"{case.name}: {row.name}: no readable response: {error!r}"
        pytest.fail(f"{shown}\n\n{target.log()[-3000:]}", pytrace=False)
    request_ids = response.values("x-request-id")
    received = target.backend.received(request_ids[0]) if request_ids else None
    reached = target.backend.count() != before
    problems = cases.check(row, response, received, reached, target.values())
    if problems:
        shown = f"{response.status} {response.reason}\n" + "".join(f"{n}: {v}\n" for n, v in response.headers)
        pytest.fail(
            f"{case.name}: {row.name} ({row.method} {row.path!r} on {row.listener})\n  - "
            + "\n  - ".join(problems)
            + f"\n\nresponse:\n{shown}\n{response.body[:1000]!r}\n\n{target.log()[-3000:]}",
            pytrace=False,
        )
