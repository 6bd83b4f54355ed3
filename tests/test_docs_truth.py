"""The user docs show what the code does: outputs are real, "not built" is never said of what is.

The quickstart's outputs are compared with a real run of ``propylon serve`` on a copy of the
quickstart (free ports, a ``python -m http.server`` backend of this test's own): the startup
lines, the header order of ``curl -i``, the access-log line and the metrics lines. Other pages'
samples are checked against what the command, the compiler, the CRDs or the chart give.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ports import free_port
from tests.test_chart import _find_helm, _one, _render_in
from tests.test_examples import PROPYLON, ROOT, _process, _quickstart_copy, _wait_for_port

DOCS = ROOT / "docs"
QUICKSTART = (DOCS / "quickstart.md").read_text()
# The ports the page shows; the test's own are put back to these before comparing.
PAGE_PORTS = {"public": 8080, "internal": 8081, "admin": 9090}
VERSION = re.compile(r"\b[0-9a-f]{16}\b")


def _console_commands(markdown: str) -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of the page's console blocks with the lines printed after it."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", markdown, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out:
                out[-1][1].append(line)
    return out


def _printed_after(command: str) -> list[list[str]]:
    return [lines for cmd, lines in _console_commands(QUICKSTART) if cmd == command]


@dataclass(frozen=True)
class Response:
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Run:
    ports: dict[str, int]
    stderr: Path
    stdout: Path
    responses: dict[str, list[Response]]  # by the page's curl command, in the page's order
    metrics: str
    folder: Path

    def as_page(self, text: str) -> str:
        for name, port in self.ports.items():
            text = text.replace(f":{port}", f":{PAGE_PORTS[name]}")
        return VERSION.sub("<version>", text)


def _ask(port: int, method: str, path: str, body: bytes | None = None) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"User-Agent": "curl/7.88.1"})
        answer = connection.getresponse()
        reason = f"HTTP/1.1 {answer.status} {answer.reason}"
        return Response(reason, list(answer.getheaders()), answer.read())
    finally:
        connection.close()


def _curl(command: str) -> tuple[str, str, bytes | None]:
    """method, path and body of one of the page's ``curl`` commands."""
    url = re.search(r"http://127\.0\.0\.1:\d+(\S*)", command)
    assert url is not None, command
    data = re.search(r"-d '([^']*)'", command)
    method = "POST" if "-X POST" in command else "GET"
    return method, url.group(1), data.group(1).encode() if data else None


def _page_copy(tmp: Path, backend_port: int) -> Path:
    """A copy of the quickstart at ``tmp``/examples/quickstart: the page's relative path, so the
    run's file names are the page's (``serve`` runs in ``tmp``)."""
    folder = tmp / "examples" / "quickstart"
    folder.parent.mkdir()
    return _quickstart_copy(tmp, backend_port).rename(folder)


def _page_command(ports: dict[str, int], *flags: str) -> list[str]:
    """The page's ``propylon serve -f examples/quickstart`` with ``flags``, on this test's ports."""
    command = [*PROPYLON, "serve", "-f", "examples/quickstart", *flags, "--port", str(ports["public"])]
    return [*command, "--internal-port", str(ports["internal"]), "--admin-port", str(ports["admin"])]


