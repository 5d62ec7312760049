"""CPU per request of what app/observability adds to the validation path, in-process.

    .venv/bin/python scripts/bench_observability.py [--n 200000]

Measured with CPU time (time.process_time), which a busy shared machine disturbs far
less than wall-clock throughput: the request-id middleware around a no-op WSGI app
(against the bare no-op), Metrics.api_answer for a valid validation, and the same in
prometheus-client's multi-process mode (as under gunicorn, writing mmap files).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from flask import Flask
from app.observability.logs import RequestIdMiddleware
from app.observability.metrics import Metrics
n = {n}
app = Flask("bench")
m = Metrics(app)

def noop(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

def sr(status, headers, exc_info=None):
    return None

wrapped = RequestIdMiddleware(noop, on_status=m.on_status)
env = {{"PATH_INFO": "/api/v1/keys/validate", "HTTP_X_REQUEST_ID": "bench-1"}}

def cpu(fn):
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6

out = {{
    "bare_wsgi_us": cpu(lambda: noop(dict(env), sr)),
    "middleware_wsgi_us": cpu(lambda: wrapped(dict(env), sr)),
    "api_answer_us": cpu(lambda: m.api_answer(True, 200, None, time.perf_counter(), False)),
}}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    code = CHILD.format(root=str(ROOT), n=args.n)
    results = {}
    for mode in ("single", "multiprocess"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory() as tmp:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = tmp
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        results[mode] = {k: round(v, 2) for k, v in json.loads(out).items()}
    results["load_avg_1m"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
