"""The Flask class of Keyledger: Flask, with the API's requests spared what serves pages.

Every API request used to run each app-wide hook: CSRF protection, Flask-Login's
remember cookie, the admins' two-factor gate, Flask-Limiter's before, after and
teardown hooks. None of them does anything for a key-authenticated JSON call (the API
blueprint is CSRF-exempt, never reads the portal session and counts its own limits),
yet together with Flask's coroutine check of each hook they were a tenth of a
validation's CPU (docs/performance.md, "Browser-only hooks skip the API"). So the
extensions and blueprints that serve browsers are installed inside `browser_only(app)`,
which marks the app-wide hooks they add; a request to the `api` blueprint runs the
other app-wide hooks (security headers, the background threads' start) and its own.

Flask's own `preprocess_request`, `process_response` and `do_teardown_request` serve
every other request unchanged; the API's versions below follow them step for step,
with the marked hooks left out of the lists.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

from flask import Flask, Request, request
from flask.globals import _cv_request, request_ctx
from flask.signals import request_tearing_down
from flask.typing import ResponseReturnValue
from flask.wrappers import Response
from werkzeug.datastructures import Headers
from werkzeug.routing import MapAdapter

API_BLUEPRINT = "api"
MAX_URL_ADAPTERS = 1024
MAX_BUILT_URLS = 4096
_PLAIN_VALUES = frozenset((str, int))
_HOOK_DICTS = ("before_request_funcs", "after_request_funcs", "teardown_request_funcs")
_sentinel = object()


class ApiHooks:
    """The hooks an API request runs, in Flask's order: app-wide then blueprint before
    the view; blueprint then app-wide (each newest first) after it and at teardown."""

    def __init__(self, app: Keyledger) -> None:
        skip = app.browser_only_hooks

        def kept(funcs: dict[str | None, list[Any]], name: str | None) -> list[Any]:
            return [app.ensure_sync(f) for f in funcs.get(name, ()) if f not in skip]

        self.url_values = [
            *app.url_value_preprocessors.get(None, ()),
            *app.url_value_preprocessors.get(API_BLUEPRINT, ()),
        ]
        self.before = [
            *kept(app.before_request_funcs, None),
            *kept(app.before_request_funcs, API_BLUEPRINT),
        ]
        self.after = [
            *reversed(kept(app.after_request_funcs, API_BLUEPRINT)),
            *reversed(kept(app.after_request_funcs, None)),
        ]
        self.teardown = [
            *reversed(kept(app.teardown_request_funcs, API_BLUEPRINT)),
            *reversed(kept(app.teardown_request_funcs, None)),
        ]


class Answer(Response):
    """Flask's response, handed to the server without werkzeug's defensive copy when the
    copy would change nothing.

    `get_wsgi_headers` copies every header into a new `Headers` (checking each value
    again for newlines, as `add` did when it was set) to fix a relative Location or
    Content-Location, drop Content-Length for bodiless statuses and compute a missing
    one. An answer with a Content-Length and none of those (every JSON answer, almost
    every page) needs none of it, and `get_wsgi_response` copies the list anyway
    (docs/performance.md, "Fewer calls per validation")."""

    def get_wsgi_headers(self, environ: dict[str, Any]) -> Headers:
        headers = self.headers
        status = self.status_code
        if (200 <= status < 300 and status != 204) or 400 <= status < 600:
            plain = True
            length = False
            for name, _ in headers:
                lowered = name.lower()
                if lowered == "content-length":
                    length = True
                elif lowered in _FIXED_BY_WERKZEUG:
                    plain = False
                    break
            if plain and length:
                return headers
        return super().get_wsgi_headers(environ)

    def get_app_iter(self, environ: dict[str, Any]) -> Iterable[bytes]:
        """A body held as one bytes string (every JSON answer, every rendered page) is
        handed to the server as the list it is. werkzeug wraps it in a generator that
        encodes each item and a `ClosingIterator` that calls `close`, which for such a
        body closes nothing: no `_on_close` callback, a list has no `close`. Bodiless
        answers (HEAD, 1xx, 204, 304) and everything else go werkzeug's way."""
        body = self.response
        if (
            type(body) is list
            and len(body) == 1
            and type(body[0]) is bytes
            and not self._on_close
            and environ["REQUEST_METHOD"] != "HEAD"
        ):
            status = self.status_code
            if status >= 200 and status not in (204, 304):
                return body
        return super().get_app_iter(environ)


_FIXED_BY_WERKZEUG = frozenset(("location", "content-location"))


