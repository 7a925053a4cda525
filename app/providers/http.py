"""The HTTP client every provider adapter sends through: httpx's API over aiohttp's connection pool.

The adapters, the shared `Transport` and the tests speak httpx (`httpx.Request`, `httpx.Response`,
its exceptions). Only the connection pool underneath is aiohttp's: httpx's own pool scans every
pooled connection, and asks the kernel whether each idle one is readable, twice per request. On
this service's 2-core reference machine that made one provider call cost 1.3-1.6 ms of CPU at 32
concurrent calls, against 0.26 ms through this transport (bench/provider_client.py).

Errors keep httpx's meaning, which the retry rules depend on (`app/providers/transport.py`): a
request that certainly never left (refused, connect timeout, no free connection in time) raises
`ConnectError`, `ConnectTimeout` or `PoolTimeout`; one that may have reached the provider raises a
read, write or protocol error, and is never sent twice unless it is idempotent. (aiohttp itself
sends an idempotent request once more when its connection drops, as RFC 9112 allows; never a POST.)

Proxies are the environment's, as httpx reads them (which it no longer does once given a transport):
`HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY` by the request's scheme, unless `NO_PROXY` names the host;
read once, when the client is made.
"""

from __future__ import annotations

import urllib.request

import aiohttp
import httpx
from yarl import URL

# An idle connection is not reused after this. Servers close theirs when idle (uvicorn, which the
# simulator runs on, after 5 s), and a POST sent on one as it closes fails and may not be sent
# again: the shopper would get a 503. Equal to the server's time is not enough, since a connection
# counts as idle here from when its answer was read, a little after the server started counting.
KEEPALIVE_SECONDS = 4.0


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends on an aiohttp connection pool. Create it in a running loop."""

    def __init__(self, *, max_connections: int = 200, keepalive_seconds: float = KEEPALIVE_SECONDS) -> None:
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            keepalive_timeout=keepalive_seconds,
            # The trust store httpx would use: certifi's, or SSL_CERT_FILE / SSL_CERT_DIR.
            ssl=httpx.create_ssl_context(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The body goes back to httpx as received; httpx decodes it by its Content-Encoding.
            auto_decompress=False,
            # Not aiohttp's reading of the environment: it would look proxies up in a thread on
            # every request, and add ~/.netrc credentials to requests that carry their own.
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
            # httpx built every header already (Host, Accept, User-Agent...): add none of its own.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_of_origin: dict[tuple[str, str], str | None] = {}

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy for `url`'s scheme and host, or None to connect directly."""
        origin = (url.scheme, url.host)
        if origin not in self._proxy_of_origin:
            proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
            # The NO_PROXY rules of the environment read above (stdlib, untyped in typeshed).
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if proxy and bypass(url.host, self._proxies):
                proxy = None
            self._proxy_of_origin[origin] = proxy or None
        return self._proxy_of_origin[origin]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        try:
            async with self._session.request(
                request.method,
                # Sent as built: a signed request's target must reach the provider byte for byte.
                URL(str(request.url), encoded=True),
                headers=[
                    (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
                ],
                data=body or None,
                proxy=self._proxy(request.url),
                timeout=_timeout(request),
                allow_redirects=False,
            ) as response:
                content = await response.read()
                reason = response.reason or ""
                return httpx.Response(
                    response.status,
                    headers=response.raw_headers,
                    stream=httpx.ByteStream(content),
                    request=request,
                    extensions={
                        "http_version": _http_version(response.version),
                        "reason_phrase": reason.encode("latin-1", "replace"),
                    },
                )
        except aiohttp.ClientError as exc:
            raise _as_httpx_error(exc, request) from exc
        except TimeoutError as exc:  # a timeout aiohttp did not name: it may have been sent
            raise httpx.ReadTimeout(f"timed out: {exc}", request=request) from exc

    async def aclose(self) -> None:
        await self._session.close()


def _http_version(version: aiohttp.HttpVersion | None) -> bytes:
    return b"HTTP/1.1" if version is None else f"HTTP/{version.major}.{version.minor}".encode()


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts in aiohttp's terms. aiohttp's `connect` covers waiting for a
    pooled connection and opening a new one, so it is httpx's pool and connect timeouts together;
    it has no write timeout (a provider request is small: the kernel takes it at once)."""
    timeouts = request.extensions.get("timeout", {})
    pool, connect, read = timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=read,
    )


def _as_httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that says the same about whether the request may have been sent."""
    message = f"{type(exc).__name__}: {exc}"
    # Never sent: no connection was made, or none was free in time.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, (aiohttp.InvalidUrlClientError, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(message, request=request)
    # Maybe sent: the connection was up when it failed.
    if isinstance(exc, aiohttp.ServerTimeoutError):  # reading the answer (connecting is handled above)
        return httpx.ReadTimeout(message, request=request)
    if isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError | aiohttp.ClientPayloadError
    ):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)


class ProviderHttpClient(httpx.AsyncClient):
    """httpx's client whose `send` hands a request straight to the pool.

    A provider call is built whole by its adapter (signed, its token in its headers) and answered
    once: it needs none of the client's machinery around the transport (auth flows, redirects,
    event hooks), and it must not keep cookies: a provider's `Set-Cookie` (a load balancer's, say)
    would otherwise be sent back on every later call, whichever merchant request it served. That
    machinery, the cookie jar's parsing of every answer included, was about a sixth of a provider
    call's CPU in the service (bench/README.md). A request sent with any of it asked for goes
    through httpx's own `send`.
    """

    def __init__(self, *, timeout: float, pool: AiohttpTransport) -> None:
        super().__init__(timeout=timeout, transport=pool)
        self._pool = pool

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: httpx._types.AuthTypes | httpx._client.UseClientDefault | None = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: bool | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        if stream or auth is not httpx.USE_CLIENT_DEFAULT or follow_redirects is True or self.is_closed:
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        # The pool's answer is read whole already; `read` only marks it so.
        response = await self._pool.handle_async_request(request)
        await response.aread()
        return response


def provider_http_client(timeout_seconds: float, *, max_connections: int = 200) -> httpx.AsyncClient:
    """The client the provider adapters share; close it with `aclose()`. In a running loop."""
    return ProviderHttpClient(timeout=timeout_seconds, pool=AiohttpTransport(max_connections=max_connections))
