"""portal blueprint."""

from flask import Blueprint

bp = Blueprint("portal", __name__, template_folder=None)

from app.portal import (  # noqa: E402, F401
    billing_views,
    key_policies,
    routes,
    usage_views,
    webhook_views,
)
