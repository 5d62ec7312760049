"""auth blueprint."""

from flask import Blueprint

bp = Blueprint("auth", __name__, template_folder=None)

from app.auth import (  # noqa: E402, F401
    account,
    passkey_views,
    reset_views,
    routes,
    twofactor_views,
)
