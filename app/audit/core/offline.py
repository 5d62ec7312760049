"""Offline verifier for Keyledger audit exports, proofs, consistency proofs and receipts.

The auditor's command line over this package. `flask audit verifier -o
keyledger_verify.pyz` builds the package into one zipapp file (standard library
and `cryptography` only; see app/audit/bundle.py):

    python keyledger_verify.pyz export FILE --public-key KEY.pem [--trusted-checkpoint CP]
    python keyledger_verify.pyz proof FILE --vkey VKEY [--leaf-hash HEX]
    python keyledger_verify.pyz consistency FILE --trusted-checkpoint CP --vkey VKEY
    python keyledger_verify.pyz receipt FILE --vkey VKEY
    python keyledger_verify.pyz note FILE --vkey VKEY

(or `python -m app.audit.core` in a checkout). Add `--witness VKEY` (repeatable) and
`--min-witnesses N` to require cosignatures, and `--workers N` to say how many
processes check an export's events. The app never imports this module.
Exit 0 when intact, 1 when not, 2 on a usage error.
"""

from __future__ import annotations

import sys

from .checkpoints import (
    Checkpoint,
    checkpoint_from_json,
    parse_signed_checkpoint,
    signature_problem,
    valid_cosigners,
)
from .events import strict_loads
from .export import verify_export_file
from .fold import Trusted
from .notes import MAX_LINE, SIG_COSIGNATURE, KeyRing, load_key_text, parse_vkey
from .proofs import verify_consistency_text, verify_proof_text, verify_receipts
from .report import Damage, Report


def _keyring(args) -> KeyRing:
    keys = KeyRing()
    for path in args.public_key or []:
        with open(path, encoding="utf-8") as fh:
            pems, vkeys = load_key_text(fh.read())
        for key in pems:
            keys.add_public_key(key)
        for v in vkeys:
            keys.add_verifier(v)
    for text in args.vkey or []:
        keys.add_verifier(parse_vkey(text))
    for text in args.witness or []:
        witness = parse_vkey(text)
        if witness.sig_type != SIG_COSIGNATURE:
            raise ValueError("a witness vkey has signature type 0x04")
        keys.add_verifier(witness)
    if not keys.has_log_keys():
        raise ValueError("give the log's key: --public-key PEM or --vkey VKEY")
    return keys


def _trusted(path: str, keys: KeyRing) -> Checkpoint:
    with open(path, encoding="utf-8") as fh:
        text = fh.read(MAX_LINE + 1)
    try:
        cp = (
            checkpoint_from_json(strict_loads(text))
            if text.lstrip().startswith("{")
            else parse_signed_checkpoint(text, keys)
        )
    except ValueError as exc:
        raise ValueError(f"trusted checkpoint: {exc}") from None
    keys.set_origin(cp.origin)
    problem = signature_problem(cp, keys)
    if problem:
        raise ValueError(f"trusted checkpoint: {problem[1]}")
    return cp


def _count(text: str) -> int:
    import argparse

    if not text.isdigit():
        raise argparse.ArgumentTypeError("not a whole number, 0 or more")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Verify Keyledger audit log material offline.")
    parser.add_argument("what", choices=("export", "proof", "consistency", "receipt", "note"))
    parser.add_argument("file")
    parser.add_argument("--public-key", action="append", metavar="FILE", help="PEM or vkey file")
    parser.add_argument("--vkey", action="append", metavar="VKEY", help="the log's verifier key")
    parser.add_argument("--witness", action="append", metavar="VKEY", help="a witness's vkey")
    parser.add_argument("--min-witnesses", type=int, default=0, metavar="N")
    parser.add_argument("--trusted-checkpoint", metavar="FILE")
    parser.add_argument("--leaf-hash", metavar="HEX", help="for a proof without event bytes")
    parser.add_argument(
        "--workers",
        type=_count,
        metavar="N",
        help="processes checking an export's events (default: one per core for a big "
        "file; 0: none, this process only)",
    )
    args = parser.parse_args(argv)
    try:
        keys = _keyring(args)
        trusted = _trusted(args.trusted_checkpoint, keys) if args.trusted_checkpoint else None
        leaf = bytes.fromhex(args.leaf_hash) if args.leaf_hash else None
    except (OSError, ValueError) as exc:
        print(f"cannot read public key or checkpoint: {exc}", file=sys.stderr)
        return 2
    if args.what == "consistency" and trusted is None:
        print("consistency needs --trusted-checkpoint", file=sys.stderr)
        return 2
    try:
        if args.what == "export":
            report = verify_export_file(
                args.file,
                keys,
                trusted=Trusted(trusted.tree_size, trusted.root) if trusted else None,
                min_witnesses=args.min_witnesses,
                workers=args.workers,
            )
        else:
            with open(args.file, "rb") as fh:
                raw = fh.read(MAX_LINE + 1)
            try:
                text = raw.decode("utf-8", "strict")
            except UnicodeDecodeError:
                text = ""
            report = _check_document(args.what, text, keys, trusted, leaf, args.min_witnesses)
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if report.ok and args.what != "export":
        print(_ok_line(args.what, report))
    else:
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _check_document(
    what: str,
    text: str,
    keys: KeyRing,
    trusted: Checkpoint | None,
    leaf: bytes | None,
    min_witnesses: int,
) -> Report:
    if what == "proof":
        return verify_proof_text(text, keys, leaf, min_witnesses)
    if what == "consistency":
        assert trusted is not None
        return verify_consistency_text(text, keys, trusted)
    if what == "receipt":
        try:
            doc = strict_loads(text)
        except (ValueError, RecursionError):
            doc = None
        return verify_receipts(doc, keys, min_witnesses)
    report = Report(ok=False)
    try:
        try:
            cp = parse_signed_checkpoint(text, keys)
        except ValueError as exc:
            raise Damage("malformed", str(exc)) from None
        keys.set_origin(cp.origin)
        problem = signature_problem(cp, keys)
        if problem:
            raise Damage(*problem)
        names = valid_cosigners(cp, keys)
        if len(names) < min_witnesses:
            raise Damage("witnesses_missing", f"{len(names)} valid cosignatures")
        report.ok, report.tree_size, report.root = True, cp.tree_size, cp.root
        report.notes = names
    except Damage as damage:
        report.damage = damage
    return report


def _ok_line(what: str, report: Report) -> str:
    if what == "proof":
        return (
            f"inclusion proof valid: event in a log of {report.tree_size} events, "
            f"root {report.root.hex()}, signed at {report.last_checkpoint_time}"
        )
    if what == "consistency":
        return f"consistency proof valid: the log of {report.tree_size} events extends it"
    if what == "receipt":
        return f"receipts valid: {report.events} events in a log of {report.tree_size}"
    cosigners = f", cosigned by {', '.join(report.notes)}" if report.notes else ""
    return f"checkpoint valid: {report.tree_size} events, root {report.root.hex()}{cosigners}"
