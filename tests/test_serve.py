"""serve.py, the server `make run` starts (issue 22, hole 1 and framing): a WebSocket handshake to the session
stream from any origin but the app's own is refused with 403 (replayed on a real server with a raw HTTP upgrade,
as a page on another port of the same host would send it, cookie included); every HTTP response forbids
framing; the session cookie is __Host- prefixed, Secure and host-only on HTTPS."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.e2e.serving import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """`streamlit run serve.py` (as `make run` starts it) on a free loopback port; yields the port."""
    home = tmp_path_factory.mktemp("serve-home")
    env = dict(os.environ, AUDIT_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("AUDIT_ALLOWED_ORIGINS", None)
    port = free_port()
    log_path = home / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("the server did not start: " + log_path.read_text()[-2000:])
                time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def upgrade(port: int, *, origin: Optional[str], host: Optional[str] = None) -> tuple[int, dict[str, str]]:
    """Send the WebSocket upgrade a browser sends for /_stcore/stream (with a session cookie, as the browser
    attaches it whatever page opened the socket); return the HTTP status and headers of the answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /_stcore/stream HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Protocol: streamlit", "Cookie: audit_session=token.signature"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{other}", "http://localhost:{other}", "http://evil.example",
                                    "null", None, "https://127.0.0.1:{port}", "http://127.0.0.1:{port}.evil.example"])
def test_a_foreign_origin_cannot_open_the_session_stream(server, origin):
    other = free_port()
    status, _ = upgrade(server, origin=None if origin is None else origin.format(other=other, port=server))
    assert status == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_apps_own_page_opens_the_session_stream(server, host):
    status, headers = upgrade(server, origin=f"http://{host}:{server}", host=f"{host}:{server}")
    assert status == 101 and headers["upgrade"].lower() == "websocket"


