"""The audit trail: canonical encoding, append, verification. No Flask request objects."""
