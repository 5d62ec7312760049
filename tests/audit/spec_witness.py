"""A tlog-witness written from the C2SP text alone (tlog-witness, tlog-cosignature,
signed-note, tlog-checkpoint), not from this project's code: standard library and
`cryptography` only, run in its own process by the tests.

    python spec_witness.py NAME LOG_VKEY REQUESTS_FILE [--no-monitoring]

Prints its vkey and URL on one line, then serves. Appends the Content-Type of each
add-checkpoint request to REQUESTS_FILE. --no-monitoring: GET answers 404 always.
"""

import base64
import hashlib
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def consistent(m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2, step by step."""
    if m == n:
        return r1 == r2 and not proof
    if m == 0 or m > n or not proof:
        return False
    if m & (m - 1) == 0:
        proof = [r1, *proof]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == r1 and sr == r2


NAME, LOG_VKEY, REQUESTS = sys.argv[1:4]
MONITORING = "--no-monitoring" not in sys.argv
key = Ed25519PrivateKey.generate()
pub = key.public_key().public_bytes_raw()
KID = hashlib.sha256(NAME.encode() + b"\n\x04" + pub).digest()[:4]
VKEY = NAME + "+" + KID.hex() + "+" + base64.b64encode(b"\x04" + pub).decode()
log_name, log_kid, log_raw = LOG_VKEY.split("+", 2)
log_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(log_raw)[1:])
state = {"size": 0, "root": hashlib.sha256(b"").digest(), "note": None}
lock = threading.Lock()


def add_checkpoint(body: str) -> tuple[int, str, str]:
    head, _, note = body.partition("\n\n")
    lines = head.split("\n")
    old = int(lines[0].removeprefix("old "))
    proof = [base64.b64decode(x) for x in lines[1:]]
    cut = note.rindex("\n\n")
    text, sig_lines = note[: cut + 1], note[cut + 2 :].splitlines()
    origin, size, root = text.split("\n")[:3]
    size, root = int(size), base64.b64decode(root)
    if origin != log_name:
        return 404, "text/plain", "unknown origin\n"
    signed = False
    for line in sig_lines:
        name, b64 = line.removeprefix("\u2014 ").split(" ")
        raw = base64.b64decode(b64)
        if name == log_name and raw[:4].hex() == log_kid:
            try:
                log_key.verify(raw[4:], text.encode())
            except Exception:
                return 403, "text/plain", "bad signature\n"
            signed = True
    if not signed:
        return 403, "text/plain", "no trusted signature\n"
    if old > size:
        return 400, "text/plain", "old > size\n"
    with lock:
        if old != state["size"]:
            return 409, "text/x.tlog.size", f"{state['size']}\n"
        if old and not consistent(old, size, state["root"], root, proof):
            return 422, "text/plain", "inconsistent\n"
        now = int(time.time())
        msg = f"cosignature/v1\ntime {now}\n".encode() + text.encode()
        sig = KID + struct.pack(">Q", now) + key.sign(msg)
        line = f"\u2014 {NAME} {base64.b64encode(sig).decode()}\n"
        state.update(size=size, root=root, note=note + line)
    return 200, "text/plain; charset=utf-8", line


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        with open(REQUESTS, "a") as fh:
            fh.write(f"{self.headers.get('Content-Type')}\n")
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.send(*add_checkpoint(body))

    def do_GET(self) -> None:
        want = "/" + hashlib.sha256(log_name.encode()).hexdigest() + "/checkpoint"
        if MONITORING and self.path == want and state["note"]:
            self.send(200, "text/plain; charset=utf-8", state["note"])
        else:
            self.send(404, "text/plain", "not found\n")

    def send(self, status: int, ctype: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(VKEY, f"http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
