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


def _receipts(app, public_id: str) -> dict:
    with app.app_context():
        return service.receipts_for_key(public_id)


def test_receipts_survive_prune_and_still_check(app, user, tmp_path):
    user.create_key(name="kept", scopes=("keys:read",))
    kept = _public_id(app, "kept")
    seal(app)
    before = _receipts(app, kept)
    assert [r["action"] for r in before["receipts"]] == ["key.created"]
    with app.app_context():
        keys = service.settings().trusted
        vkey = service.settings().signer.vkey
    # Everything up to the newest checkpoint is pruned.
    with app.app_context():
        from app.audit import log as auditlog
        from app.extensions import db

        with db.engine.connect() as conn:
            newest = auditlog.latest_checkpoint(conn).time
    done = app.test_cli_runner().invoke(args=["audit", "prune", "--before", newest, "--yes"])
    assert done.exit_code == 0 and "pruned the payloads of" in done.output, done.output
    after = _receipts(app, kept)
    assert [r["seq"] for r in after["receipts"]] == [r["seq"] for r in before["receipts"]]
    receipt = after["receipts"][0]
    assert receipt["pruned"] is True and receipt["leaf_hash"] == before["receipts"][0]["leaf_hash"]
    assert "\nextra " not in receipt["proof"]
    assert core.verify_receipts(after, keys).ok
    path = tmp_path / "receipts.json"
    path.write_text(json.dumps(after))
    checked = run_offline("receipt", str(path), "--vkey", vkey)
    assert checked.returncode == 0, checked.stderr
    # The key page still lists it.
    page = user.client.get(f"/keys/{kept}").get_data(as_text=True)
    assert "key.created" in page
    # A pruned receipt naming another leaf does not check.
    after["receipts"][0]["leaf_hash"] = "00" * 32
    assert not core.verify_receipts(after, keys).ok


def test_a_key_made_by_rotation_has_a_receipt_of_its_creation(app, user, tmp_path):
    user.create_key(name="rolling", scopes=("keys:read",))
    old = _public_id(app, "rolling")
    resp = user.submit(f"/keys/{old}", {"grace": "now"}, action=f"/keys/{old}/rotate")
    assert resp.status_code in (200, 302)
    from sqlalchemy import select

    from app.extensions import db
    from app.models import ApiKey

    with app.app_context():
        new = db.session.scalar(
            select(ApiKey.public_id).where(ApiKey.name == "rolling", ApiKey.public_id != old)
        )
    assert new
    seal(app)
    doc = _receipts(app, new)
    assert [r["action"] for r in doc["receipts"]] == ["key.rotated"]
    with app.app_context():
        keys = service.settings().trusted
    assert core.verify_receipts(doc, keys).ok
    # The old key's receipts hold its creation and the rotation too.
    assert [r["action"] for r in _receipts(app, old)["receipts"]] == ["key.created", "key.rotated"]


def test_prune_refuses_the_future_dry_runs_and_asks_first(app):
    add_events(app, 4)
    seal(app)
    runner = app.test_cli_runner()
    future = runner.invoke(args=["audit", "prune", "--before", "2999-01-01", "--yes"])
    assert future.exit_code == 2 and "later than the newest checkpoint" in future.output
    from audit_helpers import scalar

    with app.app_context():
        from app.audit import log as auditlog
        from app.extensions import db

        with db.engine.connect() as conn:
            newest = auditlog.latest_checkpoint(conn).time
    dry = runner.invoke(args=["audit", "prune", "--before", newest, "--dry-run"])
    assert dry.exit_code == 0 and "would prune the payloads of 4 events" in dry.output
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE canonical IS NULL") == 0
    declined = runner.invoke(args=["audit", "prune", "--before", newest], input="n\n")
    assert declined.exit_code == 1 and "Drop the payloads of 4 events" in declined.output
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE canonical IS NULL") == 0
    agreed = runner.invoke(args=["audit", "prune", "--before", newest], input="y\n")
    assert agreed.exit_code == 0 and "pruned the payloads of 4 events" in agreed.output
