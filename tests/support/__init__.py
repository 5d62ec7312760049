"""Helpers shared by the tests, imported as `support.<module>` (pytest puts tests/ on
sys.path: pyproject's `pythonpath`). Fixtures stay in the conftest.py files and use
these; a test never imports from a conftest.

- db: the test database (SQLite file or PostgreSQL per xdist worker) and app settings
- web: a person in a browser (Portal), CSRF tokens, the shared password
- rows: what the database holds (row counts, audit events, keys), read directly
- keys: users and keys made with the domain services (the API tests' Keys)
- servers: free ports, the README's server, a private redis-server, waiting for a condition
"""
