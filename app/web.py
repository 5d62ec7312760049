"""Request-side glue shared by the blueprints: services, client IP, headers."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from functools import lru_cache
from typing import Any

from flask import Flask, abort, current_app, render_template, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask.wrappers import Request, Response
from flask_login import current_user
from itsdangerous import BadSignature
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter
from wtforms import Field

from app import pager, sessions
from app.accounts import Passwords
from app.errors import UNAVAILABLE
from app.extensions import db
from app.keys.lifecycle import KeyPolicy

log = logging.getLogger(__name__)


class DatabaseInt(IntegerConverter):
    """`<int:...>` capped at 2^31 - 1, what every id column holds on both databases.

    Werkzeug's converter takes any number of digits, and a 20-digit id reached the
    database: an OverflowError on SQLite, out of range for an integer column on
    PostgreSQL, a 500 either way. A number past the cap matches no route: 404."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def passwords() -> Passwords:
    return current_app.extensions["keyledger.passwords"]


def key_policy(app: Flask | None = None) -> KeyPolicy:
    return (app or current_app).extensions["keyledger.key_policy"]


def client_ip() -> str | None:
    """The peer address, already corrected by ProxyFix for the configured hops only.

    None when it is not an IP address (a proxy passing on a forged X-Forwarded-For):
    it keys rate limits and lands in usage and audit rows, which must be able to hold it.
    """
    addr = request.remote_addr
    return addr if addr is None else _ip_or_none(addr)


@lru_cache(maxsize=4096)
def _ip_or_none(addr: str) -> str | None:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return None
    return addr if len(addr) <= 45 else None  # the address columns' width


CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


API_PREFIX = "/api/"


class ServerSession(SecureCookieSession):
    """A logged-in browser's session: its contents live in its record (app/sessions.py)."""

    def __init__(
        self,
        initial: Any = None,
        *,
        live: sessions.Live | None = None,
        keep_cookie: bool = False,
        lookup_error: SQLAlchemyError | None = None,
    ) -> None:
        super().__init__(initial)
        self.live = live
        self.keep_cookie = keep_cookie  # never saved: the browser's cookie stays as it is
        # Set when the record could not be read: the request answers 503 (see register).
        self.lookup_error = lookup_error


def _skips_sessions(app: Flask, path: str) -> bool:
    return path.startswith(API_PREFIX) or path.startswith(f"{app.static_url_path}/")


def current_session_id() -> int | None:
    """The id of this request's session record (None when not logged in)."""
    live = getattr(session, "live", None)
    return live.id if live is not None else None


