"""Shared by the usage tests: a key made through the portal, and usage events for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey
from app.usage import UsageEvent
from support.web import Portal


@dataclass
class Key:
    plaintext: str
    public_id: str
    id: int
    owner_id: int

    def event(
        self,
        *,
        status: int = 200,
        ms: float = 5.0,
        at: datetime | None = None,
        ip: str | None = "203.0.113.7",
        endpoint: str = "/v1/things",
        method: str = "GET",
    ) -> UsageEvent:
        return UsageEvent(
            key_id=self.id,
            owner_id=self.owner_id,
            endpoint=endpoint,
            method=method,
            status=status,
            response_ms=ms,
            client_ip=ip,
            at=at or datetime.now(UTC),
        )


def make_key(app: Flask, portal: Portal, name: str = "svc") -> Key:
    resp, plaintext = portal.create_key(name=name, scopes=("keys:read", "usage:read"))
    assert plaintext, resp.get_data(as_text=True)
    public_id = plaintext.split(".")[1]
    with app.app_context():
        row = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
        return Key(plaintext, public_id, row.id, row.user_id)
