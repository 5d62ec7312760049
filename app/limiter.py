"""Flask-Limiter, one Limiter per app (issue 20 point 5).

A Limiter made at import is one object for the whole process: each `init_app` replaced
its storage with the newest app's, added that app's storage options to the earlier
ones' and kept the first app's key prefix, so a second app in the process (the tests'
variants, a CLI next to a server) counted in another app's storage with another app's
options. Here each app makes its own in `init_app` and keeps it in
app.extensions[EXTENSION]; everything that counts (the decorated views, app/ratelimit.py,
the readiness check) reaches it through the app.

Views declare their Flask-Limiter limits with `limit(...)` and `exempt` from this module:
these only mark the function, at import, with what Flask-Limiter's own decorators would
take; `bind_views` hands the marks to the app's Limiter once the blueprints are
registered, so each app's view functions are wrapped by its own Limiter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app.flask_app import browser_only

EXTENSION = "keyledger.limiter"
_MARKS = "_keyledger_limits"

View = TypeVar("View", bound=Callable[..., Any])


def init_app(app: Flask) -> Limiter:
    """Make and bind this app's Limiter (storage, strategy and prefix from RATELIMIT_*).
    Its app-wide hooks serve browsers only: the API counts through app/ratelimit.py."""
    limiter = Limiter(key_func=get_remote_address)
    with browser_only(app):
        limiter.init_app(app)
    app.extensions[EXTENSION] = limiter
    return limiter


def limiter_of(app: Flask | None = None) -> Limiter:
    """The Limiter of `app`, or of the current app."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]


def limit(limit_value: str | Callable[[], str], **options: Any) -> Callable[[View], View]:
    """`Limiter.limit(limit_value, **options)` on this view, in every app that serves it
    (bound by `bind_views`)."""

    def mark(view: View) -> View:
        view.__dict__.setdefault(_MARKS, []).append((limit_value, options))
        return view

    return mark


def exempt(view: View) -> View:
    """`Limiter.exempt` on this view, in every app that serves it."""
    view.__dict__.setdefault(_MARKS, []).append(None)
    return view


def bind_views(app: Flask) -> None:
    """Wrap each marked view function of `app` with its own Limiter's decorators, in the
    order they were written (innermost first). Call once, after the blueprints."""
    limiter = limiter_of(app)
    bound: dict[Callable[..., Any], Callable[..., Any]] = {}
    for endpoint, view in list(app.view_functions.items()):
        marks = view.__dict__.get(_MARKS)
        if not marks:
            continue
        if view not in bound:
            wrapped = view
            for mark in marks:
                if mark is None:
                    wrapped = limiter.exempt(wrapped)
                else:
                    limit_value, options = mark
                    wrapped = limiter.limit(limit_value, **options)(wrapped)
            bound[view] = wrapped
        app.view_functions[endpoint] = bound[view]