class PortalSessionInterface(SecureCookieSessionInterface):
    """Server-side sessions for the portal; nothing at all for the API.

    Logged in, the cookie carries only the signed token of a session record; the
    contents (CSRF token, flashes, Flask-Login's keys) live in the record. Not logged
    in, the cookie carries the signed contents itself (the login form's CSRF token):
    storing every anonymous visitor would let anyone fill the table. A `_user_id` in
    such a cookie is dropped, so only a record can make a request authenticated.

    On /api/ (and /static/) a request gets an empty session that is never saved and
    costs no query: the key-authenticated API never reads the portal's cookie, and
    building the signer, parsing and re-signing it showed in profiles of a busy
    validation worker (docs/performance.md, "No portal session on the API")."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if _skips_sessions(app, request.path):
            return self.session_class()
        signer = self.get_signing_serializer(app)
        if signer is None:
            return None
        raw = request.cookies.get(self.get_cookie_name(app))
        if not raw:
            return self.session_class()
        try:
            loaded = signer.loads(raw, max_age=int(app.permanent_session_lifetime.total_seconds()))
        except BadSignature:
            return self.session_class()
        if isinstance(loaded, dict):
            loaded.pop("_user_id", None)
            return self.session_class(loaded)
        if not isinstance(loaded, str):
            return self.session_class()
        try:
            live = sessions.load(db.session, loaded, session_lifetimes(app))
        except (SQLAlchemyError, *UNAVAILABLE) as exc:
            # The database is unreachable: the request answers the 503 page (errors.py),
            # not a login form that would look like a logout; the cookie is left alone
            # (this session is never saved), so a blip logs no one out.
            log.warning("session lookup failed; answering 503", exc_info=True)
            with contextlib.suppress(Exception):  # the connection may be gone too
                db.session.rollback()
            return ServerSession(keep_cookie=True, lookup_error=exc)
        if live is None:
            gone = self.session_class()
            gone.modified = True  # ended or expired: the stale cookie is deleted
            return gone
        try:
            data = self.serializer.loads(live.data)
        except ValueError:
            data = {}
        return ServerSession(data if isinstance(data, dict) else {}, live=live)

    def save_session(self, app: Flask, session: SecureCookieSession, response: Response) -> None:
        if _skips_sessions(app, request.path) or getattr(session, "keep_cookie", False):
            return
        live: sessions.Live | None = getattr(session, "live", None)
        user_id = session.get("_user_id")
        reachable = True
        if live is not None or user_id is not None:
            # The record is written on a connection of its own. Whatever the view left
            # uncommitted would be rolled back at teardown anyway; doing it now frees
            # the locks it holds (SQLite's write lock), which that write would wait on.
            try:
                db.session.rollback()
            except (SQLAlchemyError, *UNAVAILABLE):
                # The database stalled after the view's last statement (issue 22: this
                # raised, a 500): no session write is tried into the same silence.
                log.warning("rollback before the session write failed", exc_info=True)
                reachable = False
        if live is not None and (user_id is None or str(user_id) != str(live.user_id)):
            # Logged out (or, defensively, someone else logged in): the record ends
            # now, and what is left (a flash) goes back into a plain cookie. Unless the
            # record cannot be ended: then the logout did not happen, and says so.
            try:
                if not reachable:
                    raise ConnectionError("the database did not answer")
                with Session(db.engine) as store:
                    sessions.end(store, live.id)
                    store.commit()
            except (SQLAlchemyError, *UNAVAILABLE) as exc:
                _unavailable_instead(response, exc)
                return
            session = self.session_class(dict(session))
            session.modified = True
            live = None
        if user_id is None:
            super().save_session(app, session, response)
            return
        ip = request.remote_addr
        if live is None:
            # A login: a new record under a new random token, never one the browser
            # brought (no session fixation). Without the record there is no login: a
            # 503, not a redirect into pages that would ask to log in again.
            try:
                if not reachable:
                    raise ConnectionError("the database did not answer")
                with Session(db.engine) as store:
                    token, _ = sessions.start(
                        store,
                        int(user_id),
                        data=self.serializer.dumps(dict(session)),
                        ip=ip,
                        user_agent=request.headers.get("User-Agent"),
                        lifetimes=session_lifetimes(app),
                    )
            except (SQLAlchemyError, *UNAVAILABLE) as exc:
                _unavailable_instead(response, exc)
                return
            self._set_cookie(app, session, response, token)
            return
        touch = sessions.needs_touch(live)
        if not reachable:
            log.warning("session write skipped: the database did not answer")
        elif session.modified or touch:
            try:
                with Session(db.engine) as store:
                    sessions.save(
                        store,
                        live.id,
                        data=self.serializer.dumps(dict(session)) if session.modified else None,
                        touch=touch,
                        ip=ip,
                    )
            except (SQLAlchemyError, *UNAVAILABLE):
                # The page was served; a lost "last seen" or flash is not worth a 500.
                log.warning("session write failed", exc_info=True)
        if session.accessed:
            response.vary.add("Cookie")

    def _set_cookie(
        self, app: Flask, session: SecureCookieSession, response: Response, token: str
    ) -> None:
        signer = self.get_signing_serializer(app)
        assert signer is not None
        response.set_cookie(
            self.get_cookie_name(app),
            signer.dumps(token),
            expires=self.get_expiration_time(app, session),
            httponly=self.get_cookie_httponly(app),
            domain=self.get_cookie_domain(app),
            path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app),
            partitioned=self.get_cookie_partitioned(app),
            samesite=self.get_cookie_samesite(app),
        )
        response.vary.add("Cookie")


def _unavailable_instead(response: Response, exc: Exception) -> None:
    """Turn the response being saved into the 503 page: the session record, which the
    answer depends on (a login's, a logout's), could not be written. Headers already set
    (security headers) stay; a redirect's Location and any cookie set go."""
    from app.errors import unavailable_page

    log.error("session record not written, answering 503: %s: %s", type(exc).__name__, exc)
    page = current_app.make_response(
        unavailable_page(
            "Keyledger cannot reach one of its services right now, so you were not signed "
            "in or out. Try again in a moment."
        )
    )
    response.status_code = 503
    response.set_data(page.get_data())
    response.headers.pop("Location", None)
    response.headers.pop("Set-Cookie", None)
    for name in ("Content-Type", "Retry-After"):
        response.headers[name] = page.headers[name]
    response.headers["Cache-Control"] = "no-store"


