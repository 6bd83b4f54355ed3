"""The ``propylon.dev/flush-cache`` Stage annotation in the cluster (DESIGN.md section 4, Cache).

A real operator compiles the annotation's value into the snapshot; a real ``propylon proxy``
reading the snapshot Secret flushes the stage's cache when that value changes, and only then:
another edit that reaches the proxy leaves the cached entries alone. The backend counts its
calls, so a hit (never reaching it) and a miss (reaching it) are told apart by the backend as
well as by ``x-propylon-cache``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import operator_env as op
import pytest

from tests import backends

pytestmark = pytest.mark.controlplane


class CountingBackend(backends.Backend):
    """Answers ``call #N`` (N counts every call), a cacheable 200."""

    def __init__(self) -> None:
        super().__init__(self._answer)

    def _answer(self, request: backends.Received) -> backends.Answer:
        return backends.Answer(body=f"call #{self.calls}".encode(), headers=(("Content-Type", "text/plain"),))

    @property
    def calls(self) -> int:
        return len(self.received)


@pytest.fixture
def counting() -> Iterator[CountingBackend]:
    with CountingBackend() as made:
        yield made


def _api(namespace: str, backend: str, *, extra_route: bool = False) -> str:
    extra = (
        """
    - routeKey: GET /added
      integration: {type: MOCK, mock: {statusCode: 200, body: added}}"""
        if extra_route
        else ""
    )
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: shop, namespace: {namespace}}}
spec:
  routes:
    - routeKey: GET /items
      integration: {{type: HTTP_PROXY, url: "{backend}/items"}}{extra}
"""


def _stage(namespace: str) -> str:
    return f"""
apiVersion: propylon.dev/v1alpha1
kind: Stage
metadata: {{name: live, namespace: {namespace}}}
spec:
  apiRef: shop
  basePath: /live
  cache: {{enabled: true, ttlSeconds: 3600}}
"""


def _get(url: str) -> tuple[int, str | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get("x-propylon-cache"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-propylon-cache"), error.read().decode(errors="replace")
    except OSError as error:
        return 0, None, str(error)


def test_a_new_flush_annotation_value_empties_the_stage_cache(gateway: op.Env, counting: CountingBackend) -> None:
    backend = counting
    env = gateway
    env.plane.apply(_api(env.app_ns, backend.url) + "---" + _stage(env.app_ns))
    env.start_operator()
    _, port = env.start_proxy()
    url = f"http://127.0.0.1:{port}/live/items"
    op.eventually(lambda: _get(url)[0] == 200, op.CHANGE_WITHIN * 2, "the stage serves")
    served = backend.calls
    assert served == 1  # the first answer was a miss and is now stored
    assert _get(url) == (200, "hit", "call #1")
    assert backend.calls == 1

    def annotate(value: str) -> None:
        env.plane.kubectl(
            "annotate", "--overwrite", "stage", "-n", env.app_ns, "live", f"propylon.dev/flush-cache={value}"
        )

    annotate("first")
    # Until the new snapshot reaches the proxy the entry keeps being hit; the first miss is the flush.
    miss = op.eventually(
        lambda: (got := _get(url))[1] == "miss" and got, op.CHANGE_WITHIN * 2, "a miss after the flush"
    )
    assert miss == (200, "miss", "call #2")
    assert backend.calls == 2
    assert _get(url) == (200, "hit", "call #2")  # stored again, and the flush happened once

    # Another edit reaches the proxy (a new route appears) without a new annotation value:
    # the stage's cache settings and flush value are unchanged, so its entries stay.
    env.plane.apply(_api(env.app_ns, backend.url, extra_route=True))
    added = f"http://127.0.0.1:{port}/live/added"
    op.eventually(lambda: _get(added)[0] == 200, op.CHANGE_WITHIN * 2, "the added route serves")
    assert _get(url) == (200, "hit", "call #2")
    annotate("first")  # the same value again is no change
    assert _get(url) == (200, "hit", "call #2")
    assert backend.calls == 2

    annotate("second")
    miss = op.eventually(lambda: (got := _get(url))[1] == "miss" and got, op.CHANGE_WITHIN * 2, "a second flush")
    assert miss == (200, "miss", "call #3")
    assert backend.calls == 3
