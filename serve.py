"""Serve the workbench: ``streamlit run serve.py`` runs streamlit_app.py behind Streamlit's own ASGI app, plus
two same-origin routes that set and clear the HttpOnly sign-in cookie (Streamlit itself can only read cookies).

The page never sees the cookie's value: after a sign-in the app hands the browser a one-time code, and the
browser's POST of that code to ``/api/session`` gets the cookie back as ``Set-Cookie`` (HttpOnly,
SameSite=Strict, Secure on HTTPS). ``/api/signout`` revokes the session the cookie names and deletes it.
"""

from __future__ import annotations

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audit.services import sessions

SESSION_ROUTE = "/api/session"
SIGNOUT_ROUTE = "/api/signout"
HANDOFF_HEADER = "X-Audit-Handoff"
SIGNOUT_HEADER = "X-Audit-Signout"


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


async def set_session_cookie(request: Request) -> Response:
    # The code travels in a custom header: a cross-site page cannot send one without a CORS preflight, which
    # this server never approves.
    found = await run_in_threadpool(sessions.redeem_handoff, request.headers.get(HANDOFF_HEADER))
    if found is None:
        return _no_store(Response("unknown, used or expired sign-in code", status_code=403))
    cookie, seconds = found
    response = Response(status_code=204)
    response.set_cookie(sessions.COOKIE_NAME, cookie, max_age=max(1, int(seconds)), path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return _no_store(response)


async def clear_session_cookie(request: Request) -> Response:
    if request.headers.get(SIGNOUT_HEADER) != "1":
        return _no_store(Response("sign out from the app", status_code=403))
    await run_in_threadpool(sessions.revoke, request.cookies.get(sessions.COOKIE_NAME))
    response = Response(status_code=204)
    response.delete_cookie(sessions.COOKIE_NAME, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return _no_store(response)


app = st.App("streamlit_app.py", routes=[
    Route(SESSION_ROUTE, set_session_cookie, methods=["POST"]),
    Route(SIGNOUT_ROUTE, clear_session_cookie, methods=["POST"]),
])
