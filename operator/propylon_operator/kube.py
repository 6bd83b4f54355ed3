"""A small asynchronous Kubernetes API client for the operator's own writes.

kopf watches; this module writes: server-side apply of owned objects, status patches, the
snapshot Secret and Events. It talks plain JSON over aiohttp with the credentials the
``kubernetes`` package loads (kubeconfig or in-cluster), so one set of credentials serves both
kopf and our writes. Paths are built by ``paths``; no object logic lives here.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kubernetes

FIELD_MANAGER = "propylon-operator"

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is valid YAML, so the body stays JSON


class KubeError(Exception):
    """A non-2xx answer from the API server, with its status code and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def load_configuration(kubeconfig: str | None) -> kubernetes.client.Configuration:
    """Credentials from ``kubeconfig``, else in-cluster, else the default kubeconfig."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        return configuration
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


# Where the loaders put the token: api_key["authorization"] up to 36.0.0, api_key["BearerToken"]
# from 36.0.1 (kubernetes-client/python#2585). Only consulted when auth_settings() says nothing.
_TOKEN_KEYS = ("BearerToken", "authorization")


def authorization(configuration: kubernetes.client.Configuration) -> str | None:
    """The ``Authorization`` header the kubernetes client itself would send now, or None.

    Read through ``auth_settings()``, the client's own request path, rather than a guessed
    ``api_key`` entry: the key the loaders use changed in 36.0.1, and a token read from the wrong
    one makes every request anonymous. It also runs ``refresh_api_key_hook``, so an in-cluster
    projected token is re-read from its file (the loader does so once a minute) and a kubeconfig
    exec or OIDC token is renewed when it expires. 36.0.0 alone loads the token under the old key
    while its ``auth_settings()`` looks under the new one, hence the fallback to both keys.
    """
    # A TypedDict in 37.x, a plain dict before: read it as the plain dict it is at run time.
    settings: dict[str, dict[str, Any]] = dict(configuration.auth_settings())  # type: ignore[arg-type,unused-ignore]
    for setting in settings.values():
        if setting.get("in") == "header" and str(setting.get("key", "")).lower() == "authorization":
            value = setting.get("value")
            if value:
                return str(value).strip()  # a token file's trailing newline is no part of the token
    for key in _TOKEN_KEYS:
        if configuration.api_key.get(key):
            value = configuration.get_api_key_with_prefix(key)
            if value:
                return str(value).strip()
    return None


class Client:
    """JSON requests against the API server; one aiohttp session for the operator's lifetime."""

    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        self._configuration = configuration
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    async def _get_session(self) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=self._ssl_context()),
                    timeout=aiohttp.ClientTimeout(total=30),
                )
            return self._session

    def _ssl_context(self) -> ssl.SSLContext | bool:
        cfg = self._configuration
        if not cfg.host.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if not cfg.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cfg.cert_file and cfg.key_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        return context

    def _auth_headers(self) -> dict[str, str]:
        header = authorization(self._configuration)  # per request: a rotated token is picked up
        return {"Authorization": header} if header else {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = JSON,
        params: dict[str, str] | None = None,
    ) -> Any:
        session = await self._get_session()
        url = self._configuration.host.rstrip("/") + path
        if params:
            url += "?" + urlencode(params)
        headers = {"Accept": JSON, **self._auth_headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        try:
            async with session.request(method, url, data=data, headers=headers) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Status 0: no answer at all (the API server away); callers retry like any 5xx.
            raise KubeError(0, f"{method} {path}: {exc or type(exc).__name__}") from exc
        if status >= 300:
            try:
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text
            raise KubeError(status, message)
        return json.loads(text) if text else None

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            answer: dict[str, Any] | None = await self.request("GET", path)
            return answer
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def apply(self, path: str, body: dict[str, Any], *, field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply as ``propylon-operator`` (or ``field_manager``), taking over fields a person changed."""
        params = {"fieldManager": field_manager, "force": "true"}
        answer: dict[str, Any] = await self.request("PATCH", path, body=body, content_type=APPLY_PATCH, params=params)
        return answer

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)
        return answer

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request("POST", path, body=body)
        return answer

    async def watch(
        self, path: str, *, resource_version: str, label_selector: str | None = None, timeout_s: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch on ``path`` from ``resource_version``, until the server ends it.

        The server closes the stream after ``timeout_s``; a silent connection is given up 15 s
        later. Errors, a 410 Gone included (as a status code or an ERROR event), raise
        ``KubeError``: the caller lists again and watches from there.
        """
        session = await self._get_session()
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_s),
            "allowWatchBookmarks": "true",
        }
        if label_selector:
            params["labelSelector"] = label_selector
        url = self._configuration.host.rstrip("/") + path + "?" + urlencode(params)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout_s + 15)
        try:
            async with session.get(url, headers={"Accept": JSON, **self._auth_headers()}, timeout=timeout) as response:
                if response.status >= 300:
                    raise KubeError(response.status, await response.text())
                async for line in response.content:
                    if not line.strip():
                        continue
                    event: dict[str, Any] = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise KubeError(int(status.get("code") or 0), str(status.get("message", "watch error")))
                    yield event
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: a line too long or not JSON
            raise KubeError(0, f"watch {path}: {exc or type(exc).__name__}") from exc

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        answer = await self.request("GET", path, params=params)
        return list(answer.get("items") or []) if answer else []


def object_path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    """``/api/v1/namespaces/ns/secrets/name`` and the like; ``api_version`` is ``group/version`` or ``v1``."""
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = root
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    return path
