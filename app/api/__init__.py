"""api blueprint."""

from flask import Blueprint

bp = Blueprint("api", __name__, template_folder=None)

from app.api import routes  # noqa: E402, F401
