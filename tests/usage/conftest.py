"""Helpers for the usage tests: a key made through the portal, and events for it."""

from __future__ import annotations

import pytest
from flask import Flask
from support.usage import Key, make_key
from support.web import Portal


@pytest.fixture
def key(app: Flask, user: Portal) -> Key:
    return make_key(app, user)
