"""An aiohttp server speaking the Lambda Runtime Interface Emulator protocol for one handler.

``POST /2015-03-31/functions/function/invocations`` takes the event as JSON and answers with
the handler's return value as JSON. A raised exception becomes the RIE's error answer
(``errorMessage``, ``errorType``, ``requestId``, ``stackTrace``; status 200 as the RIE sends it,
plus Lambda's ``X-Amz-Function-Error: Unhandled``) and is logged with its traceback.

Handlers are plain functions, as Lambda's Python runtime calls them: each invocation runs in a
worker thread (the event loop keeps answering), one at a time per process like a Lambda
sandbox unless ``--concurrency N``. A coroutine handler is not something Lambda can run, so it
is refused at startup rather than returning a coroutine object per request.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import inspect
import json
import logging
import os
import platform
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from propylon.function import lambda_context

INVOCATION_PATH = "/2015-03-31/functions/function/invocations"
log = logging.getLogger("propylon.function")

Handler = Callable[[Any, lambda_context.LambdaContext], Any]


class HandlerError(Exception):
    """The handler named on the command line cannot be run."""


def load_handler(spec: str, path: str) -> Handler:
    """``app.lambda_handler`` (or ``pkg.mod.fn``) imported from ``path``."""
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise HandlerError(f"handler {spec!r} must be MODULE.FUNCTION (such as app.lambda_handler)")
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerError(f"cannot import module {module_name!r} from {path}: {exc}") from exc
    handler = getattr(module, function_name, None)
    if handler is None or not callable(handler):
        raise HandlerError(f"module {module_name!r} has no handler function {function_name!r}")
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__):
        raise HandlerError(
            f"handler {spec!r} is a coroutine function; Lambda's Python runtime calls handlers as plain "
            "functions, so write a plain def (run asyncio inside it if you need to)"
        )
    return handler  # type: ignore[no-any-return]


def lambda_environment(spec: str, *, path: str, name: str, timeout: float, memory: int) -> None:
    """The variables AWS's runtime sets, unless the caller set them already."""
    env = os.environ
    env.setdefault("_HANDLER", spec)
    env.setdefault("LAMBDA_TASK_ROOT", path)
    env.setdefault("AWS_LAMBDA_FUNCTION_NAME", name)
    env.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    env.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(memory))
    env.setdefault("AWS_LAMBDA_FUNCTION_TIMEOUT", str(int(timeout)))
    env.setdefault("AWS_REGION", "propylon")
    env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    env.setdefault("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{env['AWS_LAMBDA_FUNCTION_NAME']}")
    env.setdefault("AWS_LAMBDA_LOG_STREAM_NAME", f"propylon/{platform.node()}/{os.getpid()}")
    major, minor = sys.version_info[:2]
    env.setdefault("AWS_EXECUTION_ENV", f"AWS_Lambda_python{major}.{minor}")


def error_answer(exc: BaseException, request_id: str, *, error_type: str | None = None) -> dict[str, Any]:
    frames = traceback.format_list(traceback.extract_tb(exc.__traceback__)) if exc.__traceback__ else []
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": frames,
    }


