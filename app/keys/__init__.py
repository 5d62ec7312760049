"""API keys: format, hashing and lifecycle. No Flask request objects in here."""
