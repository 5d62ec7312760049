"""A minimal C2SP tlog-witness that an outside party can run (`flask audit witness`).

It keeps its own Ed25519 key and a state file (the latest checkpoint it cosigned per
origin) and answers `POST <prefix>/add-checkpoint`: it verifies the log's signature
with the log's vkey, checks the old size against its state (409 with the size as
`text/x.tlog.size` when they differ), checks the consistency proof from the
checkpoint it last cosigned, persists the new one atomically, and only then returns
a tlog-cosignature/v1 line. It never cosigns a checkpoint inconsistent with the
last it saw. Standard library and app.audit.core only: no Flask, no database.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import core

MAX_BODY = 1 << 16


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return key


class Witness:
    """The witness's logic, separate from HTTP so each answer is (status, type, body)."""

    def __init__(self, name: str, key: Ed25519PrivateKey, state: Path, logs: list[core.Verifier]):
        self.name = name
        self.key = key
        self.state_path = state
        self.logs = {v.name: v for v in logs}
        self.keys = core.KeyRing()
        for v in logs:
            self.keys.add_verifier(v)
        self.lock = threading.Lock()

    @property
    def vkey(self) -> str:
        return core.vkey(self.name, self.key.public_key(), core.SIG_COSIGNATURE)

    def _state(self) -> dict[str, dict[str, object]]:
        if not self.state_path.exists():
            return {}
        return json.loads(self.state_path.read_text())

    def _save(self, state: dict[str, dict[str, object]]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(state, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def add_checkpoint(self, body: bytes) -> tuple[int, str, str]:
        try:
            text = body.decode("utf-8", "strict")
            old, proof, cp = core.parse_consistency_proof(text, self.keys)
        except (UnicodeDecodeError, ValueError) as exc:
            return 400, "text/plain", f"malformed request: {exc}\n"
        if cp.origin not in self.logs:
            return 404, "text/plain", "unknown log origin\n"
        self.keys.set_origin(cp.origin)
        if cp.legacy or core.signature_problem(cp, self.keys) is not None:
            return 403, "text/plain", "the log's signature does not verify\n"
        if old > cp.tree_size:
            return 400, "text/plain", "old size is larger than the checkpoint\n"
        with self.lock:  # check and persist atomically (see tlog-witness)
            state = self._state()
            seen = state.get(cp.origin, {"size": 0, "root": core.EMPTY_ROOT.hex()})
            seen_size = int(seen["size"])  # type: ignore[call-overload]
            seen_root = bytes.fromhex(str(seen["root"]))
            if old != seen_size:
                return 409, "text/x.tlog.size", f"{seen_size}\n"
            if cp.tree_size == 0 and cp.root != core.EMPTY_ROOT:
                return 422, "text/plain", "an empty tree has the empty root\n"
            if old == 0:
                if proof:
                    return 422, "text/plain", "a proof from size 0 must be empty\n"
            elif not core.verify_consistency(old, cp.tree_size, seen_root, cp.root, proof):
                return 422, "text/plain", "the consistency proof does not verify\n"
            note = text.partition("\n\n")[2]
            state[cp.origin] = {"size": cp.tree_size, "root": cp.root.hex(), "note": note}
            self._save(state)
        sig = core.cosign(cp.note, self.name, self.key, int(time.time()))
        return 200, "text/plain; charset=utf-8", sig.line()


def serve(witness: Witness, host: str, port: int, prefix: str = "") -> ThreadingHTTPServer:
    """An HTTP server answering `POST <prefix>/add-checkpoint` (call serve_forever)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != prefix + "/add-checkpoint":
                self._send(404, "text/plain", "not found\n")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._send(413, "text/plain", "body too large\n")
                return
            self._send(*witness.add_checkpoint(self.rfile.read(length)))

        def _send(self, status: int, ctype: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
