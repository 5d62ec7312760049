"""admin blueprint."""

from flask import Blueprint

bp = Blueprint("admin", __name__, template_folder=None)

from app.admin import routes  # noqa: E402, F401
