"""`flask audit ...`: verify, checkpoint, public-key, export, prove, consistency,
recover, prune, witness, verifier."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from app.audit import core, service
from app.audit import log as auditlog
from app.audit.verify import verify_log
from app.cli import CommandGroup
from app.extensions import db

audit = CommandGroup("audit", help="Seal, sign, verify, export and prove the audit log.")


def _anchor_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    return service.settings().anchor.path


def _keys(paths: tuple[str, ...]) -> core.KeyRing:
    keys = core.KeyRing(service.settings().origin)
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise click.ClickException(f"cannot read public key {path}: {exc}") from None
        try:
            pems, vkeys = core.load_key_text(raw.decode())
        except ValueError:  # UnicodeDecodeError included
            raise click.ClickException(
                f"{path} is not a public key: expected an Ed25519 PEM public key or a "
                "C2SP vkey line, as `flask audit public-key [--vkey]` prints"
            ) from None
        for key in pems:
            keys.add_public_key(key)
        for v in vkeys:
            keys.add_verifier(v)
    return keys


def _fail(report: core.Report) -> None:
    click.echo(report.summary(), err=True)
    sys.exit(1)


@audit.command("verify")
@click.option("--export", "export_file", type=click.Path(dir_okay=False), help="Verify an export.")
@click.option("--proof", "proof_file", type=click.Path(dir_okay=False), help="Check a proof.")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    help="Trusted PEM or vkey file; on the database, its newest checkpoint must be signed by one.",
)
@click.option("--anchor", "anchor", help="Anchor file to compare with (default: configured).")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="0: one process.")
def audit_verify(
    export_file: str | None,
    proof_file: str | None,
    public_keys: tuple[str, ...],
    anchor: str | None,
    workers: int | None,
) -> None:
    """Verify the log (or an export/proof offline); exit 1 naming the first damage."""
    if export_file or proof_file:
        if not public_keys:
            raise click.UsageError("--export and --proof need --public-key")
        keys = _keys(public_keys)
        try:
            with open(export_file or proof_file, "rb") as fh:  # type: ignore[arg-type]
                if export_file:
                    report = core.verify_export(fh, keys)
                else:
                    raw = fh.read(core.MAX_LINE).decode("utf-8", "replace")
                    report = core.verify_proof_text(raw, keys)
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
        if not report.ok:
            _fail(report)
        if proof_file:
            click.echo(
                f"inclusion proof valid: event in the log of {report.tree_size} events "
                f"with root {report.root.hex()}"
            )
        else:
            click.echo(report.summary())
        return
    keys = _keys(public_keys) if public_keys else None  # a bad file stops before the work
    report = verify_log(
        db.engine, service.settings(), anchor_path=_anchor_path(anchor), workers=workers
    )
    for warning in report.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if not report.ok:
        _fail(report)
    click.echo(report.summary())
    if keys is not None:
        _newest_checkpoint_signed_by(keys)


def _newest_checkpoint_signed_by(keys: core.KeyRing) -> None:
    """--public-key on the database: the log is intact, but is it the log the caller
    trusts? Its newest checkpoint must carry a signature by one of the keys given."""
    with db.engine.connect() as conn:
        cp = auditlog.latest_checkpoint(conn)
    if cp is None:
        click.echo("no checkpoint yet: nothing is signed by the key given", err=True)
        sys.exit(1)
    problem = core.signature_problem(cp, keys)
    if problem is not None:
        click.echo(f"not signed by the key given: {problem[1]}", err=True)
        sys.exit(1)
    click.echo(f"checkpoint {cp.index} ({cp.tree_size} events) is signed by the key given")


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Seal everything pending and sign a checkpoint now."""
    settings = service.settings()
    try:
        sealed = auditlog.seal_all(db.engine, settings, force_checkpoint=True)
    except auditlog.LogError as exc:
        click.echo(f"REFUSED to sign: {exc}. See `flask audit recover --help`.", err=True)
        sys.exit(1)
    with db.engine.connect() as conn:
        cp = auditlog.latest_checkpoint(conn)
        stopped = auditlog.halted(conn)
    assert cp is not None
    line = (
        f"sealed {sealed} events; checkpoint {cp.index}: {cp.tree_size} events, "
        f"root {cp.root.hex()}, key {cp.key_id}, {cp.time}"
    )
    if stopped:
        # Signed, then refused by a witness (or halted meanwhile): not a success.
        click.echo(f"{line}\nHALTED: {stopped}. See `flask audit recover --help`.", err=True)
        sys.exit(1)
    click.echo(line)


