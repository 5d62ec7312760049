"""Any C2SP witness, both ways (issue 17): `flask audit witness` answers the
tlog-witness matrix for any log it has a vkey for, and the log works with a witness
written from the spec (tests/audit/spec_witness.py) in another process, asks it
before signing, and refuses to sign or recover a tree it does not extend."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from audit_helpers import add_events, build_log, rewind_to, scalar, seal, verify
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_audit_witness import spec_cosignature_ok

from app.audit import core, service
from app.audit import witness as witness_mod

HERE = Path(__file__).resolve().parent
ORIGIN = "example.com/other-log"


class ForeignLog:
    """Another log, with plain tlog-checkpoints (and optional extension lines)."""

    def __init__(self, origin: str = ORIGIN) -> None:
        self.origin = origin
        self.key = Ed25519PrivateKey.generate()
        self.leaves = [core.leaf_hash(b"%d" % i) for i in range(40)]

    @property
    def vkey(self) -> str:
        return core.vkey(self.origin, self.key.public_key())

    def checkpoint(self, size: int, extra: str = "", key=None, root=None) -> str:
        root = root or core.mth(self.leaves[:size])
        body = f"{self.origin}\n{size}\n{base64.b64encode(root).decode()}\n{extra}".encode()
        sig = core.sign_note(body, self.origin, key or self.key)
        return body.decode() + "\n" + sig.line()

    def request(self, old: int, size: int, **kw) -> str:
        proof = []
        if 0 < old < size:
            proof = core.consistency_path(old, size, lambda lo, hi: core.mth(self.leaves[lo:hi]))
        lines = "".join(base64.b64encode(p).decode() + "\n" for p in proof)
        return f"old {old}\n{lines}\n" + self.checkpoint(size, **kw)


def _http(url: str, body: str | None = None) -> tuple[int, str, str]:
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def our_witness(tmp_path):
    log = ForeignLog()
    w = witness_mod.Witness(
        "witness.example/w9",
        Ed25519PrivateKey.generate(),
        tmp_path / "state.json",
        [core.parse_vkey(log.vkey)],
    )
    server = witness_mod.serve(w, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield log, w, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_our_witness_answers_the_tlog_witness_matrix(our_witness):
    log, w, url = our_witness
    add = url + "/add-checkpoint"
    # A plain three-line checkpoint is cosigned.
    status, ctype, body = _http(add, log.request(0, 5))
    assert status == 200 and body.startswith("\u2014 witness.example/w9 "), body
    assert spec_cosignature_ok(log.checkpoint(5) + body, w.vkey)
    # Extension lines are the log's business.
    status, _, body = _http(add, log.request(5, 9, extra="ext one\nanother ext\n"))
    assert status == 200, body
    # Stale old size: 409 with the witness's size.
    assert _http(add, log.request(5, 12)) == (409, "text/x.tlog.size", "9\n")
    # A proof that does not verify: 422.
    bad = log.request(9, 12).replace(
        "old 9\n", "old 9\n" + base64.b64encode(bytes(32)).decode() + "\n", 1
    )
    assert _http(add, bad)[0] == 422
    # Same size, another root: 422.
    assert _http(add, log.request(9, 9, root=bytes(32)))[0] == 422
    # Unknown origin: 404. No signature by a trusted key: 403; a trusted key's bad one: 403.
    assert _http(add, ForeignLog("example.com/unknown").request(0, 3))[0] == 404
    assert _http(add, log.request(9, 12, key=Ed25519PrivateKey.generate()))[0] == 403
    forged = log.request(9, 12).replace("\n12\n", "\n13\n")
    assert _http(add, forged)[0] == 403
    # old beyond the checkpoint: 400; garbage: 400.
    assert _http(add, log.request(9, 9).replace("old 9", "old 10"))[0] == 400
    assert _http(add, "nonsense")[0] == 400
    # Monitoring: the latest cosigned checkpoint, with the log's and the witness's lines.
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    status, ctype, note = _http(f"{url}/{origin_hash}/checkpoint")
    assert status == 200 and ctype.startswith("text/plain")
    assert note.startswith(f"{ORIGIN}\n9\n") and spec_cosignature_ok(note, w.vkey)
    assert _http(f"{url}/{'0' * 64}/checkpoint")[0] == 404
    assert _http(f"{url}/not-a-hash/checkpoint")[0] == 404


def _spec_witness(app, tmp_path: Path, *flags: str):
    with app.app_context():
        log_vkey = service.settings().signer.vkey
    requests = tmp_path / "requests.txt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(HERE / "spec_witness.py"),
            "spec.example/w",
            log_vkey,
            str(requests),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    vkey, url = proc.stdout.readline().split()
    app.config["AUDIT_WITNESSES"] = f"{url} {vkey}"
    app.extensions[service.EXTENSION] = service.AuditService(app)
    return proc, requests


@pytest.fixture
def spec_witness(app, tmp_path):
    proc, requests = _spec_witness(app, tmp_path)
    yield requests
    proc.terminate()
    proc.wait(10)


def _roll_back_with_the_anchor(app, size: int, anchored: str) -> None:
    rewind_to(app, size)
    Path(app.instance_path, "audit_anchor.jsonl").write_text(anchored)


def test_a_witness_written_from_the_spec_cosigns_and_gets_the_spec_content_type(app, spec_witness):
    build_log(app, (5, 5))
    assert scalar(app, "SELECT count(*) FROM audit_cosignature") == 2
    assert set(spec_witness.read_text().splitlines()) == {"text/plain; charset=utf-8"}


def test_database_and_anchor_rolled_back_together_are_refused_before_signing(app, spec_witness):
    build_log(app, (10,))
    anchored = Path(app.instance_path, "audit_anchor.jsonl").read_text()
    add_events(app, 10, start=10)
    seal(app)  # the witness has cosigned 20 events
    _roll_back_with_the_anchor(app, 10, anchored)
    add_events(app, 5, start=100)
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 1 and "has cosigned 20 events" in result.output
    assert scalar(app, "SELECT count(*) FROM audit_checkpoint") == 1  # nothing signed
    # More events than the witness saw, on another history: still refused.
    add_events(app, 15, start=200)
    assert app.test_cli_runner().invoke(args=["audit", "recover"]).exit_code == 1
    assert scalar(app, "SELECT count(*) FROM audit_checkpoint") == 1


def test_recover_asks_every_witness_before_lifting_a_halt(app, tmp_path):
    proc, _ = _spec_witness(app, tmp_path, "--no-monitoring")
    try:
        build_log(app, (10,))
        anchored = Path(app.instance_path, "audit_anchor.jsonl").read_text()
        add_events(app, 10, start=10)
        seal(app)
        _roll_back_with_the_anchor(app, 10, anchored)
        add_events(app, 15, start=100)
        # This witness does not serve its checkpoint, so the log learns of the fork only
        # from its 422 after signing: `checkpoint` must not report success.
        result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
        assert result.exit_code == 1 and "HALTED" in result.output, result.output
        assert verify(app).exit_code == 1
        # Recovery asks the witness (by add-checkpoint, as it serves no checkpoint):
        # it refuses the rolled-back tree, so the halt stays.
        refused = app.test_cli_runner().invoke(args=["audit", "recover"])
        assert refused.exit_code == 1 and "inconsistent" in refused.output, refused.output
    finally:
        proc.terminate()
        proc.wait(10)
    # Recovery with the witness out of reach is refused too: it must be asked.
    refused = app.test_cli_runner().invoke(args=["audit", "recover"])
    assert refused.exit_code == 1 and "must answer" in refused.output
    with app.app_context():
        assert not service.status(app).ok
