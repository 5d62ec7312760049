"""The database holds hashes, never a key, a key secret or a password."""

from __future__ import annotations

import glob
import re

import pytest
from support.db import USE_PG
from support.web import OTHER_PASSWORD, PASSWORD, Portal, public_id_of

from app.extensions import db

NEW_KEY = re.compile(r'id="new-key"[^>]*value="([^"]+)"')


@pytest.mark.skipif(
    USE_PG, reason="reads the SQLite database file's bytes; PostgreSQL keeps no such file"
)
def test_database_file_holds_no_key_secret_or_password(app, user, other, client, runner):
    plaintexts = []
    for name, days in (("one", 10), ("two", 20), ("three", 30)):
        _, plaintext = user.create_key(name=name, days=days)
        plaintexts.append(plaintext)
    _, bob_key = other.create_key(name="bob")
    plaintexts.append(bob_key)
    pid = public_id_of(plaintexts[0])
    resp = user.submit(f"/keys/{pid}", {"grace": "1h"}, action=f"/keys/{pid}/rotate")
    plaintexts.append(NEW_KEY.search(resp.get_data(as_text=True))[1])
    for plaintext in plaintexts:
        client.post("/api/v1/keys/validate", json={"key": plaintext})
    admin_password = "the admin's own long passphrase"
    assert (
        runner.invoke(
            args=["users", "create", "root@example.com", "--admin"], input=admin_password + "\n"
        ).exit_code
        == 0
    )
    Portal(app.test_client()).login("alice@example.com", "a mistyped password")

    with app.app_context():
        path = db.engine.url.database
        db.session.remove()
        db.engine.dispose()
    content = b""
    for part in sorted(glob.glob(path + "*")):  # the file, and any journal or WAL beside it
        with open(part, "rb") as fh:
            content += fh.read()
    assert len(content) > 10_000
    # The test would see them if they were there: public ids are stored in clear.
    assert public_id_of(plaintexts[0]).encode() in content
    assert b"alice@example.com" in content
    for plaintext in plaintexts:
        secret = plaintext.split(".")[2]
        assert plaintext.encode() not in content
        assert secret.encode() not in content
        assert secret[:16].encode() not in content
    for password in (PASSWORD, OTHER_PASSWORD, admin_password, "a mistyped password"):
        assert password.encode() not in content
        assert password.encode("utf-16-le") not in content
