"""Reading an integration's answer whole, for a response template (DESIGN.md §2.5).

A response template reads ``$input`` from the backend's body, so the body is taken whole (at
most the body limit, 10 MiB) and decoded when the backend compressed it (gzip or deflate, the
codings a client's Accept-Encoding usually asks for; inflated within the same limit). A body
that is larger, or in a coding the gateway cannot read, cannot be rendered: 500
API_CONFIGURATION_ERROR. A backend that breaks off mid-body is 502 INTEGRATION_FAILURE. The
connection is always given back (or closed) here.
"""

from __future__ import annotations

import zlib

from propylon_proxy import gateway_responses, replies, upstream


async def read(reply: replies.Reply, limit: int) -> bytes | replies.Refusal:
    """The decoded body of ``reply`` (whose stream is consumed), or the refusal to answer."""
    body = reply.body
    stream, reply.stream = reply.stream, None
    if stream is not None:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in stream.iter_chunks():
                size += len(chunk)
                if size > limit:
                    return replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)
                chunks.append(chunk)
        except (upstream.UpstreamError, OSError, TimeoutError):
            return replies.refuse(gateway_responses.INTEGRATION_FAILURE)
        finally:
            await stream.release()
        body = b"".join(chunks)
    return _decoded(body, reply.header("Content-Encoding"), limit)


def _decoded(body: bytes, coding: str | None, limit: int) -> bytes | replies.Refusal:
    coding = (coding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip", "deflate"):
        # 16 + MAX_WBITS reads a gzip header; deflate as sent is zlib-wrapped (RFC 9110), or raw.
        for wbits in (16 + zlib.MAX_WBITS,) if coding != "deflate" else (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            inflater = zlib.decompressobj(wbits)
            try:
                out = inflater.decompress(body, limit + 1)
            except zlib.error:
                continue
            if len(out) > limit or inflater.unconsumed_tail:
                return replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)
            return out
    return replies.refuse(gateway_responses.API_CONFIGURATION_ERROR)
