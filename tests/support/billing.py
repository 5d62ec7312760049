"""Shared by the billing tests: accounts backdated to when their billing starts."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from sqlalchemy import select, update

from app.extensions import db
from app.models import TierPeriod, User


def since(app: Flask, email: str, at: datetime) -> None:
    """Backdate an account to `at` (its creation and its first tier period): accounts
    are billed from the day they were created."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        db.session.execute(
            update(TierPeriod)
            .where(TierPeriod.user_id == user.id, TierPeriod.since == user.created_at)
            .values(since=at)
        )
        user.created_at = at
        db.session.commit()