def session_lifetimes(app: Flask | None = None) -> sessions.Lifetimes:
    return (app or current_app).extensions["keyledger.session_lifetimes"]


HSTS = "max-age=31536000; includeSubDomains"
# (name, its lower case, value): set by `security_headers` where an answer has none.
_ALWAYS = (
    ("X-Content-Type-Options", "x-content-type-options", "nosniff"),
    ("Referrer-Policy", "referrer-policy", "same-origin"),
)
_PAGES = (
    ("Content-Security-Policy", "content-security-policy", CSP),
    ("X-Frame-Options", "x-frame-options", "DENY"),
)


def register(app: Flask) -> None:
    app.session_interface = PortalSessionInterface()

    def session_lookup_failed(endpoint: str | None, values: dict[str, Any] | None) -> None:
        # open_session runs before any error handler can answer; raise its failure here
        # so the portal's own 503 page (no database needed) is what the browser gets. A
        # URL-value preprocessor, because those run before every before_request hook:
        # the CSRF check would otherwise answer "form expired" for the unread session.
        error = getattr(session, "lookup_error", None)
        if error is not None:
            raise error

    # The portal's blueprints only (registered on this app): the API pays nothing.
    for blueprint in ("auth", "portal", "admin"):
        app.url_value_preprocessors.setdefault(blueprint, []).append(session_lookup_failed)
    # HSTS: always where the deployment serves HTTPS (config.production_defaults),
    # else on the requests that came over HTTPS.
    always_hsts = bool(app.config.get("HSTS"))

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        # The names present, read in one pass: `setdefault` searches the list for its
        # name and, when it is missing (the usual case), raises and catches a KeyError
        # and searches twice more (docs/performance.md, "Fewer calls per validation").
        present = {name.lower(): value for name, value in headers}
        for name, lowered, value in _ALWAYS:
            if lowered not in present:
                headers.add(name, value)
        mimetype = present.get("content-type", "").partition(";")[0].strip()
        if mimetype == "application/json":
            # Every JSON answer (key lists, usage, proofs, receipts, charts) may carry
            # an account's data: no shared or back-button cache keeps it. The public
            # answers meant to be cached (audit checkpoints) say so themselves.
            if "cache-control" not in present:
                headers.add("Cache-Control", "no-store")
            return response
        # Pages (redirects included); the other non-HTML answers (exports) set their
        # own Cache-Control.
        if mimetype == "text/html":
            for name, lowered, value in _PAGES:
                if lowered not in present:
                    headers.add(name, value)
            if always_hsts or request.is_secure:
                headers.setdefault("Strict-Transport-Security", HSTS)
            if request.path.startswith("/admin") or current_user.is_authenticated:
                # A signed-in page must not stay in a shared or back-button cache.
                if "no-store" not in (headers.get("Cache-Control") or ""):
                    headers["Cache-Control"] = "no-store"
                headers.setdefault("Pragma", "no-cache")
        return response

    @app.context_processor
    def inject() -> dict[str, object]:
        return {"registration_open": app.config["REGISTRATION_OPEN"]}


def refused(field: Field, reason: object) -> None:
    """A change the domain refused, told under the form field it is about: the session's
    failed transaction rolled back, the reason beside the field's own messages."""
    db.session.rollback()
    field.errors = [*field.errors, str(reason)]


def forms_page(template: str, forms: dict[str, Any], **context: Any) -> ResponseReturnValue:
    """A page of several forms: 400 when one of them comes back refused, else 200."""
    failed = any(getattr(f, "errors", None) for f in forms.values())
    return render_template(template, **context, **forms), (400 if failed else 200)


def page_of(query: Any, **kwargs: Any) -> pager.Page:
    """The request's page of a list: the one pager (app/pager.py) serves every list of
    the portal and the admin. A page or sort argument it cannot honour is a 400."""
    args = request.args
    try:
        return pager.paginate(
            db.session,
            query,
            page=args.get("page"),
            sort=args.get("sort"),
            direction=args.get("dir"),
            **kwargs,
        )
    except pager.PagerError as exc:
        abort(400, description=str(exc))