class Keyledger(Flask):
    response_class = Answer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.browser_only_hooks: set[Callable[..., Any]] = set()
        self._api_hooks: ApiHooks | None = None
        self._sync_functions: set[Callable[..., Any]] = set()
        self._url_adapters: dict[tuple[Any, ...], MapAdapter | None] = {}
        self._built_urls: dict[tuple[Any, ...], str] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's, remembering the plain functions it was given: Flask asks it of the
        view and of every teardown function on every request, and each answer went
        through `inspect` (docs/performance.md, "Fewer calls per validation")."""
        known = self._sync_functions
        if func in known:
            return func
        wrapped = super().ensure_sync(func)
        if wrapped is func and len(known) < 4096:
            known.add(func)
        return wrapped

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Flask's, kept per host, method, path and query: werkzeug's `bind_to_environ`
        reads the host twice, IDNA-encodes it and decodes three environ strings on every
        request, for the same adapter each time the request line is the same (an adapter
        is never changed once made). Keyed by every environ value it reads; with
        TRUSTED_HOSTS or SERVER_NAME set, Flask's way every time (docs/performance.md,
        "Fewer calls per validation")."""
        config = self.config
        if request is None or config["TRUSTED_HOSTS"] or config["SERVER_NAME"]:
            return super().create_url_adapter(request)
        env = request.environ
        key = (
            env.get("HTTP_HOST"),
            env.get("SERVER_NAME"),
            env.get("SERVER_PORT"),
            env.get("wsgi.url_scheme"),
            env.get("HTTP_CONNECTION"),
            env.get("HTTP_UPGRADE"),
            env.get("SCRIPT_NAME"),
            env.get("PATH_INFO"),
            env.get("QUERY_STRING"),
            env.get("REQUEST_METHOD"),
        )
        adapters = self._url_adapters
        adapter = adapters.get(key, _sentinel)
        if adapter is _sentinel:
            adapter = super().create_url_adapter(request)  # raises for a bad host: not kept
            if len(adapters) >= MAX_URL_ADAPTERS:
                adapters.clear()
            adapters[key] = adapter
        return adapter  # type: ignore[return-value]

    def url_for(
        self,
        endpoint: str,
        *,
        _anchor: str | None = None,
        _method: str | None = None,
        _scheme: str | None = None,
        _external: bool | None = None,
        **values: Any,
    ) -> str:
        """Flask's, each relative URL built once per endpoint, arguments and adapter
        binding: a page asks for the same links on every view (the layout's navigation,
        stylesheet and scripts: fifteen on the keys page), and werkzeug's `build`
        matches the rule and quotes its arguments each time. Only plain string and
        integer arguments, no anchor, method, scheme or external URL, no blueprint-
        relative endpoint and no url_defaults functions; anything else, and a URL that
        cannot be built, goes Flask's way (docs/performance.md, "The keys page")."""
        ctx = _cv_request.get(None)
        if (
            ctx is None
            or _anchor is not None
            or _method is not None
            or _scheme is not None
            or _external
            or endpoint[:1] == "."
            or any(self.url_default_functions.values())
            or any(type(v) not in _PLAIN_VALUES for v in values.values())
        ):
            return super().url_for(
                endpoint,
                _anchor=_anchor,
                _method=_method,
                _scheme=_scheme,
                _external=_external,
                **values,
            )
        adapter = ctx.url_adapter
        if adapter is None:
            return super().url_for(endpoint, **values)
        key = (
            endpoint,
            adapter.script_name,
            adapter.server_name,
            adapter.subdomain,
            adapter.url_scheme,
            *values.items(),
        )
        built = self._built_urls.get(key)
        if built is None:
            built = super().url_for(endpoint, **values)
            if len(self._built_urls) >= MAX_BUILT_URLS:
                self._built_urls.clear()
            self._built_urls[key] = built
        return built

    def api_hooks(self) -> ApiHooks:
        """Built at the first API request: Flask refuses new hooks once one was served."""
        hooks = self._api_hooks
        if hooks is None:
            hooks = self._api_hooks = ApiHooks(self)
        return hooks

    def preprocess_request(self) -> ResponseReturnValue | None:
        if request.blueprint != API_BLUEPRINT:
            return super().preprocess_request()
        hooks = self.api_hooks()
        if hooks.url_values:
            for url_func in hooks.url_values:
                url_func(request.endpoint, request.view_args)
        for before_func in hooks.before:
            rv = before_func()
            if rv is not None:
                return rv  # type: ignore[no-any-return]
        return None

    def process_response(self, response: Response) -> Response:
        if request.blueprint != API_BLUEPRINT:
            return super().process_response(response)
        ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
        for func in ctx._after_request_functions:
            response = self.ensure_sync(func)(response)
        for func in self.api_hooks().after:
            response = func(response)
        if not self.session_interface.is_null_session(ctx._session):
            self.session_interface.save_session(self, ctx._session, response)
        return response

    def do_teardown_request(self, exc: BaseException | None = _sentinel) -> None:  # type: ignore[assignment]
        if exc is _sentinel:
            exc = sys.exc_info()[1]
        if request.blueprint != API_BLUEPRINT:
            return super().do_teardown_request(exc)
        for func in self.api_hooks().teardown:
            func(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)
        return None


@contextmanager
def browser_only(app: Flask) -> Iterator[None]:
    """Mark the app-wide request hooks added inside the block as serving browsers only:
    API requests skip them (on a plain Flask app nothing is marked)."""
    before = {name: list(chain.from_iterable(getattr(app, name).values())) for name in _HOOK_DICTS}
    yield
    marked = getattr(app, "browser_only_hooks", None)
    if marked is None:
        return
    for name in _HOOK_DICTS:
        for func in getattr(app, name).get(None, ()):
            if func not in before[name]:
                marked.add(func)
