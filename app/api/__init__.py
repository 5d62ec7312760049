"""api blueprint: key validation and key management, authenticated by API keys."""

from flask import Blueprint, Flask, request

from app.limiter import limiter_of

bp = Blueprint("api", __name__, template_folder=None)


def init_app(app: Flask) -> None:
    """The API's per-app state, and Flask-Limiter's filter for it (create_app calls
    this; nothing is registered at import)."""
    from app.api.state import EXTENSION, ApiState

    app.extensions[EXTENSION] = ApiState()
    limiter_of(app).request_filter(_counted_by_charge)


def _counted_by_charge() -> bool:
    """Flask-Limiter's own pass is skipped on the API: each API request is counted once,
    against its key's tier and the client IP's failed guesses, by app/ratelimit.py's
    `charge` (one script, one round trip). Its before_request resolved no limit here yet
    cost a share of every validation (docs/performance.md, "Flask-Limiter's hooks skip
    the API")."""
    return request.blueprint == "api"


from app.api import hooks, key_policies, leaks, routes  # noqa: E402, F401