def _http(port: int, path: str, *, method: str = "GET", headers: Optional[dict[str, str]] = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {},
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


@pytest.mark.parametrize("method,path,status", [("GET", "/", 200), ("GET", "/_stcore/health", 200),
                                                ("POST", "/api/session", 403), ("POST", "/api/signout", 403)])
def test_no_response_may_be_framed(server, method, path, status):
    got, headers = _http(server, path, method=method, headers={"X-Audit-Handoff": "not-a-code"})
    assert got == status
    assert headers.get_all("X-Frame-Options") == ["DENY"]
    assert "frame-ancestors 'none'" in headers.get_all("Content-Security-Policy")


# ---------------------------------------------------------------- the guard and the cookie routes, in process

@pytest.fixture(scope="module")
def serve_module():
    """serve.py imported here (its st.App pins Streamlit's main script path: restored for the other tests)."""
    from streamlit import config

    before = config._main_script_path
    import serve

    config._main_script_path = before
    return serve


def _call(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # A fresh loop in its own thread: the browser tests' synchronous Playwright keeps a loop running in this
    # thread for the rest of the session, and asyncio.run refuses to start beside it.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return sent


def _ws_scope(origin: str, *, host: str = "127.0.0.1:8501", scheme: str = "ws", denial: bool = True) -> dict:
    return {"type": "websocket", "scheme": scheme, "path": "/_stcore/stream", "headers": [
        (b"host", host.encode()), (b"origin", origin.encode())],
        "extensions": {"websocket.http.response": {}} if denial else {}}


def test_an_origin_listed_for_a_proxy_is_let_through_and_no_other(serve_module):
    reached = []

    async def app(scope, receive, send):  # noqa: ANN001, ANN202 - a bare ASGI app
        reached.append(scope["type"])

    guard = serve_module.OriginGuard(app, extra_origins=serve_module.allowed_origins("https://Audit.Example.org:443"))
    _call(guard, _ws_scope("https://audit.example.org"), [{"type": "websocket.connect"}])
    assert reached == ["websocket"]
    sent = _call(guard, _ws_scope("https://other.example.org"), [{"type": "websocket.connect"}])
    assert reached == ["websocket"] and sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 403
    # A server without the denial-response extension answers a close before accept with 403.
    sent = _call(guard, _ws_scope("https://other.example.org", denial=False), [{"type": "websocket.connect"}])
    assert [m["type"] for m in sent] == ["websocket.close"]
    # Behind a TLS proxy that forwards the scheme, the app's own https origin needs no listing.
    _call(guard, _ws_scope("https://app.example.org", host="app.example.org", scheme="wss"), [])
    assert reached == ["websocket", "websocket"]


@pytest.mark.parametrize("raw", ["audit.example.org", "https://audit.example.org/app", "ftp://a.example", "null"])
def test_a_malformed_allowed_origin_stops_the_start(serve_module, raw):
    with pytest.raises(ValueError, match="AUDIT_ALLOWED_ORIGINS"):
        serve_module.allowed_origins(f"http://ok.example, {raw}")


def _post(serve_module, path: str, *, scheme: str, headers: dict[str, str]) -> dict[str, Any]:
    from starlette.applications import Starlette

    app = serve_module.OriginGuard(Starlette(routes=serve_module.ROUTES), extra_origins=())
    host = "audit.example.org"
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": scheme, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": (host, 443 if scheme == "https" else 80),
             "headers": [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    start = _call(app, scope, [{"type": "http.request", "body": b"", "more_body": False}])[0]
    return {"status": start["status"], "set-cookie": [v.decode() for k, v in start["headers"] if k == b"set-cookie"]}


@pytest.fixture()
def handoff(audit_home):
    from audit.services.governance import auth, sessions

    user = auth.create_user("ann", "auditor-pass-123", "auditor")
    cookie = sessions.create_session(user)
    return cookie, lambda: sessions.issue_handoff(cookie)


def _attributes(set_cookie: str) -> tuple[str, str, dict[str, str]]:
    first, *rest = [part.strip() for part in set_cookie.split(";")]
    name, _, value = first.partition("=")
    return name, value, {k.strip().lower(): v.strip() for k, _, v in (a.partition("=") for a in rest)}


@pytest.mark.parametrize("scheme,origin", [("https", None), ("http", "https://audit.example.org")])
def test_on_https_the_cookie_is_host_only_and_secure(serve_module, handoff, scheme, origin):
    """Over TLS, or behind a TLS proxy that does not forward the scheme (the page's origin is https)."""
    from audit.services.governance import sessions

    cookie, code = handoff
    headers = {"X-Audit-Handoff": code()} | ({"Origin": origin} if origin else {})
    got = _post(serve_module, "/api/session", scheme=scheme, headers=headers)
    assert got["status"] == 204
    [set_cookie] = got["set-cookie"]
    name, value, attrs = _attributes(set_cookie)
    assert (name, value) == ("__Host-audit_session", cookie)
    assert {"secure", "httponly"} <= attrs.keys() and attrs["path"] == "/" and attrs["samesite"].lower() == "strict"
    assert "domain" not in attrs and int(attrs["max-age"]) > 0

    got = _post(serve_module, "/api/signout", scheme=scheme,
                headers={"X-Audit-Signout": "1", "Cookie": f"__Host-audit_session={cookie}"}
                | ({"Origin": origin} if origin else {}))
    name, value, attrs = _attributes(got["set-cookie"][0])
    assert got["status"] == 204 and name == "__Host-audit_session" and "secure" in attrs and attrs["path"] == "/"
    assert sessions.resolve_session(cookie) is None  # the session the __Host- cookie named was revoked


def test_on_plain_http_the_cookie_keeps_its_name_without_secure(serve_module, handoff):
    cookie, code = handoff
    got = _post(serve_module, "/api/session", scheme="http", headers={"X-Audit-Handoff": code()})
    name, value, attrs = _attributes(got["set-cookie"][0])
    assert (name, value) == ("audit_session", cookie) and "secure" not in attrs and "domain" not in attrs
    assert "httponly" in attrs and attrs["samesite"].lower() == "strict"