@audit.command("public-key")
@click.option("--all", "show_all", is_flag=True, help="Also print the trusted old keys.")
@click.option("--vkey", "as_vkey", is_flag=True, help="Print the C2SP verifier key instead.")
def audit_public_key(show_all: bool, as_vkey: bool) -> None:
    """Print the checkpoint signing public key (PEM, or --vkey), with its key id."""
    settings = service.settings()
    if as_vkey:
        click.echo(settings.signer.vkey)
        return
    current = core.legacy_key_id(settings.signer.public)
    for kid, key in sorted(settings.trusted.legacy.items()):
        if kid == current or show_all:
            note_id = core.note_key_id(settings.origin, key).hex()
            label = " (current)" if kid == current else ""
            click.echo(f"# key id {note_id} (format-1 id {kid}){label}")
            click.echo(core.public_key_pem(key), nl=False)


@audit.command("export")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--consistency-from",
    type=click.IntRange(min=1),
    default=None,
    help="Add a consistency proof from this earlier tree size (below --since).",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-")
def audit_export(since: int, consistency_from: int | None, output: str) -> None:
    """Write events from SEQ, checkpoints and the log's vkey as JSON lines."""
    settings = service.settings()
    out = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with db.engine.connect() as conn:
            for line in auditlog.export_lines(conn, settings, since, consistency_from):
                out.write(line)
    finally:
        if out is not sys.stdout:
            out.close()


@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=0))
def audit_prove(seq: int) -> None:
    """Print event SEQ's inclusion proof (C2SP tlog-proof) against the latest checkpoint."""
    with db.engine.connect() as conn:
        try:
            proof = auditlog.inclusion_proof(conn, seq)
        except auditlog.LogError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(proof["text"], nl=False)


@audit.command("consistency")
@click.argument("old", type=click.IntRange(min=0))
@click.argument("new", type=click.IntRange(min=0), required=False)
def audit_consistency(old: int, new: int | None) -> None:
    """Print an RFC 9162 consistency proof from tree size OLD to the signed checkpoint
    of size NEW (default: the latest)."""
    with db.engine.connect() as conn:
        try:
            click.echo(auditlog.consistency_proof(conn, old, new), nl=False)
        except auditlog.LogError as exc:
            raise click.ClickException(str(exc)) from None


@audit.command("recover")
@click.option(
    "--export",
    "export_file",
    type=click.Path(dir_okay=False, exists=True),
    help="An export holding the events and checkpoints the database lost.",
)
@click.option(
    "--new-anchor",
    is_flag=True,
    help="Start a new anchor from the database's newest checkpoint (only when the "
    "anchor is missing, empty, unreadable or forged; recorded in the audit log).",
)
def audit_recover(export_file: str | None, new_anchor: bool) -> None:
    """Lift the fork-protection halt once the log again extends the anchor.

    Restore the lost events first (a newer backup, or --export FILE from an export
    taken before the loss); the halt is cleared only if the rebuilt tree extends the
    anchor's newest checkpoint and what every configured witness last cosigned. The
    procedure is in docs/audit.md."""
    from app.audit import trail

    settings = service.settings()
    lines = Path(export_file).read_bytes().splitlines(keepends=True) if export_file else None
    try:
        message = auditlog.recover(db.engine, settings, lines, new_anchor=new_anchor)
    except auditlog.LogError as exc:
        click.echo(f"cannot recover: {exc}", err=True)
        sys.exit(1)
    if new_anchor:
        trail.record(
            db.session,
            "audit.anchor_restarted",
            actor="cli",
            sensitivity="critical",
            details={"anchor": str(settings.anchor.path)},
        )
        db.session.commit()
    click.echo(message)


