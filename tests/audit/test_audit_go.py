"""The log checked from outside with Go's own golang.org/x/mod/sumdb/note and
sumdb/tlog (tests/audit/gocheck): signed checkpoints, inclusion proofs and
consistency proofs verify, and altered ones do not. Needs `go` and the x/mod source
(Debian: golang-go, golang-golang-x-mod-dev); skipped without them unless
KEYLEDGER_REQUIRE_GO=1 (then missing tools fail the test)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from audit_helpers import build_log

HERE = Path(__file__).resolve().parent
GOPATH = Path("/usr/share/gocode")
# Builds the Go checker first (pytest-timeout: pyproject).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def gocheck(tmp_path_factory) -> Path:
    have = shutil.which("go") and (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir()
    if not have:
        if os.environ.get("KEYLEDGER_REQUIRE_GO") == "1":
            pytest.fail(
                "go or golang.org/x/mod is missing (apt-get install golang-go "
                "golang-golang-x-mod-dev)"
            )
        pytest.skip("go or golang.org/x/mod is not installed")
    out = tmp_path_factory.mktemp("gocheck")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(out / "cache"),
        "GOFLAGS": "",
    }
    subprocess.run(
        ["go", "build", "-o", str(out / "gocheck"), str(HERE / "gocheck" / "main.go")],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    return out / "gocheck"


def _go(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


def test_go_sumdb_note_and_tlog_verify_checkpoints_and_proofs(app, client, gocheck, tmp_path):
    build_log(app, (5, 7, 9))
    runner = app.test_cli_runner()
    vkey = runner.invoke(args=["audit", "public-key", "--vkey"]).output.strip()
    note = tmp_path / "checkpoint.txt"
    note.write_text(client.get("/audit/checkpoint").get_data(as_text=True))
    done = _go(gocheck, "note", vkey, str(note))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("21 ")
    note.write_text(note.read_text().replace("\n21\n", "\n22\n"))
    assert _go(gocheck, "note", vkey, str(note)).returncode == 1

    for seq in (0, 4, 5, 11, 20):
        proof = tmp_path / f"proof-{seq}.txt"
        proof.write_text(runner.invoke(args=["audit", "prove", str(seq)]).output)
        done = _go(gocheck, "inclusion", vkey, str(proof))
        assert done.returncode == 0, (seq, done.stderr)
    lines = proof.read_text().split("\n")
    lines[2] = "index 19"  # the event bytes of 20 claimed at 19
    proof.write_text("\n".join(lines))
    assert _go(gocheck, "inclusion", vkey, str(proof)).returncode == 1

    for old, new in ((5, 12), (5, 21), (12, 21)):
        trusted = tmp_path / f"cp-{old}.txt"
        body = client.get(f"/audit/consistency?old=0&new={old}").get_data(as_text=True)
        trusted.write_text(body.split("\n\n", 1)[1])
        proof = tmp_path / f"consistency-{old}-{new}.txt"
        proof.write_text(
            client.get(f"/audit/consistency?old={old}&new={new}").get_data(as_text=True)
        )
        done = _go(gocheck, "consistency", vkey, str(trusted), str(proof))
        assert done.returncode == 0, (old, new, done.stderr)
    # A proof line altered: Go refuses it.
    head, _, rest = proof.read_text().partition("\n")
    tail = rest.partition("\n")[2]
    proof.write_text(f"{head}\n{'A' * 43}=\n{tail}")
    assert _go(gocheck, "consistency", vkey, str(trusted), str(proof)).returncode == 1
