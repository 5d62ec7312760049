"""auth blueprint."""

from flask import Blueprint

bp = Blueprint("auth", __name__, template_folder=None)

from app.auth import account, reset_views, routes, twofactor_views  # noqa: E402, F401
