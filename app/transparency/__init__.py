"""The public, login-free transparency endpoints (/audit/...) over app.audit's log."""
