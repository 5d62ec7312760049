"""The log fails closed (issue 17): an anchor that cannot vouch for anything, a
witness that saw more, or a halted sealer never lead to a second signed view."""

from __future__ import annotations

from pathlib import Path

from audit_helpers import add_events, build_log, rewind_to, scalar, verify

from app.audit import service


def _anchor(app) -> Path:
    return Path(app.instance_path, "audit_anchor.jsonl")


def _checkpoint(app):
    return app.test_cli_runner().invoke(args=["audit", "checkpoint"])


def _signed(app) -> int:
    return scalar(app, "SELECT count(*) FROM audit_checkpoint")


def test_a_forged_anchor_entry_halts_the_sealer_instead_of_signing_a_fork(app):
    build_log(app, (10, 10))
    anchor = _anchor(app)
    text = anchor.read_text()
    # The database restored from a backup; someone appends an entry with a high index
    # and a signature that does not verify (the last entry, its index changed).
    rewind_to(app, 10)
    last = text[text.rfind("\n\nkeyledger/audit\n") + 2 :]
    forged = last.replace("\nindex 1\n", "\nindex 99\n")
    assert forged != last
    anchor.write_text(text + forged)
    add_events(app, 5, start=100)
    result = _checkpoint(app)
    assert result.exit_code == 1 and "REFUSED" in result.output
    assert "checkpoint 99) is not validly signed" in result.output
    assert _signed(app) == 1  # no second checkpoint 1 over the rolled-back tree
    with app.app_context():
        assert not service.status(app).ok
    checked = verify(app)
    assert checked.exit_code == 1 and "anchor_invalid" in checked.output


def test_a_missing_anchor_after_a_signed_checkpoint_halts_until_an_operator_acts(app):
    build_log(app, (10, 10))
    rewind_to(app, 10)
    _anchor(app).unlink()
    add_events(app, 5, start=100)
    result = _checkpoint(app)
    assert result.exit_code == 1 and "missing or empty" in result.output
    assert _signed(app) == 1 and not _anchor(app).exists()
    with app.app_context():
        assert not service.status(app).ok
    # Halted: verify fails even though what the database holds is consistent.
    checked = verify(app)
    assert checked.exit_code == 1 and "halted" in checked.output
    # An empty anchor is no better than none.
    _anchor(app).write_text("")
    assert _checkpoint(app).exit_code == 1
    # Plain recover does not lift it; --new-anchor does, and is recorded.
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["audit", "recover"])
    assert refused.exit_code == 1 and "missing or empty" in refused.output
    done = runner.invoke(args=["audit", "recover", "--new-anchor"])
    assert done.exit_code == 0, done.output
    assert "new anchor was started" in done.output
    assert "index 0\n" in _anchor(app).read_text()
    assert list(_anchor(app).parent.glob("audit_anchor.jsonl.replaced-*"))
    assert scalar(app, "SELECT count(*) FROM audit_event WHERE action = 'audit.anchor_restarted'")
    signed = _checkpoint(app)
    assert signed.exit_code == 0, signed.output
    assert verify(app).exit_code == 0


def test_new_anchor_is_refused_while_the_anchor_is_intact(app):
    build_log(app, (10, 10))
    rewind_to(app, 10)
    add_events(app, 5, start=100)
    assert _checkpoint(app).exit_code == 1  # halted: the anchor shows the rollback
    before = _anchor(app).read_text()
    refused = app.test_cli_runner().invoke(args=["audit", "recover", "--new-anchor"])
    assert refused.exit_code == 1 and "the anchor is intact" in refused.output
    assert _anchor(app).read_text() == before
    with app.app_context():
        assert not service.status(app).ok


def test_readyz_is_not_ready_while_the_anchor_is_missing(app):
    build_log(app, (5,))
    app.config["METRICS_TOKEN"] = "operator"
    operator = {"Authorization": "Bearer operator"}
    assert app.test_client().get("/readyz", headers=operator).status_code == 200
    _anchor(app).unlink()
    resp = app.test_client().get("/readyz", headers=operator)
    assert resp.status_code == 503
    assert "missing or empty" in resp.get_data(as_text=True)
