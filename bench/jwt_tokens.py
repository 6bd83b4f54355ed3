"""Material for the JWT targets of bench/run.py: a key, its JWKS, and tokens.

``propylon-jwt`` sends one token again and again (warm: after the first request the gateway
answers from its verified-token cache); ``propylon-jwt-cold`` sends a different token on every
request (cold: every request is a full RS256 verification), read by the wrk script below from a
file of pre-signed tokens. Each wrk run starts where the last one stopped (``offset``) and
reports how many tokens its busiest thread used. Past the end of the file it goes on from the
start: a token is then sent again, but only after every other token of the file (at least
``MIN_TOKENS`` requests later), and the gateway's verified-token cache is an LRU of
``CACHE_ENTRIES``: a cyclic sequence longer than the cache misses on every request, so a resent
token is still cold (the 2026-12-04 run on a quiet machine went past the end: 8,600 req/s
against the 4,000/s the file was sized for, and the script then cycled over the few tokens left,
which were warm). Only a token sent twice within one wrk run's own tokens could be warm; the
script counts those (``reused``), and run.py reports them with the figures.

Signing is the slow part (about 0.4 ms per RS256 token), so it uses every core, once, before any
target is measured.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import algorithms

from propylon_proxy.authorizers import jwt as jwt_cache

ISSUER = "https://bench.propylon.invalid"
AUDIENCE = "bench"
KID = "bench-1"

COLD_SCRIPT = """\
-- One token per request, from the slice [offset, offset + per_thread * threads) of the file;
-- thread i sends the tokens offset + i, offset + i + threads, ...
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local path, offset, nthreads = args[1], tonumber(args[2]), tonumber(args[3])
  -- This thread's tokens from offset to the end of the file, then from its start to offset.
  tokens = {}
  local before = {}
  local i = 0
  for line in io.lines(path) do
    if (i - offset) % nthreads == id then
      table.insert(i >= offset and tokens or before, line)
    end
    i = i + 1
  end
  for _, line in ipairs(before) do
    table.insert(tokens, line)
  end
  used = 0
  reused = 0
end

function request()
  used = used + 1
  local k = used
  if k > #tokens then
    reused = reused + 1
    k = ((k - 1) % #tokens) + 1
  end
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[k]})
end

function done(summary, latency, requests)
  local most, again = 0, 0
  for _, thread in ipairs(threads) do
    local u = thread:get("used")
    if u > most then most = u end
    again = again + thread:get("reused")
  end
  io.write(string.format("jwt-cold used %d reused %d\\n", most, again))
end
"""
_USED = re.compile(r"jwt-cold used (\d+) reused (\d+)")
# The gateway's verified-token cache (an LRU): a cycle over more tokens than this is all misses.
CACHE_ENTRIES = jwt_cache.CACHE_ENTRIES
MIN_TOKENS = 2 * CACHE_ENTRIES  # the file's least size: a token comes back after 20,000 others


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    pkcs8 = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())


def _sign(job: tuple[bytes, int, int, int]) -> list[str]:
    pem, start, count, exp = job
    key = serialization.load_pem_private_key(pem, password=None)
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench-user", "scope": "bench/read", "exp": exp}
    return [
        jwt.encode({**base, "jti": str(i)}, key, algorithm="RS256", headers={"kid": KID})  # type: ignore[arg-type]
        for i in range(start, start + count)
    ]


def make(folder: Path, cold_tokens: int, *, valid_seconds: int = 6 * 3600) -> dict[str, Any]:
    """Write ``jwks.json`` (served to the gateway) and ``cold-tokens.txt`` under ``folder``
    (at least ``MIN_TOKENS`` of them when any cold token is asked for)."""
    if cold_tokens > 0:
        cold_tokens = max(cold_tokens, MIN_TOKENS)
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": KID, "use": "sig", "alg": "RS256"}
    (folder / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    exp = int(time.time()) + valid_seconds
    warm = _sign((_pem(key), -1, 1, exp))[0]
    workers = max(1, multiprocessing.cpu_count())
    step = -(-cold_tokens // workers)
    jobs = [(_pem(key), i, min(step, cold_tokens - i), exp) for i in range(0, cold_tokens, step)]
    # Spawned, not forked, workers, and a time limit: a run of bench/run.py at 13:51 UTC (load
    # average 8) hung for 15 minutes here, a forked worker asleep on a lock it inherited.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        chunks = pool.map_async(_sign, jobs).get(timeout=max(120.0, cold_tokens * 0.01))
    lines = [token for chunk in chunks for token in chunk]
    tokens_path = folder / "cold-tokens.txt"
    tokens_path.write_text("\n".join(lines) + "\n")
    script = folder / "cold.lua"
    script.write_text(COLD_SCRIPT)
    return {"warm": warm, "tokens": tokens_path, "count": len(lines), "script": script}


def parse_used(out: str) -> tuple[int, int]:
    """(tokens the busiest thread used, tokens sent a second time) from a cold run's output."""
    found = _USED.search(out)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)
