"""admin blueprint."""

from flask import Blueprint

bp = Blueprint("admin", __name__, template_folder=None)

# routes: users, keys, audit browser; analytics_views: overview, security, billing.
from app.admin import analytics_views, routes  # noqa: E402, F401
