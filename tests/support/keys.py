"""Users and keys made with the domain services (app/accounts, app/keys), as the
portal does, for tests that start from a key rather than from a form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import Flask
from sqlalchemy import select, update

from app import accounts
from app.extensions import db
from app.keys import lifecycle
from app.models import ApiKey, User
from app.models._types import utcnow
from support.web import PASSWORD

ALL_SCOPES = ("keys:read", "keys:write", "usage:read")


@dataclass
class Key:
    plaintext: str
    public_id: str
    id: int
    owner_id: int

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plaintext}"}


class Keys:
    """Makes users and keys through app/accounts and app/keys, as the portal does."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def user(self, email: str = "svc@example.com", tier: str = "basic") -> int:
        with self.app.app_context():
            found = accounts.find_user(db.session, email)
            if found is not None:
                return found.id
            return accounts.create_user(
                db.session,
                self.app.extensions["keyledger.passwords"],
                email=email,
                password=PASSWORD,
                tier=tier,
            ).id

    def key(
        self,
        *,
        email: str = "svc@example.com",
        tier: str = "basic",
        scopes: tuple[str, ...] = ALL_SCOPES,
        days: int = 30,
        name: str = "svc",
    ) -> Key:
        user_id = self.user(email, tier)
        with self.app.app_context():
            owner = db.session.get(User, user_id)
            new = lifecycle.create_key(
                db.session,
                self.app.extensions["keyledger.key_policy"],
                owner,
                name=name,
                scopes=scopes,
                lifetime_days=days,
            )
            return Key(new.plaintext, new.key.public_id, new.key.id, user_id)

    def set_tier(self, user_id: int, tier: str) -> None:
        with self.app.app_context():
            accounts.set_tier(db.session, db.session.get(User, user_id), tier, actor="cli")
            db.session.commit()

    def revoke(self, key: Key) -> None:
        with self.app.app_context():
            row = db.session.get(ApiKey, key.id)
            lifecycle.revoke_key(db.session, row, actor=row.owner, actor_ip=None)

    def expire(self, key: Key) -> None:
        with self.app.app_context():
            db.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key.id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            db.session.commit()

    def row(self, public_id: str) -> ApiKey | None:
        with self.app.app_context():
            row = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
            if row is not None:
                db.session.expunge(row)
            return row


def forged_key(prefix: str = "klk") -> str:
    """A well-formed key (right shape and checksum) that was never issued."""
    from app.keys import format as keyformat

    return keyformat.assemble(prefix, keyformat.new_public_id(), keyformat.new_secret())