class FunctionServer:
    """Invokes one handler per request, at most ``concurrency`` at a time."""

    def __init__(self, handler: Handler, *, concurrency: int = 1, timeout: float = 300.0) -> None:
        self._handler = handler
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="handler", initializer=_own_event_loop
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(INVOCATION_PATH, self.invoke)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, event: Any, request_id: str, deadline: float) -> tuple[bool, bytes, int]:
        """Run the handler in a worker thread: (ok, JSON answer, HTTP status).

        An invocation whose deadline passed before a thread took it never starts: its caller has
        been answered ``Sandbox.Timedout`` and must not see side effects afterwards.
        """
        if time.monotonic() >= deadline:
            return False, b"", 200
        context = lambda_context.LambdaContext(request_id, deadline)
        try:
            result = self._handler(event, context)
        except Exception as exc:
            log.error("[ERROR] %s: %s request_id=%s", type(exc).__name__, exc, request_id, exc_info=exc)
            return False, json.dumps(error_answer(exc, request_id)).encode(), 200
        except BaseException as exc:  # sys.exit() and the like end the runtime process on Lambda
            # Only handler code raises here (signals and the server's cancellation reach the main
            # thread, never a worker), so this is what kills awslambdaric's process: the RIE answers
            # Runtime.ExitError and starts a fresh runtime; this server simply keeps serving.
            reason = exit_reason(exc)
            log.error("[ERROR] Runtime.ExitError: %s request_id=%s", reason, request_id, exc_info=exc)
            answer = {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: {reason}"}
            return False, json.dumps(answer).encode(), 502  # the RIE answers an exit 502
        try:
            return True, json.dumps(result).encode(), 200
        except (TypeError, ValueError) as exc:
            log.error("[ERROR] Runtime.MarshalError: %s request_id=%s", exc, request_id)
            return False, json.dumps(error_answer(exc, request_id, error_type="Runtime.MarshalError")).encode(), 200

    async def invoke(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        raw = await request.read()
        try:
            event = json.loads(raw) if raw else {}
        except ValueError as exc:
            answer = error_answer(exc, request_id, error_type="Runtime.UnmarshalError")
            answer["errorMessage"] = f"Unable to unmarshal input: {exc}"
            return _answer(False, json.dumps(answer).encode())
        await self._slots.acquire()
        # The slot is given back when the handler's thread returns, not when its caller is
        # answered: a timed-out handler keeps running, and the next invocation must not start its
        # deadline while it waits for that thread.
        release = True
        try:
            if request.transport is None or request.transport.is_closing():
                return _answer(False, b"{}")  # the caller left while waiting for a slot: never start
            deadline = time.monotonic() + self._timeout
            loop = asyncio.get_running_loop()
            # The pool's own future, not an asyncio wrapper: cancelling a wrapper always succeeds
            # and says nothing about whether the thread still runs the handler.
            work = self._pool.submit(self._call, event, request_id, deadline)
            try:
                ok, body, status = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(work)), self._timeout)
            except TimeoutError:
                if not work.cancel():  # still queued: cancelled and never run; running: held
                    release = False
                    work.add_done_callback(lambda _done: loop.call_soon_threadsafe(self._slots.release))
                log.error("[ERROR] Task timed out after %.2f seconds request_id=%s", self._timeout, request_id)
                message = f"Task timed out after {self._timeout:.2f} seconds"
                answer = {"errorMessage": message, "errorType": "Sandbox.Timedout", "requestId": request_id}
                return _answer(False, json.dumps(answer).encode())
        finally:
            if release:
                self._slots.release()
        return _answer(ok, body, status=status)


def _own_event_loop() -> None:
    """A handler thread has its own (idle) event loop, as Lambda's main thread does: ASGI
    adapters such as Mangum call ``asyncio.get_event_loop()`` and run the app on it."""
    asyncio.set_event_loop(asyncio.new_event_loop())


def _answer(ok: bool, body: bytes, *, status: int = 200) -> web.Response:
    headers = {} if ok else {"X-Amz-Function-Error": "Unhandled"}
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def exit_reason(exc: BaseException) -> str:
    """The RIE's words for how the runtime process would have ended (``sys.exit(3)`` is exit
    status 3, ``sys.exit()`` no reason, a message or another uncaught BaseException status 1)."""
    if isinstance(exc, KeyboardInterrupt):
        return "Runtime exited with error: signal: interrupt"
    code = exc.code if isinstance(exc, SystemExit) else 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        code = 1  # Python prints a non-integer code to stderr and exits 1
    if code & 0xFF == 0:
        return "Runtime exited without providing a reason"
    return f"Runtime exited with error: exit status {code & 0xFF}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m propylon.function",
        description="Run an AWS Lambda handler behind the Lambda Runtime Interface Emulator protocol.",
    )
    parser.add_argument("handler", help="MODULE.FUNCTION, such as app.lambda_handler")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--path", default=os.getcwd(), help="directory the handler module is imported from")
    parser.add_argument("--concurrency", type=int, default=1, help="invocations at a time (default 1, like Lambda)")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "300")))
    parser.add_argument("--function-name", default=None, help="default: the handler's module name")
    parser.add_argument("--memory", type=int, default=128, help="memory_limit_in_mb reported to the handler")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    path = os.path.abspath(args.path)
    name = args.function_name or args.handler.rpartition(".")[0].replace(".", "-")
    lambda_environment(args.handler, path=path, name=name, timeout=args.timeout, memory=args.memory)
    try:
        handler = load_handler(args.handler, path)
    except HandlerError as exc:
        print(f"propylon.function: {exc}", file=sys.stderr)
        return 2
    server = FunctionServer(handler, concurrency=args.concurrency, timeout=args.timeout)
    print(f"propylon.function: {args.handler} on http://{args.host}:{args.port}{INVOCATION_PATH}", file=sys.stderr)
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0