def _start(command: list[str], cwd: Path, stdout: Path, stderr: Path, stack: contextlib.ExitStack) -> None:
    out, err = stdout.open("wb"), stderr.open("wb")
    process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env={**os.environ, "PROPYLON_LOOP": "asyncio"})
    out.close()
    err.close()

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    stack.callback(stop)
    _wait_for_port(int(command[command.index("--port") + 1]), process, "propylon serve", stderr)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The page's steps 3 to 7: serve, every ``curl`` in order, the backend started after the 502."""
    tmp = tmp_path_factory.mktemp("docs")
    backend_port = free_port()
    folder = _page_copy(tmp, backend_port)
    ports = {name: free_port() for name in PAGE_PORTS}
    with contextlib.ExitStack() as stack:
        _start(_page_command(ports), tmp, tmp / "serve.out", tmp / "serve.err", stack)
        responses: dict[str, list[Response]] = {}
        backend_up = False
        for cmd, _ in _console_commands(QUICKSTART):
            if ":9090/" in cmd:
                break  # the page reads the metrics here; its later requests come after
            if not cmd.startswith("curl") or ":8080/" not in cmd:
                continue
            method, path, body = _curl(cmd)
            answer = _ask(ports["public"], method, path, body)
            responses.setdefault(cmd, []).append(answer)
            if path.startswith("/dev/files/") and not backend_up:
                backend_log = tmp / "backend.log"
                backend = stack.enter_context(
                    _process(
                        [sys.executable, "-m", "http.server", str(backend_port), "--bind", "127.0.0.1"],
                        cwd=ROOT,
                        log=backend_log,
                    )
                )
                _wait_for_port(backend_port, backend, "python -m http.server", backend_log)
                backend_up = True
        metrics = _ask(ports["admin"], "GET", "/metrics").body.decode()
        yield Run(ports, tmp / "serve.err", tmp / "serve.out", responses, metrics, folder)


@pytest.mark.parametrize("page", ["quickstart.md", "cli.md"])
def test_startup_line_is_what_serve_prints(run: Run, page: str) -> None:
    commands = _console_commands((DOCS / page).read_text())
    (printed,) = [lines for cmd, lines in commands if cmd == "propylon serve -f examples/quickstart"]
    real = run.stderr.read_text().splitlines()[:2]
    assert [run.as_page(line) for line in real] == [VERSION.sub("<version>", line) for line in printed[:2]]


def test_quickstart_watch_lines_are_what_serve_prints(tmp_path: Path) -> None:
    (printed,) = _printed_after("propylon serve -f examples/quickstart --watch")
    folder = _page_copy(tmp_path, free_port())
    ports = {name: free_port() for name in PAGE_PORTS}
    err = tmp_path / "serve.err"
    with contextlib.ExitStack() as stack:
        _start(_page_command(ports, "--watch"), tmp_path, tmp_path / "serve.out", err, stack)
        petstore = folder / "petstore.yaml"
        petstore.write_text(petstore.read_text().replace("greeting: Hello", "greeting: Bonjour"))
        deadline = time.monotonic() + 20
        while "reloaded" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        real = err.read_text().splitlines()[:4]
    page = Run(ports, err, err, {}, "", folder)
    assert [page.as_page(line) for line in real] == [VERSION.sub("<version>", line) for line in printed]


@pytest.mark.parametrize(
    "command",
    [
        "curl -i http://127.0.0.1:8080/dev/hello",
        """curl -i -X POST http://127.0.0.1:8080/dev/pets -d '{"name":"Kitty"}'""",
        "curl -i http://127.0.0.1:8080/dev/nowhere",
        "curl -i http://127.0.0.1:8080/hello",
        "curl -i --path-as-is http://127.0.0.1:8080/dev/../etc/passwd",
        "curl -i http://127.0.0.1:8080/dev/files/README.md",
    ],
)
def test_quickstart_curl_i_shows_the_real_head(run: Run, command: str) -> None:
    """Status line, header names in order, and their values but for ids, dates and lengths of
    the backend's file (which change with the file)."""
    changing = {"x-request-id", "date", "last-modified", "server"}
    for printed, real in zip(_printed_after(command), run.responses[command], strict=True):
        head = printed[: printed.index("")]
        shown = [(name, value) for name, value in (line.split(": ", 1) for line in head[1:])]
        assert head[0] == real.status_line
        assert [name for name, _ in shown] == [name for name, _ in real.headers]
        backend = any(name == "Last-Modified" for name, _ in real.headers)
        for (name, value), (_, real_value) in zip(shown, real.headers, strict=True):
            if name.lower() in changing or (backend and name == "Content-Length"):
                continue
            assert value == real_value, name
        if not backend:
            assert dict(real.headers)["Server"] == "propylon"
            request_id = dict(real.headers)["x-request-id"]
            shown_id = dict(shown)["x-request-id"]
            assert printed[printed.index("") + 1].replace(shown_id, request_id) == real.body.decode()


