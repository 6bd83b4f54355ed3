"""redis_pipe against a real redis-server: answers reach their own callers when the commands of
one loop turn leave in one write (auto-pipelining), and a connection's AUTH and SELECT come
before any command sent while it was being made."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from propylon_proxy import redis_pipe
from tests import redis_servers


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    with redis_servers.redis_server(tmp_path_factory.mktemp("redis-pipe")) as server:
        yield server


@pytest.mark.parametrize(
    "args",
    [
        ("PING",),
        ("AUTH", "user", "pässwörd"),
        ("SET", "k", b"\x00\xff\r\n"),
        ("EVALSHA", "a" * 40, 2, b"k1", "k2", "1764812345.125", -1, 1.5, 10**20, ""),
        ("X", True, None),
    ],
)
def test_pack_writes_resp_bulk_strings(args: tuple[Any, ...]):
    expected = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        expected += b"$%d\r\n%s\r\n" % (len(data), data)
    assert redis_pipe.pack(args) == expected


async def test_commands_of_one_turn_leave_in_one_write_and_each_gets_its_own_answer(redis):
    pipe = redis_pipe.Pipe(redis.url)
    try:
        assert await pipe.call("PING") == "PONG"
        writer = pipe._writer
        assert writer is not None
        writes: list[bytes] = []
        real_write = writer.write

        def counting(data: bytes) -> None:
            writes.append(data)
            real_write(data)

        writer.write = counting  # type: ignore[method-assign]
        await asyncio.gather(*(pipe.call("SET", f"pipe:order:{i}", f"value-{i}") for i in range(300)))
        futures = [pipe.send("GET", f"pipe:order:{i}") for i in range(300)]
        assert all(f is not None for f in futures)
        answers = await asyncio.gather(*(f for f in futures if f is not None))
        assert answers == [f"value-{i}" for i in range(300)]
        assert len(writes) == 2  # the 300 SETs, then the 300 GETs
    finally:
        await pipe.close()


async def test_commands_sent_while_connecting_run_after_auth_and_select(redis):
    """With a password and a database, the commands that arrive while the connection is made
    wait for it, and then run on that database (none on db 0, none before AUTH)."""
    redis.cli("CONFIG", "SET", "requirepass", "pipe-secret")
    try:
        url = f"redis://:pipe-secret@127.0.0.1:{redis.port}/5"
        pipe = redis_pipe.Pipe(url)
        try:
            assert pipe.send("PING") is None  # not connected yet: the caller goes through call()
            await asyncio.gather(*(pipe.call("SET", f"pipe:db:{i}", str(i)) for i in range(50)))
            assert await pipe.call("GET", "pipe:db:49") == "49"
        finally:
            await pipe.close()
        auth = ("-a", "pipe-secret", "--no-auth-warning")
        assert redis.cli(*auth, "-n", "5", "GET", "pipe:db:0").strip() == "0"
        assert redis.cli(*auth, "-n", "0", "EXISTS", "pipe:db:0").strip() == "0"
    finally:
        redis.cli("-a", "pipe-secret", "--no-auth-warning", "CONFIG", "SET", "requirepass", "")
