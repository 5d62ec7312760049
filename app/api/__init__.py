"""api blueprint: key validation and key management, authenticated by API keys."""

from flask import Blueprint

bp = Blueprint("api", __name__, template_folder=None)

from app.api import hooks, routes  # noqa: E402, F401