def test_quickstart_access_log_line_has_the_real_fields(run: Run) -> None:
    (shown_line,) = re.findall(r"```json\n(\{.*\})\n```", QUICKSTART)
    shown = json.loads(shown_line)
    real = next(json.loads(line) for line in run.stdout.read_text().splitlines() if '"/dev/pets/42"' in line)
    assert list(shown) == list(real)
    for key in ("requestId", "requestTime", "responseLatencyMs"):
        shown.pop(key), real.pop(key)
    assert shown == real


def test_quickstart_metrics_lines_are_the_real_ones(run: Run) -> None:
    (printed,) = _printed_after("curl -s http://127.0.0.1:9090/metrics | grep '^propylon_requests_total'")
    real = [line for line in run.metrics.splitlines() if line.startswith("propylon_requests_total")]
    assert sorted(printed) == sorted(real)


def test_quickstart_readyz_has_the_startup_version(run: Run) -> None:
    (printed,) = _printed_after("curl http://127.0.0.1:9090/readyz")
    (started,) = _printed_after("propylon serve -f examples/quickstart")
    assert VERSION.findall(printed[0]) == VERSION.findall(started[0])
    real = json.loads(_ask(run.ports["admin"], "GET", "/readyz").body)
    assert real["version"] in run.stderr.read_text().splitlines()[0]


def test_render_prints_api_keys_as_the_cli_page_says(tmp_path: Path) -> None:
    manifests = tmp_path / "m.yaml"
    manifests.write_text(
        "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: k1, namespace: demo, labels: {propylon.dev/usage-plan: basic}}\n"
        "stringData: {value: abcdefghijklmnopqrstuvwxyz}\n---\n"
        "apiVersion: propylon.dev/v1alpha1\nkind: Api\nmetadata: {name: a, namespace: demo}\n"
        "spec: {routes: [{routeKey: GET /x, apiKeyRequired: true, integration: {type: MOCK}}]}\n---\n"
        "apiVersion: propylon.dev/v1alpha1\nkind: Stage\nmetadata: {name: dev, namespace: demo}\n"
        "spec: {apiRef: a}\n---\n"
        "apiVersion: propylon.dev/v1alpha1\nkind: UsagePlan\nmetadata: {name: basic, namespace: demo}\n"
        "spec: {stages: [{stageRef: dev}], apiKeySelector: {matchLabels: {propylon.dev/usage-plan: basic}}}\n"
    )
    done = subprocess.run([*PROPYLON, "render", "-f", str(manifests), "-o", "yaml"], capture_output=True, text=True)
    snapshot = yaml.safe_load(done.stdout)
    assert [key["digest"] for key in snapshot["api_keys"]] == [""]
    assert snapshot["key_hashing"] is None
    cli = (DOCS / "cli.md").read_text()
    assert "empty `digest: ''`" in cli and "only as hashes" not in cli


