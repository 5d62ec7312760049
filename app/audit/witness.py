"""A C2SP tlog-witness that an outside party can run (`flask audit witness`).

A general witness: it follows any log it is given a vkey for, and takes any
tlog-checkpoint (origin, size, root and whatever extension lines the log adds). It
keeps its own Ed25519 key and a state file (the latest checkpoint it cosigned per
origin) and answers `POST <prefix>/add-checkpoint` as tlog-witness says: 404 for an
unknown origin, 403 without a valid signature by a trusted key for it, 400 for an
old size beyond the checkpoint, 409 with its size as `text/x.tlog.size` when the
old size is not its latest, 422 when the proof does not verify, and otherwise
persists the checkpoint atomically and only then returns a tlog-cosignature/v1 line.
`GET <prefix>/<sha256(origin) hex>/checkpoint` serves the latest checkpoint it
cosigned, with its cosignature (the monitoring interface; 404 before the first).
Standard library and app.audit.core only: no Flask, no database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import core

MAX_BODY = 1 << 16
_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")


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
        self.logs: dict[str, list[core.Verifier]] = {}
        for v in logs:
            self.logs.setdefault(v.name, []).append(v)
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

    def _log_signed(self, origin: str, body: bytes, sigs: list[core.Signature]) -> bool:
        """True when a signature line by a trusted key for `origin` verifies; False
        when none does or one by a trusted key fails (a malformed note)."""
        trusted = {v.key_id: v for v in self.logs[origin]}
        good = False
        for sig in sigs:
            v = trusted.get(sig.key_id)
            if sig.name != origin or v is None:
                continue  # unknown keys are ignored
            try:
                v.key.verify(sig.data, body)
            except InvalidSignature:
                return False
            good = True
        return good

    def add_checkpoint(self, body: bytes) -> tuple[int, str, str]:
        try:
            text = body.decode("utf-8", "strict")
            old, proof, note = _parse_request(text)
            cp_body, sigs = core.split_signed_note(note)
            origin, size, root = core.parse_tlog_checkpoint(cp_body)
        except (UnicodeDecodeError, ValueError) as exc:
            return 400, "text/plain", f"malformed request: {exc}\n"
        if origin not in self.logs:
            return 404, "text/plain", "unknown log origin\n"
        if not self._log_signed(origin, cp_body, sigs):
            return 403, "text/plain", "no valid signature by a trusted key for this log\n"
        if old > size:
            return 400, "text/plain", "old size is larger than the checkpoint\n"
        with self.lock:  # check and persist atomically (see tlog-witness)
            state = self._state()
            seen = state.get(origin, {"size": 0, "root": core.EMPTY_ROOT.hex()})
            seen_size = int(seen["size"])  # type: ignore[call-overload]
            seen_root = bytes.fromhex(str(seen["root"]))
            if old != seen_size:
                return 409, "text/x.tlog.size", f"{seen_size}\n"
            if size == 0 and root != core.EMPTY_ROOT:
                return 422, "text/plain", "an empty tree has the empty root\n"
            if old == 0:
                if proof:
                    return 422, "text/plain", "a proof from size 0 must be empty\n"
            elif old == size:
                if proof or root != seen_root:
                    return 422, "text/plain", "same size, another root\n"
            elif not core.verify_consistency(old, size, seen_root, root, proof):
                return 422, "text/plain", "the consistency proof does not verify\n"
            sig = core.cosign(cp_body, self.name, self.key, int(time.time())).line()
            state[origin] = {"size": size, "root": root.hex(), "note": note, "cosignature": sig}
            self._save(state)
        return 200, "text/plain; charset=utf-8", sig

    def latest(self, origin_hash: str) -> tuple[int, str, str]:
        """The latest checkpoint cosigned for the log whose origin hashes to this,
        with the log's signatures it verified and its own cosignature."""
        for origin, seen in self._state().items():
            if hashlib.sha256(origin.encode()).hexdigest() == origin_hash and "note" in seen:
                note, cosig = str(seen["note"]), str(seen.get("cosignature", ""))
                return 200, "text/plain; charset=utf-8", note + cosig
        return 404, "text/plain", "no checkpoint cosigned for this log\n"


def _parse_request(text: str) -> tuple[int, list[bytes], str]:
    """tlog-witness add-checkpoint body: `old N`, up to 63 proof lines, a blank line,
    then the signed checkpoint."""
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ValueError("no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise ValueError("first line is not `old <size>`")
    old = core.parse_decimal(lines[0][4:], "old size")
    if len(lines) - 1 > core.MAX_PROOF:
        raise ValueError("more than 63 proof lines")
    return old, [core.parse_b64_hash(line, "proof hash") for line in lines[1:]], note


def serve(witness: Witness, host: str, port: int, prefix: str = "") -> ThreadingHTTPServer:
    """An HTTP server answering `POST <prefix>/add-checkpoint` and
    `GET <prefix>/<origin hash>/checkpoint` (call serve_forever)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.removeprefix(prefix).split("/")
            if (
                not self.path.startswith(prefix + "/")
                or len(parts) != 3
                or parts[2] != "checkpoint"
                or not _ORIGIN_HASH.fullmatch(parts[1])
            ):
                self._send(404, "text/plain", "not found\n")
                return
            self._send(*witness.latest(parts[1]))

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