@audit.command("prune")
@click.option("--before", required=True, help="UTC date (YYYY-MM-DD) or ISO time.")
@click.option(
    "--dry-run", is_flag=True, help="Say how many events would be pruned; change nothing."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def audit_prune(before: str, dry_run: bool, yes: bool) -> None:
    """Drop the payloads of sealed events older than DATE; leaf hashes stay.

    DATE may not be later than the newest checkpoint: pruning reaches only what a
    checkpoint covers. Asks before changing anything unless --yes."""
    try:
        when = datetime.fromisoformat(before)
    except ValueError:
        raise click.BadParameter("not an ISO date", param_hint="--before") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        count, _ = auditlog.prune_plan(db.engine, when)
    except auditlog.PruneError as exc:
        raise click.BadParameter(str(exc), param_hint="--before") from None
    cut = core.format_time(when)
    if dry_run:
        click.echo(f"would prune the payloads of {count} events recorded before {cut}")
        return
    if count and not yes:
        click.confirm(
            f"Drop the payloads of {count} events recorded before {cut}? Leaf hashes stay; "
            "the contents cannot be brought back",
            abort=True,
        )
    from app.audit import trail

    count = auditlog.prune(db.engine, when)
    trail.record(
        db.session,
        "audit.pruned",
        actor="cli",
        sensitivity="high",
        details={"before": cut, "events": count},
    )
    db.session.commit()
    click.echo(f"pruned the payloads of {count} events recorded before {cut}")


@audit.command("witness")
@click.option("--name", required=True, help="The witness's key name, e.g. witness.example/w1.")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False))
@click.option("--state", "state_file", required=True, type=click.Path(dir_okay=False))
@click.option("--log-vkey", "log_vkeys", multiple=True, help="vkey of a log to witness.")
@click.option("--listen", default="127.0.0.1:0", show_default=True)
@click.option("--print-vkey", is_flag=True, help="Print the witness's vkey and exit.")
def audit_witness(
    name: str,
    key_file: str,
    state_file: str,
    log_vkeys: tuple[str, ...],
    listen: str,
    print_vkey: bool,
) -> None:
    """Run a C2SP tlog-witness for the logs given (POST /add-checkpoint, GET of the
    latest cosigned checkpoint)."""
    from app.audit import witness as witness_mod

    key = witness_mod.load_or_create_key(Path(key_file))
    try:
        logs = [core.parse_vkey(v) for v in log_vkeys]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--log-vkey") from None
    w = witness_mod.Witness(name, key, Path(state_file), logs)
    if print_vkey:
        click.echo(w.vkey)
        return
    if not logs:
        raise click.UsageError("give at least one --log-vkey")
    host, _, port = listen.rpartition(":")
    server = witness_mod.serve(w, host or "127.0.0.1", int(port))
    click.echo(f"witness {w.vkey} listening on http://{host}:{server.server_address[1]}", err=True)
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


@audit.command("verifier")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-")
def audit_verifier(output: str) -> None:
    """Build the offline verifier: one zipapp file (standard library + cryptography),
    run as `python keyledger_verify.pyz export FILE ...`."""
    from app.audit.bundle import build_verifier

    if output == "-":
        buffer = io.BytesIO()
        build_verifier(buffer)
        click.get_binary_stream("stdout").write(buffer.getvalue())
    else:
        build_verifier(Path(output))
        click.echo(f"offline verifier written to {output}", err=True)