def test_templates_parse_error_example_is_the_real_message(tmp_path: Path) -> None:
    page = (DOCS / "templates.md").read_text()
    match = re.search(r"e\.g\. for\s+`([^`]+)` without `#end`,\s+`([^`]+)`", page)
    assert match is not None, "the parse-check example moved"
    template, message = match.group(1), re.sub(r"\s*\n\s*", " ", match.group(2))
    api = {
        "apiVersion": "propylon.dev/v1alpha1",
        "kind": "Api",
        "metadata": {"name": "a", "namespace": "demo"},
        "spec": {
            "routes": [
                {
                    "routeKey": "POST /x",
                    "integration": {
                        "type": "HTTP",
                        "url": "http://127.0.0.1:1/",
                        "requestTemplates": {"text/plain": template},
                    },
                }
            ]
        },
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(api))
    done = subprocess.run([*PROPYLON, "validate", "-f", "t.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    assert f"t.yaml: document 1 (Api demo/a): {message}\n" == done.stderr


def _crd(kind: str) -> Any:
    (found,) = [
        doc
        for file in sorted((ROOT / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(file.read_text())
        if doc and doc["spec"]["names"]["kind"] == kind
    ]
    return found


def _spec_fields(kind: str) -> set[str]:
    (version,) = _crd(kind)["spec"]["versions"]
    return set(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


def test_docs_name_gateway_responses_on_the_kind_that_has_them() -> None:
    for page in sorted(DOCS.glob("*.md")):
        for kind in re.findall(r"\b(Api|Stage)'s `gatewayResponses`", page.read_text()):
            assert "gatewayResponses" in _spec_fields(kind), f"{page.name}: {kind} has no gatewayResponses"


def test_kubernetes_example_names_the_printer_columns() -> None:
    comment = re.search(
        r"kubectl get apis,stages -n demo +# Apis: ([^;]+); Stages: (.+)\n",
        (ROOT / "examples" / "kubernetes" / "api.yaml").read_text(),
    )
    assert comment is not None, "the comment no longer names the columns"
    for kind, named in (("Api", comment.group(1)), ("Stage", comment.group(2))):
        (version,) = _crd(kind)["spec"]["versions"]
        columns = [c["name"] for c in version["additionalPrinterColumns"] if c["name"] != "Age"]
        assert named.split(", ") == columns, kind


# Sentences that said a built feature was not built (each page links the feature's own page now).
STALE = [
    ("concepts.md", "refuses every request with `500 AUTHORIZER_CONFIGURATION_ERROR`.\n  API Gateway"),
    ("concepts.md", "no request is throttled, cached, preflighted or validated"),
    ("concepts.md", "Not built yet: their routes refuse"),
    ("concepts.md", "until those features\n  are built"),
    ("concepts.md", "come with those features"),
    ("concepts.md", "so the same manifests always give the same snapshot"),
    ("functions.md", "are the next step"),
    ("functions.md", "and, next, its REQUEST/TOKEN"),
    ("reference.md", "the cache is not built"),
]


@pytest.mark.parametrize(("page", "sentence"), STALE)
def test_docs_do_not_call_built_features_unbuilt(page: str, sentence: str) -> None:
    assert sentence not in (DOCS / page).read_text()


def test_usage_plans_page_says_why_the_gateway_limit_is_per_process() -> None:
    text = " ".join((DOCS / "usage-plans.md").read_text().split())
    assert "N replicas admit up to N times it" in text
    assert "a shared gateway-wide bucket would put a Redis round trip" in text


def test_readme_lists_every_read_the_operator_clusterrole_grants(tmp_path: Path) -> None:
    helm = _find_helm()
    if helm is None:
        pytest.skip("no helm binary (PATH or ~/.cache/propylon/k8s-*/bin/helm)")
    role = _one(_render_in(helm, tmp_path, "propylon-system"), "ClusterRole", "operator")
    readme = " ".join((ROOT / "README.md").read_text().split())
    start = readme.index("What the operator may do, exactly")
    paragraph = readme[start : readme.index("Everything else it writes", start)]
    words = {
        "secrets": "Secret",
        "services": "Service",
        "endpointslices": "EndpointSlice",
        "leases": "Lease",
        "customresourcedefinitions": "CRDs",
        "events": "Events",
        "apis": "four Propylon kinds",
    }
    granted = {resource.split("/")[0] for rule in role["rules"] for resource in rule["resources"]}
    for resource in granted:
        if resource in {"stages", "usageplans", "authorizers"}:
            continue  # "the four Propylon kinds", with apis
        assert words[resource] in paragraph, resource
