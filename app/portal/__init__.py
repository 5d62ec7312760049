"""portal blueprint."""

from flask import Blueprint

bp = Blueprint("portal", __name__, template_folder=None)

from app.portal import routes  # noqa: E402, F401
