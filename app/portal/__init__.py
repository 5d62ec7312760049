"""portal blueprint."""

from flask import Blueprint

bp = Blueprint("portal", __name__, template_folder=None)

from app.portal import routes, usage_views  # noqa: E402, F401
