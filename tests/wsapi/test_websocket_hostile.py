"""Hostile WebSocket clients and malformed $connect answers, through `propylon serve`.

A real function server (``handlers/ws_answers.py`` under ``python -m propylon.function``) backs
$connect and the message routes; the clients are aiohttp's, or a plain socket where aiohttp
cannot play the part (a frame header promising more than it sends, fragments without FIN).

- maxMessageBytes holds on the wire (DESIGN.md section 8, "a larger message closes with 1009"):
  a permessage-deflate bomb, one huge frame and a message that never ends are refused before
  the gateway buffers or inflates them, so its memory stays near the limit.
- $connect fails closed (sections 5 and 2.2): the answer is mapped with the HTTP FUNCTION rules,
  a ``statusCode`` of digits is a status, and a malformed one refuses with 502.
- A message too deeply nested for the JSON parser is routed to $default (section 5).
- A function's answer whose body is not Unicode text (a lone surrogate) is malformed, as on HTTP
  FUNCTION routes (a 502): nothing goes back for that message, and the connection stays.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.functions import harness
from tests.serve.test_serve import Served
from tests.wsapi.test_websocket_serve import serving

HANDLERS = Path(__file__).parent / "handlers"
LIMIT = 65536

API = """\
apiVersion: propylon.dev/v1alpha1
kind: Api
metadata: {{name: chat, namespace: talk}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: "$request.body.action"
  websocket: {{maxMessageBytes: {limit}}}
  routes:
    - routeKey: "$connect"
      integration: {{type: FUNCTION, url: "{fn}"}}
    - routeKey: "$default"
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
    - routeKey: ask
      routeResponseSelectionExpression: "$default"
      integration: {{type: FUNCTION, url: "{fn}"}}
"""


@pytest.fixture(scope="module")
def fn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Process]:
    process = harness.function("ws_answers.handler", tmp_path_factory.mktemp("ws-hostile-fn"), path=HANDLERS).wait()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared(fn: harness.Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("ws-hostile"), API.format(limit=LIMIT, fn=f"http://127.0.0.1:{fn.port}")) as s:
        yield s


@pytest.fixture
def fresh(fn: harness.Process, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """A gateway of its own (its peak memory, VmHWM, is this test's alone); maxMessageBytes is
    LIMIT, or the test's indirect parameter."""
    limit = getattr(request, "param", LIMIT)
    with serving(tmp_path, API.format(limit=limit, fn=f"http://127.0.0.1:{fn.port}")) as s:
        yield s


def _url(served: Served, query: str = "") -> str:
    return f"http://127.0.0.1:{served.port}/live{query}"


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of the gateway's process, in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


MEMORY_BOUND_KIB = 48 * 1024  # what one refused message may add to the gateway's peak memory
CLOSE_TOO_BIG = struct.pack("!H", 1009) + b"message too big"


# --- maxMessageBytes on the wire -------------------------------------------------------------


def _echo(route: str, body: str) -> str:
    """What ``ws_answers`` sends back for ``body`` routed to ``route``."""
    return f"{route}:{len(body)}:{body[:24]}"


ASK = '{"action": "ask"}'


async def _answer(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await ws.receive(timeout=30)


async def test_messages_up_to_the_limit_pass_compressed_or_not(shared: Served) -> None:
    async with aiohttp.ClientSession() as session:
        for compress in (0, 15):
            async with session.ws_connect(_url(shared), compress=compress) as ws:
                assert ws.compress == compress  # permessage-deflate negotiated when offered
                await ws.send_str("y" * LIMIT)
                answer = await _answer(ws)
                assert answer.type is aiohttp.WSMsgType.TEXT and answer.data == _echo("$default", "y" * LIMIT)
                await ws.send_str("z" * (LIMIT + 1))
                closed = await _answer(ws)
                assert (closed.type, closed.data, closed.extra) == (aiohttp.WSMsgType.CLOSE, 1009, "message too big")


async def _still_serves(served: Served) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(_url(served)) as ws:
        await ws.send_str(ASK)
        assert (await _answer(ws)).data == _echo("ask", ASK)


def _upgrade(served: Served, *, deflate: bool = False) -> socket.socket:
    """A handshake over a plain socket, answered 101 (with permessage-deflate when ``deflate``)."""
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    raw.sendall(
        (
            f"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(1)
        assert chunk, "the gateway hung up during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (b"permessage-deflate" in head.lower()) == deflate, head
    return raw


def _header(length: int, *, opcode: int = 2, fin: bool = True, compressed: bool = False) -> bytes:
    """A client frame header with a zero mask (so the payload goes as is)."""
    first = bytes([(0x80 if fin else 0) | (0x40 if compressed else 0) | opcode])
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 65536:
        size = bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        size = bytes([0x80 | 127]) + struct.pack("!Q", length)
    return first + size + b"\0\0\0\0"


def _send_until_closed(raw: socket.socket, pieces: Iterator[bytes], stop: threading.Event) -> threading.Thread:
    """Sends ``pieces`` from a thread until they run out, the gateway hangs up, or ``stop``."""

    def run() -> None:
        with contextlib.suppress(OSError):
            for piece in pieces:
                if stop.is_set():
                    return
                raw.sendall(piece)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _close_frame(raw: socket.socket, seconds: float) -> bytes:
    """The payload (code + reason) of the gateway's close frame; b"" if none came in time."""
    raw.settimeout(seconds)
    stream = b""
    with contextlib.suppress(OSError):
        while True:
            start = stream.find(b"\x88")
            if start >= 0 and len(stream) >= start + 2 and len(stream) >= start + 2 + (stream[start + 1] & 0x7F):
                return stream[start + 2 : start + 2 + (stream[start + 1] & 0x7F)]
            chunk = raw.recv(4096)
            if not chunk:
                break
            stream += chunk
    return b""


def _deflated_zeros(mib: int) -> bytes:
    """``mib`` MiB of zeros as one permessage-deflate payload (level 9: about 1 KiB per MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    deflated = b"".join(compressor.compress(zeros) for _ in range(mib)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert deflated.endswith(b"\0\0\xff\xff")
    return deflated[:-4]  # RFC 7692 7.2.1: the sender drops the flush's empty block


BOMB_LIMIT = 512 * 1024


@pytest.mark.parametrize("fresh", [BOMB_LIMIT], indirect=True)
async def test_a_deflate_bomb_closes_1009_before_it_is_inflated(fresh: Served) -> None:
    # One compressed frame well within maxMessageBytes on the wire that inflates to 256 MiB,
    # 512 times the limit: the gateway must stop inflating at the limit.
    bomb = _deflated_zeros(256)
    assert len(bomb) < BOMB_LIMIT // 2
    before = _memory_kib(fresh.process.pid)
    raw = await asyncio.to_thread(_upgrade, fresh, deflate=True)
    try:
        await asyncio.to_thread(raw.sendall, _header(len(bomb), compressed=True) + bomb)
        payload = await asyncio.to_thread(_close_frame, raw, 60)
    finally:
        raw.close()
    assert payload == CLOSE_TOO_BIG
    grew = _memory_kib(fresh.process.pid)["VmHWM"] - before["VmHWM"]
    assert grew < MEMORY_BOUND_KIB, f"the gateway's peak memory grew by {grew} KiB for one refused message"
    await _still_serves(fresh)


async def test_one_huge_frame_closes_1009_without_being_buffered(fresh: Served) -> None:
    before = _memory_kib(fresh.process.pid)
    raw = await asyncio.to_thread(_upgrade, fresh)
    size = 128 << 20
    stop = threading.Event()
    zeros = bytes(1 << 20)
    sender = _send_until_closed(raw, iter([_header(size), *(zeros for _ in range(size >> 20))]), stop)
    try:
        payload = await asyncio.to_thread(_close_frame, raw, 60)
    finally:
        stop.set()
        raw.close()
        sender.join(10)
    assert payload == CLOSE_TOO_BIG
    grew = _memory_kib(fresh.process.pid)["VmHWM"] - before["VmHWM"]
    assert grew < MEMORY_BOUND_KIB, f"the gateway's peak memory grew by {grew} KiB for one refused frame"
    await _still_serves(fresh)


async def test_a_message_that_grows_past_the_limit_without_fin_closes_1009(shared: Served) -> None:
    # Fragments of 16 KiB each, never FIN: the message is too big after the fifth, though no
    # frame is; the gateway must not wait for a FIN that never comes (holding every fragment).
    raw = await asyncio.to_thread(_upgrade, shared)
    piece = bytes(16384)
    fragments = [_header(len(piece), fin=False) + piece]
    fragments += [_header(len(piece), opcode=0, fin=False) + piece for _ in range(63)]
    stop = threading.Event()
    sender = _send_until_closed(raw, iter(fragments), stop)
    try:
        payload = await asyncio.to_thread(_close_frame, raw, 10)
    finally:
        stop.set()
        raw.close()
        sender.join(10)
    assert payload == CLOSE_TOO_BIG


# --- $connect fails closed -------------------------------------------------------------------


async def _refusal(served: Served, case: str) -> tuple[int, str] | None:
    """(status, x-propylon-error-type) of a refused upgrade; None when it was let in."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(_url(served, f"?case={case}")) as ws:
                await ws.send_str(ASK)
                assert (await _answer(ws)).data == _echo("ask", ASK)
                return None
        except aiohttp.WSServerHandshakeError as refused:
            headers = refused.headers or {}
            return refused.status, headers.get("x-propylon-error-type", "")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("ok", None),
        ("ok-str", None),  # "200" is a status, as on HTTP FUNCTION routes
        ("refuse-int", (403, "ACCESS_DENIED")),
        ("refuse-str", (403, "ACCESS_DENIED")),  # "403" too
        ("float", (502, "INTEGRATION_FAILURE")),  # 401.0 is not a status: a malformed answer
        ("null", (502, "INTEGRATION_FAILURE")),
        ("999", (502, "INTEGRATION_FAILURE")),
        ("word", (502, "INTEGRATION_FAILURE")),
        ("bool", (502, "INTEGRATION_FAILURE")),
        ("list", (502, "INTEGRATION_FAILURE")),
    ],
)
async def test_connect_maps_the_function_answer_and_fails_closed(
    shared: Served, case: str, expected: tuple[int, str] | None
) -> None:
    assert await _refusal(shared, case) == expected


# --- route selection over any JSON -----------------------------------------------------------


async def test_a_deeply_nested_message_goes_to_default_and_the_connection_stays(shared: Served) -> None:
    deep = "[" * 60000
    async with aiohttp.ClientSession() as session, session.ws_connect(_url(shared)) as ws:
        await ws.send_str(deep)
        answer = await _answer(ws)
        assert (answer.type, answer.data) == (aiohttp.WSMsgType.TEXT, _echo("$default", deep))
        deep_object = '{"action": ' * 5000
        await ws.send_str(deep_object)
        answer = await _answer(ws)
        assert (answer.type, answer.data) == (aiohttp.WSMsgType.TEXT, _echo("$default", deep_object))
        await ws.send_str(ASK)
        assert (await _answer(ws)).data == _echo("ask", ASK)


# --- a function's answer that is not valid Unicode -------------------------------------------


@pytest.mark.parametrize("want", ["surrogate", "bare-surrogate"])
async def test_an_answer_that_is_not_unicode_sends_nothing_and_the_connection_stays(shared: Served, want: str) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(_url(shared)) as ws:
        await ws.send_str(f'{{"action": "ask", "want": "{want}"}}')
        await ws.send_str(ASK)
        # Messages are answered in order: the first answer is the second message's.
        answer = await _answer(ws)
        assert (answer.type, answer.data) == (aiohttp.WSMsgType.TEXT, _echo("ask", ASK))
