"""Offline verifier for Keyledger audit exports, proofs, consistency proofs and receipts.

The command line around app/audit/core.py. Run it next to core.py, or as the one
file `flask audit verifier -o keyledger_verify.py` writes (core and this command in
one, standard library and `cryptography` only):

    python keyledger_verify.py export FILE --public-key KEY.pem [--trusted-checkpoint CP]
    python keyledger_verify.py proof FILE --vkey VKEY [--leaf-hash HEX]
    python keyledger_verify.py consistency FILE --trusted-checkpoint CP --vkey VKEY
    python keyledger_verify.py receipt FILE --vkey VKEY
    python keyledger_verify.py note FILE --vkey VKEY

Add `--witness VKEY` (repeatable) and `--min-witnesses N` to require cosignatures,
and `--workers N` to say how many processes check an export's events.
The app never imports this file. Exit 0 when intact, 1 when not, 2 on a usage error.
"""

from __future__ import annotations

import sys

# >>> core import (replaced by the core's source in the generated single file)
try:
    from app.audit import core
except ImportError:  # copied next to core.py
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import core  # type: ignore[no-redef]
# <<< core import


def _keyring(args) -> core.KeyRing:
    keys = core.KeyRing()
    for path in args.public_key or []:
        with open(path, encoding="utf-8") as fh:
            pems, vkeys = core.load_key_text(fh.read())
        for key in pems:
            keys.add_public_key(key)
        for v in vkeys:
            keys.add_verifier(v)
    for text in args.vkey or []:
        keys.add_verifier(core.parse_vkey(text))
    for text in args.witness or []:
        witness = core.parse_vkey(text)
        if witness.sig_type != core.SIG_COSIGNATURE:
            raise ValueError("a witness vkey has signature type 0x04")
        keys.add_verifier(witness)
    if not keys.has_log_keys():
        raise ValueError("give the log's key: --public-key PEM or --vkey VKEY")
    return keys


def _trusted(path: str, keys: core.KeyRing) -> core.Checkpoint:
    with open(path, encoding="utf-8") as fh:
        text = fh.read(core.MAX_LINE + 1)
    try:
        cp = (
            core.checkpoint_from_json(core.strict_loads(text))
            if text.lstrip().startswith("{")
            else core.parse_signed_checkpoint(text, keys)
        )
    except ValueError as exc:
        raise ValueError(f"trusted checkpoint: {exc}") from None
    keys.set_origin(cp.origin)
    problem = core.signature_problem(cp, keys)
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
            report = core.verify_export_file(
                args.file,
                keys,
                trusted=core.Trusted(trusted.tree_size, trusted.root) if trusted else None,
                min_witnesses=args.min_witnesses,
                workers=args.workers,
            )
        else:
            with open(args.file, "rb") as fh:
                raw = fh.read(core.MAX_LINE + 1)
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
    keys: core.KeyRing,
    trusted: core.Checkpoint | None,
    leaf: bytes | None,
    min_witnesses: int,
) -> core.Report:
    if what == "proof":
        return core.verify_proof_text(text, keys, leaf, min_witnesses)
    if what == "consistency":
        assert trusted is not None
        return core.verify_consistency_text(text, keys, trusted)
    if what == "receipt":
        try:
            doc = core.strict_loads(text)
        except (ValueError, RecursionError):
            doc = None
        return core.verify_receipts(doc, keys, min_witnesses)
    report = core.Report(ok=False)
    try:
        try:
            cp = core.parse_signed_checkpoint(text, keys)
        except ValueError as exc:
            raise core.Damage("malformed", str(exc)) from None
        keys.set_origin(cp.origin)
        problem = core.signature_problem(cp, keys)
        if problem:
            raise core.Damage(*problem)
        names = core.valid_cosigners(cp, keys)
        if len(names) < min_witnesses:
            raise core.Damage("witnesses_missing", f"{len(names)} valid cosignatures")
        report.ok, report.tree_size, report.root = True, cp.tree_size, cp.root
        report.notes = names
    except core.Damage as damage:
        report.damage = damage
    return report


def _ok_line(what: str, report: core.Report) -> str:
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


if __name__ == "__main__":
    sys.exit(main())
