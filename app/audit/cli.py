"""`flask audit ...`: verify, checkpoint, public-key, export, prove."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from app.audit import log as auditlog
from app.audit import offline, service
from app.audit.verify import verify_log
from app.extensions import db

audit = AppGroup("audit", help="Seal, sign, verify, export and prove the audit log.")


def _anchor_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    return service.settings().anchor.path


def _keys(paths: tuple[str, ...]) -> dict:
    keys: dict = {}
    for path in paths:
        try:
            keys.update(offline.load_public_keys(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot read public key {path}: {exc}") from None
    return keys


@audit.command("verify")
@click.option("--export", "export_file", type=click.Path(dir_okay=False), help="Verify an export.")
@click.option("--proof", "proof_file", type=click.Path(dir_okay=False), help="Check a proof.")
@click.option("--public-key", "public_keys", multiple=True, help="Trusted public key PEM file.")
@click.option("--anchor", "anchor", help="Anchor file to compare with (default: configured).")
def audit_verify(
    export_file: str | None,
    proof_file: str | None,
    public_keys: tuple[str, ...],
    anchor: str | None,
) -> None:
    """Verify the log (or an export/proof offline); exit 1 naming the first damage."""
    if export_file or proof_file:
        if not public_keys:
            raise click.UsageError("--export and --proof need --public-key")
        keys = _keys(public_keys)
        try:
            with open(export_file or proof_file, "rb") as fh:  # type: ignore[arg-type]
                if export_file:
                    report = offline.verify_export(fh, keys)
                else:
                    try:
                        doc = offline.strict_loads(fh.read(offline.MAX_LINE).decode())
                    except (UnicodeDecodeError, ValueError, RecursionError):
                        doc = None
                    report = offline.verify_proof(doc, keys)
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        report = verify_log(db.engine, service.settings(), anchor_path=_anchor_path(anchor))
    if not report.ok:
        click.echo(report.summary(), err=True)
        sys.exit(1)
    if proof_file:
        click.echo(
            f"inclusion proof valid: event {json.loads(Path(proof_file).read_text())['seq']} "
            f"is in the log of {report.tree_size} events with root {report.root.hex()}"
        )
    else:
        click.echo(report.summary())


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Seal everything pending and sign a checkpoint now."""
    settings = service.settings()
    sealed = auditlog.seal_all(db.engine, settings, force_checkpoint=True)
    with db.engine.connect() as conn:
        cp = auditlog.latest_checkpoint(conn)
    assert cp is not None
    click.echo(
        f"sealed {sealed} events; checkpoint {cp.index}: {cp.tree_size} events, "
        f"root {cp.root.hex()}, key {cp.key_id}, {cp.time}"
    )


@audit.command("public-key")
@click.option("--all", "show_all", is_flag=True, help="Also print the trusted old keys.")
def audit_public_key(show_all: bool) -> None:
    """Print the checkpoint signing public key (PEM), with its key id."""
    settings = service.settings()
    for kid, key in sorted(settings.trusted.items()):
        if kid == settings.signer.key_id or show_all:
            click.echo(f"# key id {kid}" + (" (current)" if kid == settings.signer.key_id else ""))
            click.echo(offline.public_key_pem(key), nl=False)


@audit.command("export")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="-")
def audit_export(since: int, output: str) -> None:
    """Write events from SEQ, checkpoints and public keys as JSON lines."""
    settings = service.settings()
    out = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with db.engine.connect() as conn:
            for line in auditlog.export_lines(conn, settings, since):
                out.write(line)
    finally:
        if out is not sys.stdout:
            out.close()


@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=0))
def audit_prove(seq: int) -> None:
    """Print an inclusion proof (JSON) for event SEQ against the latest checkpoint."""
    with db.engine.connect() as conn:
        try:
            proof = auditlog.inclusion_proof(conn, seq)
        except auditlog.LogError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(proof, indent=2, sort_keys=True))
