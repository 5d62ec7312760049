"""Leaked keys (issue 12): GitHub secret scanning alerts signed with a test ECDSA P-256
key published through GITHUB_SECRET_SCANNING_KEYS (a file, and a URL served by a local
HTTP server), the public report endpoint, key.leaked and the owner's notice."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from support.keys import Keys, forged_key
from support.rows import audit_events, snapshot
from support.web import Portal

from .test_openapi import SPEC_URL, Checker
from .test_validate import statements

GITHUB = "/api/v1/secret-scanning/github"
REPORT = "/api/v1/keys/report-leak"
URL = "/api/v1/keys/validate"
LEAK_URL = "https://github.com/octocat/hello/blob/abc123/config.py"


class Signer:
    """A GitHub-style signing key: ECDSA P-256, SHA-256, base64 DER signatures."""

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier
        self.private = ec.generate_private_key(ec.SECP256R1())

    def entry(self) -> dict[str, Any]:
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"key_identifier": self.identifier, "key": pem.decode(), "is_current": True}

    def headers(self, body: bytes) -> dict[str, str]:
        signature = self.private.sign(body, ec.ECDSA(hashes.SHA256()))
        return {
            "Github-Public-Key-Identifier": self.identifier,
            "Github-Public-Key-Signature": base64.b64encode(signature).decode(),
            "Content-Type": "application/json",
        }


def document(*signers: Signer) -> bytes:
    return json.dumps({"public_keys": [s.entry() for s in signers]}).encode()


def alert(*tokens: str, url: str = LEAK_URL) -> bytes:
    return json.dumps(
        [{"token": t, "type": "keyledger_api_key", "url": url, "source": "content"} for t in tokens]
    ).encode()


@pytest.fixture
def signer() -> Signer:
    return Signer("a" * 64)


@pytest.fixture
def keys_file(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "secret_scanning.json"
    path.write_bytes(document(signer))
    return path


class KeyServer:
    """GitHub's meta/public_keys/secret_scanning on 127.0.0.1: counts fetches, can fail."""

    def __init__(self, body: bytes) -> None:
        self.body, self.hits, self.status, self.delay = body, 0, 200, 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                time.sleep(server.delay)
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(server.body if server.status == 200 else b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the app gave up waiting (the slow-server test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = (
            f"http://127.0.0.1:{self.httpd.server_address[1]}/meta/public_keys/secret_scanning"
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def key_server(signer: Signer) -> Iterator[KeyServer]:
    server = KeyServer(document(signer))
    yield server
    server.close()


def _state(keys: Keys, public_id: str) -> tuple[Any, ...]:
    row = keys.row(public_id)
    return row.revoked_at, row.leaked_at, row.leak_location


# --- GitHub secret scanning ------------------------------------------------------------


def test_a_signed_alert_revokes_the_live_key_and_labels_it(
    app: Flask, keys: Keys, make_app: Any, keys_file: Path, signer: Signer
) -> None:
    live = keys.key(name="deploy")
    bystander = keys.key(name="untouched")
    client = make_app(GITHUB_SECRET_SCANNING_KEYS=str(keys_file)).test_client()
    checker = Checker(client.get(SPEC_URL).json)
    assert client.post(URL, json={"key": live.plaintext}).status_code == 200
    random_string = "klk_not_even_close_" + "x" * 30
    body = alert(live.plaintext, random_string, forged_key())
    resp = client.post(GITHUB, data=body, headers=signer.headers(body))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    checker.check("POST", GITHUB, resp)
    assert resp.json == [
        {
            "token_hash": hashlib.sha256(live.plaintext.encode()).hexdigest(),
            "token_type": "keyledger_api_key",
            "label": "true_positive",
        },
        {
            "token_hash": hashlib.sha256(random_string.encode()).hexdigest(),
            "token_type": "keyledger_api_key",
            "label": "false_positive",
        },
        {
            "token_hash": hashlib.sha256(json.loads(body)[2]["token"].encode()).hexdigest(),
            "token_type": "keyledger_api_key",
            "label": "false_positive",
        },
    ]
    revoked = client.post(URL, json={"key": live.plaintext})
    assert (revoked.status_code, revoked.json["error"]) == (401, "revoked")
    assert client.post(URL, json={"key": bystander.plaintext}).status_code == 200
    revoked_at, leaked_at, where = _state(keys, live.public_id)
    assert revoked_at is not None and leaked_at == revoked_at
    assert where == f"{LEAK_URL} (content)"
    (event,) = audit_events(app, "key.leaked", f"key:{live.public_id}")
    assert event.sensitivity == "critical"
    assert event.actor == "github:secret-scanning"
    details = json.loads(event.details)
    assert details["found_at"] == f"{LEAK_URL} (content)"
    assert details["revoked"] is True
    assert live.plaintext not in event.details

    # The same alert again: the same labels, nothing more changes.
    before, rows = _state(keys, live.public_id), snapshot(app)
    again = client.post(GITHUB, data=body, headers=signer.headers(body))
    assert again.status_code == 200
    assert again.json == resp.json
    assert _state(keys, live.public_id) == before
    assert snapshot(app) == rows
    assert len(audit_events(app, "key.leaked")) == 1


def test_an_already_revoked_key_is_a_true_positive_marked_once(
    app: Flask, keys: Keys, make_app: Any, keys_file: Path, signer: Signer
) -> None:
    key = keys.key()
    keys.revoke(key)
    revoked_at = keys.row(key.public_id).revoked_at
    client = make_app(GITHUB_SECRET_SCANNING_KEYS=str(keys_file)).test_client()
    body = alert(key.plaintext)
    assert client.post(GITHUB, data=body, headers=signer.headers(body)).json[0]["label"] == (
        "true_positive"
    )
    row = keys.row(key.public_id)
    assert row.revoked_at == revoked_at  # not moved
    assert row.leaked_at is not None
    (event,) = audit_events(app, "key.leaked", f"key:{key.public_id}")
    assert json.loads(event.details)["revoked"] is False


FORGERIES = {
    "signed by another key": lambda s, b: {**Signer(s.identifier).headers(b)},
    "unknown key identifier": lambda s, b: {
        **s.headers(b),
        "Github-Public-Key-Identifier": "b" * 64,
    },
    "no signature": lambda s, b: {
        k: v for k, v in s.headers(b).items() if k != "Github-Public-Key-Signature"
    },
    "no identifier": lambda s, b: {
        k: v for k, v in s.headers(b).items() if k != "Github-Public-Key-Identifier"
    },
    "not base64": lambda s, b: {**s.headers(b), "Github-Public-Key-Signature": "%%%"},
    "garbage DER": lambda s, b: {
        **s.headers(b),
        "Github-Public-Key-Signature": base64.b64encode(b"\x30\x02\x01\x01").decode(),
    },
    "signature of another body": lambda s, b: s.headers(b + b" "),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_bad_or_missing_signature_is_401_and_changes_nothing(
    app: Flask, keys: Keys, make_app: Any, keys_file: Path, signer: Signer, forgery: str
) -> None:
    key = keys.key()
    client = make_app(GITHUB_SECRET_SCANNING_KEYS=str(keys_file)).test_client()
    checker = Checker(client.get(SPEC_URL).json)
    body = alert(key.plaintext)
    rows = snapshot(app)
    resp = client.post(GITHUB, data=body, headers=FORGERIES[forgery](signer, body))
    assert resp.status_code == 401
    assert resp.json["error"] == "invalid_signature"
    checker.check("POST", GITHUB, resp)
    assert snapshot(app) == rows
    assert _state(keys, key.public_id) == (None, None, None)
    assert client.post(URL, json={"key": key.plaintext}).status_code == 200


def test_a_signed_body_that_is_not_an_alert_is_400(
    app: Flask, keys: Keys, make_app: Any, keys_file: Path, signer: Signer
) -> None:
    client = make_app(GITHUB_SECRET_SCANNING_KEYS=str(keys_file)).test_client()
    for body in (b"{oops", b'{"token": "x"}', b'[{"type": "t"}]', b'[{"token": 5}]', b"[1]"):
        resp = client.post(GITHUB, data=body, headers=signer.headers(body))
        assert resp.status_code == 400, body
    big = alert(*(["x"] * 1001))
    assert client.post(GITHUB, data=big, headers=signer.headers(big)).status_code == 400


def test_keys_published_at_a_url_are_fetched_cached_and_refreshed(
    app: Flask, keys: Keys, make_app: Any, key_server: KeyServer, signer: Signer
) -> None:
    first, second, third = keys.key(name="a"), keys.key(name="b"), keys.key(name="c")
    variant = make_app(GITHUB_SECRET_SCANNING_KEYS=key_server.url)
    client = variant.test_client()

    def send(token: str, by: Signer) -> Any:
        body = alert(token)
        return client.post(GITHUB, data=body, headers=by.headers(body))

    assert send(first.plaintext, signer).json[0]["label"] == "true_positive"
    assert key_server.hits == 1
    assert send(forged_key(), signer).status_code == 200
    assert key_server.hits == 1  # cached

    # GitHub rotates its key: an unknown identifier refreshes the copy, at most once a
    # minute (the first refresh was just now: not yet).
    rotated = Signer("c" * 64)
    key_server.body = document(signer, rotated)
    assert send(second.plaintext, rotated).status_code == 401
    assert key_server.hits == 1
    github_keys = variant.extensions["keyledger.github_keys"]
    github_keys._tried -= 61  # a minute later
    assert send(second.plaintext, rotated).json[0]["label"] == "true_positive"
    assert key_server.hits == 2

    # The server fails: the stale copy still verifies.
    key_server.status = 500
    github_keys._tried -= 61
    github_keys._fetched -= 7200  # older than max_age: a refresh is due
    assert send(third.plaintext, signer).json[0]["label"] == "true_positive"
    assert key_server.hits == 3
    assert _state(keys, third.public_id)[0] is not None


def test_a_slow_key_server_does_not_hold_the_answer(
    keys: Keys, make_app: Any, key_server: KeyServer, signer: Signer
) -> None:
    key = keys.key()
    key_server.delay = 5.0
    client = make_app(GITHUB_SECRET_SCANNING_KEYS=key_server.url).test_client()
    body = alert(key.plaintext)
    started = time.monotonic()
    resp = client.post(GITHUB, data=body, headers=signer.headers(body))
    assert time.monotonic() - started < 1.0
    assert resp.status_code == 401  # no key could be read: nothing verified, nothing changed
    assert _state(keys, key.public_id) == (None, None, None)


# --- the public report endpoint --------------------------------------------------------


def test_report_leak_revokes_live_keys_and_answers_alike(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    live = keys.key()
    other = keys.key(name="other")
    checker = Checker(client.get(SPEC_URL).json)
    miss = client.post(REPORT, json={"credentials": [forged_key(), "hello", "klk.x.y"]})
    hit = client.post(REPORT, json={"credentials": [live.plaintext, "hello", forged_key()]})
    assert (hit.status_code, hit.json, hit.headers.get("Content-Length")) == (
        miss.status_code,
        miss.json,
        miss.headers.get("Content-Length"),
    )
    assert hit.status_code == 202 and hit.json == {"received": 3}
    checker.check("POST", REPORT, hit)
    assert client.post(URL, json={"key": live.plaintext}).json["error"] == "revoked"
    assert client.post(URL, json={"key": other.plaintext}).status_code == 200
    (event,) = audit_events(app, "key.leaked", f"key:{live.public_id}")
    assert event.sensitivity == "critical" and event.actor == "public:report-leak"
    assert "report-leak" in json.loads(event.details)["found_at"]
    # Again: the same answer, nothing more.
    rows = snapshot(app)
    again = client.post(REPORT, json={"credentials": [live.plaintext, "hello", forged_key()]})
    assert again.json == hit.json and snapshot(app) == rows


def test_report_leak_checks_shape_and_checksum_before_any_lookup(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    key = keys.key()
    typo = key.plaintext[:-1] + ("a" if key.plaintext[-1] != "a" else "b")  # checksum fails
    noise = ["", "x" * 1000, "klk." + "A" * 12 + "." + "B" * 39, typo, "klk\x00"]
    with statements(app) as seen:
        resp = client.post(REPORT, json={"credentials": [s for s in noise if s]})
    assert resp.status_code == 202
    assert [s for s in seen if "api_key" in s] == []
    assert client.post(URL, json={"key": key.plaintext}).status_code == 200


def test_report_leak_takes_up_to_1000_strings_in_one_query(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    live = keys.key()
    credentials = [forged_key() for _ in range(999)] + [live.plaintext]
    with statements(app) as seen:
        resp = client.post(REPORT, json={"credentials": credentials})
    assert resp.status_code == 202 and resp.json == {"received": 1000}
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1
    assert client.post(URL, json={"key": live.plaintext}).json["error"] == "revoked"


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        b"[]",
        b'{"credentials": []}',
        b'{"credentials": "klk.x"}',
        b'{"credentials": [5]}',
        b'{"credentials": [""]}',
        b'{"credentials": ["a"], "extra": 1}',
        json.dumps({"credentials": ["a"] * 1001}).encode(),
        json.dumps({"credentials": ["a" * 1025]}).encode(),
    ],
)
def test_report_leak_bad_input_is_400(app: Flask, client: FlaskClient, body: bytes) -> None:
    rows = snapshot(app)
    resp = client.post(REPORT, data=body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json["error"] == "bad_request"
    assert snapshot(app) == rows


def test_report_leak_over_128_kib_is_413(client: FlaskClient) -> None:
    body = json.dumps({"credentials": ["x" * 1000] * 140}).encode()
    assert client.post(REPORT, data=body, content_type="application/json").status_code == 413


def test_report_leak_is_limited_per_ip(app: Flask, client: FlaskClient) -> None:
    app.config["LEAK_REPORT_LIMIT"] = "3/minute"
    checker = Checker(client.get(SPEC_URL).json)
    codes = [client.post(REPORT, json={"credentials": ["x"]}).status_code for _ in range(3)]
    assert codes == [202] * 3
    over = client.post(REPORT, json={"credentials": ["x"]})
    assert over.status_code == 429
    assert 0 < int(over.headers["Retry-After"]) <= 60
    checker.check("POST", REPORT, over)
    elsewhere = client.post(
        REPORT, json={"credentials": ["x"]}, environ_base={"REMOTE_ADDR": "198.51.100.1"}
    )
    assert elsewhere.status_code == 202


# --- the owner is told -----------------------------------------------------------------


def test_the_owner_sees_a_banner_at_next_login_and_on_the_key_page(
    app: Flask, user: Portal
) -> None:
    _, plaintext = user.create_key(name="ci deploy")
    public_id = plaintext.split(".")[1]
    assert "was found in public" not in user.client.get(f"/keys/{public_id}").get_data(as_text=True)
    user.logout()
    reporter = app.test_client()
    assert reporter.post(REPORT, json={"credentials": [plaintext]}).status_code == 202

    resp = user.login("alice@example.com")
    assert resp.status_code == 302
    landing = user.client.get(resp.headers["Location"], follow_redirects=True)
    html = landing.get_data(as_text=True)
    assert "Your key “ci deploy”" in html and "was found in public" in html
    page = user.client.get(f"/keys/{public_id}").get_data(as_text=True)
    assert 'id="key-leak"' in page and "report-leak" in page
    # Told once at login; the key page keeps saying it.
    user.logout()
    resp = user.login("alice@example.com")
    html = user.client.get(resp.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert "Your key “ci deploy”" not in html
    assert 'id="key-leak"' in user.client.get(f"/keys/{public_id}").get_data(as_text=True)
