"""Serve the workbench: ``streamlit run serve.py`` runs streamlit_app.py behind Streamlit's own ASGI app, plus
two same-origin routes that set and clear the HttpOnly sign-in cookie (Streamlit itself can only read cookies).

The page never sees the cookie's value: after a sign-in the app hands the browser a one-time code, and the
browser's POST of that code to ``/api/session`` gets the cookie back as ``Set-Cookie`` (HttpOnly,
SameSite=Strict; on HTTPS Secure and named with the ``__Host-`` prefix). ``/api/signout`` revokes the session the
cookie names and deletes it.

A guard in front of everything refuses, with HTTP 403 at the handshake, a WebSocket whose ``Origin`` is not the
app's own origin (or one listed in ``AUDIT_ALLOWED_ORIGINS``): browsers send the cookie with a WebSocket opened by
any page, so the origin is what tells the app's own page from another site's. The guard also forbids framing
the app (``X-Frame-Options`` and ``frame-ancestors``) on every HTTP response.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Awaitable, Callable, Iterable, MutableMapping
from urllib.parse import urlsplit

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audit.services.governance import sessions

SESSION_ROUTE = "/api/session"
SIGNOUT_ROUTE = "/api/signout"
HANDOFF_HEADER = "X-Audit-Handoff"
SIGNOUT_HEADER = "X-Audit-Signout"
ALLOWED_ORIGINS_ENV = "AUDIT_ALLOWED_ORIGINS"
FRAME_HEADERS = ((b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"))

ERR_ALLOWED_ORIGIN = (ALLOWED_ORIGINS_ENV + " must list origins as scheme://host[:port] separated by commas "
                      "(no path), got {!r}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str | None) -> str | None:
    """``scheme://host[:port]`` in lower case with the scheme's default port left out, or None when the value
    is not an http(s) origin (``null``, a path, user info, another scheme...)."""
    if not value:
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None \
            or parts.password is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets in an origin
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def allowed_origins(raw: str | None = None) -> frozenset[str]:
    """The extra origins a deployment behind a proxy declares in ``AUDIT_ALLOWED_ORIGINS`` (comma-separated)."""
    raw = os.environ.get(ALLOWED_ORIGINS_ENV, "") if raw is None else raw
    found = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        origin = normalise_origin(item)
        if origin is None:
            raise ValueError(ERR_ALLOWED_ORIGIN.format(item))
        found.add(origin)
    return frozenset(found)


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers", []) if k.lower() == name]
    # Two Origin or Host headers leave it unclear which one the browser meant: treat as absent.
    return values[0].decode("latin-1") if len(values) == 1 else None


def own_origin(scope: Scope) -> str | None:
    """The origin the request was addressed to: its scheme (as the server saw it, after a trusted proxy's
    X-Forwarded-Proto) and its Host header."""
    host = _header(scope, b"host")
    if not host:
        return None
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return normalise_origin(f"{scheme}://{host}")


class OriginGuard:
    """ASGI middleware: WebSocket handshakes from a foreign origin get 403; HTTP responses may not be framed."""

    def __init__(self, app: ASGIApp, *, extra_origins: Iterable[str] | None = None) -> None:
        self.app = app
        self.extra = frozenset(extra_origins) if extra_origins is not None else allowed_origins()

    def origin_allowed(self, scope: Scope) -> bool:
        origin = normalise_origin(_header(scope, b"origin"))
        # No Origin at all is refused too: every browser sends one with a WebSocket handshake, so the app's own
        # page always has one, and a client without it has no business with a browser's session.
        return origin is not None and (origin == own_origin(scope) or origin in self.extra)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                      send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "websocket" and not self.origin_allowed(scope):
            await self._refuse(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_unframeable(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-frame-options"]
                message = {**message, "headers": headers + list(FRAME_HEADERS)}
            await send(message)

        await self.app(scope, receive, send_unframeable)

    async def _refuse(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                      send: Callable[[Message], Awaitable[None]]) -> None:
        log.warning("refused a WebSocket from origin %r (host %r)", _header(scope, b"origin"),
                    _header(scope, b"host"))
        await receive()  # websocket.connect: the handshake the server holds until the app answers it
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *FRAME_HEADERS]})
            await send({"type": "websocket.http.response.body", "body": b"cross-origin WebSocket refused"})
        else:
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def browser_uses_https(request: Request) -> bool:
    """Whether the browser reached the app over HTTPS: TLS here, or the page's origin says so (a TLS proxy in
    front that does not forward the scheme). The same rule as streamlit_app.py's, so both name the cookie alike."""
    origin = normalise_origin(request.headers.get("origin")) or ""
    return request.url.scheme == "https" or origin.startswith("https://")


async def set_session_cookie(request: Request) -> Response:
    # The code travels in a custom header: a cross-site page cannot send one without a CORS preflight, which
    # this server never approves.
    found = await run_in_threadpool(sessions.redeem_handoff, request.headers.get(HANDOFF_HEADER))
    if found is None:
        return _no_store(Response("unknown, used or expired sign-in code", status_code=403))
    cookie, seconds = found
    https = browser_uses_https(request)
    response = Response(status_code=204)
    # On HTTPS the __Host- prefix makes the browser insist on Secure, Path=/ and no Domain, so no other host
    # name (and no plain-HTTP service on this one) can set or overwrite it.
    response.set_cookie(sessions.cookie_name(https=https), cookie, max_age=max(1, int(seconds)), path="/",
                        httponly=True, samesite="strict", secure=https)
    return _no_store(response)


async def clear_session_cookie(request: Request) -> Response:
    if request.headers.get(SIGNOUT_HEADER) != "1":
        return _no_store(Response("sign out from the app", status_code=403))
    https = browser_uses_https(request)
    name = sessions.cookie_name(https=https)
    await run_in_threadpool(sessions.revoke, request.cookies.get(name))
    response = Response(status_code=204)
    response.delete_cookie(name, path="/", httponly=True, samesite="strict", secure=https)
    return _no_store(response)


ROUTES = [
    Route(SESSION_ROUTE, set_session_cookie, methods=["POST"]),
    Route(SIGNOUT_ROUTE, clear_session_cookie, methods=["POST"]),
]
MIDDLEWARE = [Middleware(OriginGuard, extra_origins=allowed_origins())]  # a bad list stops the start

app = st.App("streamlit_app.py", routes=ROUTES, middleware=MIDDLEWARE)
