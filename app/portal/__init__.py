"""portal blueprint."""

from flask import Blueprint

bp = Blueprint("portal", __name__, template_folder=None)

from app.portal import key_policies, routes, usage_views, webhook_views  # noqa: E402, F401
