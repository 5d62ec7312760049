"""Browser tests (marker e2e); a package so its conftest does not shadow tests/conftest.py."""
