"""Route precedence (DESIGN.md §8) on the trie, without a server."""

from __future__ import annotations

import pytest

from propylon_proxy import hygiene, routing
from tests.proxy import conftest as c

ROUTES = [
    "GET /users/me",
    "POST /users/{id}",
    "GET /users/{id}",
    "ANY /users/{id}/orders",
    "GET /users/{id}/orders",
    "GET /users/{id}/{rest+}",
    "GET /files/{path+}",
    "ANY /files/special",
    "GET /",
    "$default",
]


@pytest.fixture(scope="module")
def table() -> routing.StageTable:
    return routing.StageTable([c.stage([(key, c.mock()) for key in ROUTES])])


@pytest.mark.parametrize(
    ("method", "path", "route_key", "params", "upstream"),
    [
        ("GET", "/prod/users/me", "GET /users/me", (), "/users/me"),
        # Literal beats {param}, but backtracks when the literal has no route for the method.
        ("POST", "/prod/users/me", "POST /users/{id}", (("id", "me"),), "/users/me"),
        ("GET", "/prod/users/7", "GET /users/{id}", (("id", "7"),), "/users/7"),
        # A method route beats ANY on the same path.
        ("GET", "/prod/users/7/orders", "GET /users/{id}/orders", (("id", "7"),), "/users/7/orders"),
        ("DELETE", "/prod/users/7/orders", "ANY /users/{id}/orders", (("id", "7"),), "/users/7/orders"),
        ("GET", "/prod/users/7/a/b", "GET /users/{id}/{rest+}", (("id", "7"), ("rest", "a/b")), "/users/7/a/b"),
        # A literal beats a greedy parameter at the same depth.
        ("GET", "/prod/files/special", "ANY /files/special", (), "/files/special"),
        ("GET", "/prod/files/x/y%2Fz", "GET /files/{path+}", (("path", "x/y%2Fz"),), "/files/x/y%2Fz"),
        # A greedy parameter needs at least one segment.
        ("GET", "/prod/files", "$default", (), "/files"),
        ("GET", "/prod", "GET /", (), "/"),
        ("GET", "/prod/", "GET /", (), "/"),
        ("PUT", "/prod/users/7", "$default", (), "/users/7"),
        ("GET", "/prod/users//orders", "$default", (), "/users//orders"),
        ("GET", "/prod/users/a%2Fb", "GET /users/{id}", (("id", "a/b"),), "/users/a%2Fb"),
    ],
)
def test_precedence(table, method, path, route_key, params, upstream):
    stage, match, _ = table.find(method, "any.host", hygiene.split_target(path))
    assert stage is not None and match is not None
    assert match.route.route_key == route_key
    assert match.params == params
    assert match.upstream_path == upstream


def test_longest_base_path_and_hosts():
    table = routing.StageTable(
        [
            c.stage([("$default", c.mock())], name="root", base_path="/"),
            c.stage([("$default", c.mock())], name="v1", base_path="/api/v1"),
            c.stage([("$default", c.mock())], name="api", base_path="/api"),
            c.stage([("$default", c.mock())], name="host", base_path="/api", hosts=("*.example.com",)),
        ]
    )

    def stage_for(path: str, host: str = "x.test") -> str | None:
        stage, _, _ = table.find("GET", host, hygiene.split_target(path))
        return stage.name if stage else None

    assert stage_for("/api/v1/x") == "v1"
    assert stage_for("/api/v10") == "api"  # base paths end on a segment boundary
    assert stage_for("/api/x") == "api"
    assert stage_for("/api/x", "A.Example.COM:8443") == "host"
    assert stage_for("/api/x", "a.b.example.com") == "api"  # one label only
    assert stage_for("/other") == "root"


def test_no_stage_and_no_route():
    table = routing.StageTable([c.stage([("GET /x", c.mock())])])
    assert table.find("GET", "h", hygiene.split_target("/nope/x"))[:2] == (None, None)
    stage, match, _ = table.find("GET", "h", hygiene.split_target("/prod/y"))
    assert stage is not None and match is None


def _scan(stages, host: str, decoded: tuple[str, ...]):
    """The rule the per-plan stage index must keep, written as the plain scan it replaced:
    longest basePath, then most specific host, then the Stage declared first."""
    best = None
    for order, stage in enumerate(stages):
        base = tuple(stage.base_path.strip("/").split("/")) if stage.base_path.strip("/") else ()
        specificity = routing.host_matches(stage.hosts, host)
        if decoded[: len(base)] == base and specificity:
            rank = (len(base), specificity, -order)
            best = max(best or rank, rank)
            if best == rank:
                found = stage
    return found.name if best else None


def test_stage_index_chooses_as_a_scan_of_every_stage():
    import random

    draw = random.Random(15)
    hosts = [(), ("a.example.com",), ("*.example.com",), ("A.example.com", "*.other.test"), ("b.example.com",)]
    bases = ["/", "/api", "/api/v1", "/api/v2", "/shop", "/shop/cart", "/x"]
    stages = [
        c.stage([("$default", c.mock())], name=f"s{i}", base_path=draw.choice(bases), hosts=draw.choice(hosts))
        for i in range(60)
    ]
    table = routing.StageTable(stages)
    paths = ["/", "/api", "/api/v1/x", "/api/v3", "/shop/cart/1", "/shop/carts", "/x/y", "/nope"]
    requests = ["a.example.com", "A.EXAMPLE.COM.", "b.example.com:8080", "c.example.com", "z.other.test", "[::1]:8"]
    for path in paths:
        for host in requests:
            target = hygiene.split_target(path)
            stage, _, _ = table.find("GET", host, target)
            assert (stage.name if stage else None) == _scan(stages, host, target.segments), (path, host)
