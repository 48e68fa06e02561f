"""The gateway's edge: what every request passes before any feature sees it.

- **Security headers** on every answer, errors included (CSP, nosniff).
- **Host**: only the host and port of ``PUBLIC_URL`` are served. A page on another name that
  resolves to this machine (DNS rebinding: ``evil.example`` pointed at 127.0.0.1) sends its
  own name as ``Host`` and is refused with 421 before anything else happens. ``/healthz``
  and ``/metrics`` answer whatever the name (load balancers and scrapers go by address;
  ``/metrics`` wants a token, which no rebound page has: ``prometheus.py``).
- **Origin**: a websocket, or a request that changes state, carrying an ``Origin`` that is
  not exactly ``PUBLIC_URL``'s scheme, host and port is refused (403). SameSite=Lax keeps the
  session cookie off other *sites*, but another port of the same host is the same site.
- **CSRF**: a state change that rides on the session cookie needs that exact ``Origin``, or,
  when a browser sent none, the session's CSRF token (``X-CSRF-Token`` header, or a ``csrf``
  field of a urlencoded form). One with ``Authorization`` (a script's token, the service
  token) carries its credential on purpose and needs neither; one with no cookie and no
  credential is nobody, and the feature answers it (401 where a person is needed).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from aiohttp import web

from services.gateway.web.sessions import COOKIE, expected_csrf

log = logging.getLogger("dovecote.gateway.edge")
HERE = Path(__file__).parent.parent  # the gateway's folder: static/
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ANY_HOST = {"/healthz", "/metrics"}
CSRF_HEADER = "X-CSRF-Token"
FORM = "application/x-www-form-urlencoded"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        # connect-src 'self' covers the page's own ws:/wss: origin (CSP 3): no other host
        "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        # style attributes only for the server-rendered progress width (no <style>, no JS)
        "style-src 'self'; style-src-attr 'unsafe-inline'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL or an Origin header, default ports filled in."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def host_of(header: str, scheme: str) -> tuple[str, int] | None:
    found = origin_of(f"{scheme}://{header}")
    return (found[1], found[2]) if found else None


class Edge:
    """What ``PUBLIC_URL`` allows: its origin, and the ``Host`` it is reached by."""

    def __init__(self, public_url: str) -> None:
        found = origin_of(public_url)
        if found is None:
            raise ValueError(f"PUBLIC_URL {public_url!r} has no host")
        self.origin = found
        self.host = found[1:]
        self.shown = public_url.rstrip("/")

    def host_allowed(self, request: web.Request) -> bool:
        given = request.headers.get("Host")
        return given is not None and host_of(given, self.origin[0]) == self.host

    def origin_allowed(self, origin: str) -> bool:
        return origin_of(origin) == self.origin


def guard(edge: Edge) -> Any:
    """Host, Origin and CSRF checks; inside ``security_headers`` (its refusals carry them)
    and the session middleware (the CSRF token is the session's)."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in ANY_HOST and not edge.host_allowed(request):
            host = request.headers.get("Host", "")[:100]
            raise web.HTTPMisdirectedRequest(
                text=f"this gateway answers as {edge.shown} (PUBLIC_URL), not {host!r}: "
                f"open {edge.shown}/"
            )
        origin = request.headers.get("Origin")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        changes = request.method not in SAFE_METHODS
        if origin is not None and (changes or upgrade) and not edge.origin_allowed(origin):
            raise web.HTTPForbidden(text=f"cross-origin request refused (Origin {origin[:100]!r})")
        rides_on_cookie = COOKIE in request.cookies and "Authorization" not in request.headers
        if changes and origin is None and rides_on_cookie:
            await _check_csrf(request)
        response: web.StreamResponse = await handler(request)
        return response

    return check


async def _check_csrf(request: web.Request) -> None:
    """No Origin and no credential of its own: only the session's token says the request
    comes from one of this gateway's pages."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type == FORM:
        try:
            field = (await request.post()).get("csrf")
        except ValueError:  # a body that is no form: no token in it
            field = None
        given = field if isinstance(field, str) else None
    expected = await expected_csrf(request)
    if not given or expected is None or not hmac.compare_digest(given, expected):
        raise web.HTTPForbidden(
            text="refused: no CSRF token and no Origin (pages send both; a script sends "
            "Authorization: Bearer <token>)"
        )


# --- security headers ----------------------------------------------------------------------


@web.middleware
def security_headers(request: web.Request, handler: Any) -> Awaitable[web.StreamResponse]:
    if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
        # A socket's headers left with the upgrade; skipping saves a frame held per socket.
        return cast(Awaitable[web.StreamResponse], handler(request))
    return _with_security_headers(request, handler)


async def _with_security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every answer carries them, errors too: a 404 or a 500 page is a page as well."""
    try:
        resource = request.match_info.route.resource
        if resource is not None and resource.name == "static":
            _check_static(request.match_info.get("filename", ""))
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        _add_security_headers(exc.headers)
        raise
    except ConnectionError:
        raise  # the client went away mid-request: no one to answer, nothing to log
    except Exception as exc:
        # aiohttp's own 500 (504) page would go out without them: answer it here instead.
        log.exception("error handling %s %s", request.method, request.path)
        error: web.HTTPException = (
            web.HTTPGatewayTimeout(text="timed out: see the gateway's log")
            if isinstance(exc, TimeoutError)
            else web.HTTPInternalServerError(text="internal error: see the gateway's log")
        )
        _add_security_headers(error.headers)
        raise error from None
    _add_security_headers(response.headers)
    return response


def _add_security_headers(headers: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


def _check_static(filename: str) -> None:
    """aiohttp answers a missing static file with a bare 404, no body (found by the fuzz
    run): every refusal of the gateway says why."""
    folder = (HERE / "static").resolve()
    try:
        path = (folder / filename).resolve()
        found = path.is_relative_to(folder) and path.is_file()
    except (OSError, ValueError):  # a name the file system refuses (NUL, too long)
        found = False
    if not found:
        raise web.HTTPNotFound(text=f"no such file: /static/{filename[:100]}")
