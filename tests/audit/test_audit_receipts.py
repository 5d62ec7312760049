"""Receipts for key owners: each lifecycle event of a key with its inclusion proof and
the signed checkpoint, on the key page and from the API, checked offline."""

from __future__ import annotations

import json
import re

from audit_helpers import add_events, run_offline, seal

from app.audit import core, service


def _public_id(app, name: str) -> str:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import ApiKey

    with app.app_context():
        return db.session.scalar(select(ApiKey.public_id).where(ApiKey.name == name))


def test_receipts_on_the_key_page_and_from_the_api_check_offline(app, user, other, tmp_path):
    _, reader = user.create_key(name="reader", scopes=("keys:read",))
    assert reader
    user.create_key(name="doomed", scopes=("keys:read",))
    doomed = _public_id(app, "doomed")
    resp = user.submit(f"/keys/{doomed}", {"confirm": "y"}, action=f"/keys/{doomed}/revoke")
    assert resp.status_code == 302
    page = user.client.get(f"/keys/{doomed}").get_data(as_text=True)
    assert "Audit receipts" in page and "waiting for the next signed checkpoint" in page
    # Per-request records about the key are not lifecycle events: no receipt for them.
    for action in ("key.rate_limited", "key.validation_failed", "key.validated"):
        add_events(app, 1, action=action, target=f"key:{doomed}", actor=f"key:{doomed}")
    seal(app)
    page = user.client.get(f"/keys/{doomed}").get_data(as_text=True)
    assert "key.created" in page and "key.revoked" in page
    assert "c2sp.org/tlog-proof@v1" in page
    bearer = {"Authorization": f"Bearer {reader}"}
    got = user.client.get(f"/api/v1/keys/{doomed}/receipts", headers=bearer)
    assert got.status_code == 200, got.get_data(as_text=True)
    doc = got.json
    assert doc["format"] == "keyledger-audit-receipts/1" and doc["target"] == f"key:{doomed}"
    assert [r["action"] for r in doc["receipts"]] == ["key.created", "key.revoked"]
    assert doc["pending"] == 0 and doc["checkpoint"].startswith("keyledger/audit\n")
    with app.app_context():
        keys = service.settings().trusted
        vkey = service.settings().signer.vkey
    assert core.verify_receipts(doc, keys).ok
    path = tmp_path / "receipts.json"
    path.write_text(json.dumps(doc))
    done = run_offline("receipt", str(path), "--vkey", vkey)
    assert done.returncode == 0, done.stderr
    assert "receipts valid: 2 events" in done.stdout
    # A receipt moved onto another key, or a proof altered, is refused.
    doc["target"] = "key:someoneelse"
    path.write_text(json.dumps(doc))
    assert run_offline("receipt", str(path), "--vkey", vkey).returncode == 1
    doc["target"] = f"key:{doomed}"
    doc["receipts"][0]["proof"] = re.sub(r"index \d+", "index 0", doc["receipts"][0]["proof"])
    path.write_text(json.dumps(doc))
    done = run_offline("receipt", str(path), "--vkey", vkey)
    assert done.returncode == 1
    # Only the owner gets them: no key, a foreign key id, another user's key.
    assert user.client.get(f"/api/v1/keys/{doomed}/receipts").status_code == 401
    assert user.client.get("/api/v1/keys/nosuchkey/receipts", headers=bearer).status_code == 404
    _, stranger = other.create_key(name="stranger", scopes=("keys:read",))
    foreign = {"Authorization": f"Bearer {stranger}"}
    assert other.client.get(f"/api/v1/keys/{doomed}/receipts", headers=foreign).status_code == 404
