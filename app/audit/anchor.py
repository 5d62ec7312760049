"""The outside anchor: every checkpoint also goes somewhere the database cannot reach.

Default: each checkpoint's C2SP signed note, followed by one blank line, appended to
instance/audit_anchor.jsonl (AUDIT_ANCHOR_PATH; the name predates the text form and
format-1 anchors hold one JSON line per checkpoint, which the reader still accepts).
AUDIT_ANCHOR_COMMAND, when set, is run once per checkpoint with the same text on its
standard input, to push it to a WORM store. A database restored from an older copy is
caught because the anchor holds checkpoints the database no longer has, and the
sealer refuses to sign a checkpoint that does not extend the anchor's newest. When
witnesses cosign a checkpoint, it is appended once more with their cosignature lines,
so what they vouched for is held outside the database as well.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.audit import core

log = logging.getLogger(__name__)
TAIL = 1 << 16


def anchor_entry(cp: core.Checkpoint) -> str:
    """One anchor entry: the signed note, then a blank line."""
    return cp.signed_note() + "\n"


@dataclass(frozen=True)
class Anchor:
    path: Path | None
    command: str | None = None

    def append(self, cp: core.Checkpoint) -> None:
        """Write one checkpoint out. Failures are logged, never raised: the checkpoint is
        already committed, and `verify` reports checkpoints missing from the anchor."""
        entry = anchor_entry(cp)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    os.write(fd, entry.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                log.exception("could not append checkpoint %s to %s", cp.index, self.path)
        if self.command:
            try:
                subprocess.run(  # noqa: S603 - the operator's own configured command
                    shlex.split(self.command),
                    input=entry.encode(),
                    check=True,
                    timeout=30,
                    capture_output=True,
                )
            except (OSError, subprocess.SubprocessError):
                log.exception("anchor command failed for checkpoint %s", cp.index)

    def newest(self) -> core.Checkpoint | None:
        """The last checkpoint in the anchor file (read from its tail only), or None.
        Raises ValueError when the tail is not a well-formed entry."""
        if self.path is None or not self.path.exists():
            return None
        with self.path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(max(0, end - TAIL))
            tail = fh.read()
        if not tail:
            return None
        try:
            text = tail.decode("utf-8", "strict")
        except UnicodeDecodeError:
            text = tail[tail.find(b"\n") + 1 :].decode("utf-8", "strict")
        lines = text.split("\n")
        if end > TAIL:  # the tail starts mid-entry: resume after a closing blank line
            cut = next(
                (
                    i
                    for i in range(1, len(lines))
                    if lines[i] == "" and lines[i - 1][:2] == "\u2014 "
                ),
                0,
            )
            lines = lines[cut + 1 :]
        if lines and lines[-1] == "":
            lines.pop()  # the text's final newline
        entries = list(_entries(lines))
        if not entries:
            return None
        item = entries[-1][1]
        if isinstance(item, str):
            raise ValueError(f"anchor's last entry: {item}")
        # A cosigned copy of a checkpoint is appended when its witnesses answer, which
        # can be after a later checkpoint: the newest is the highest index, and of its
        # copies the last (the one with the cosignatures).
        newest = item
        for _, other in entries:
            if not isinstance(other, str) and other.index >= newest.index:
                newest = other
        return newest


def _entries(lines: Iterable[str]) -> Iterator[tuple[int, core.Checkpoint | str]]:
    """Entries from anchor lines (without their newlines): a format-1 JSON line, or
    signed-note text lines, a blank line, signature lines and a closing blank line."""
    buf: list[str] = []
    start = 0
    in_signatures = False
    for number, line in enumerate(lines, 1):
        if not buf:
            start = number
            if line.startswith("{"):
                try:
                    obj = core.strict_loads(line)
                    if not isinstance(obj, dict) or obj.get("type") != "checkpoint":
                        raise ValueError("not a checkpoint line")
                    yield (
                        number,
                        core.checkpoint_from_json(
                            {"note": obj.get("note"), "signature": obj.get("signature")}
                        ),
                    )
                except (ValueError, RecursionError) as exc:
                    yield number, str(exc)
                continue
        buf.append(line)
        if len(buf) > 4 * core.MAX_SIGNATURES:
            yield start, "entry too long"
            return
        if line == "":
            if not in_signatures:
                in_signatures = True
                continue
            try:
                yield start, core.parse_signed_checkpoint("\n".join(buf[:-1]) + "\n")
            except ValueError as exc:
                yield start, str(exc)
            buf, in_signatures = [], False
    if buf:
        yield start, "the last entry does not end with a blank line"


def _lines(raw: Iterable[bytes]) -> Iterator[str]:
    for line in raw:
        if len(line) > core.MAX_LINE:
            raise ValueError("anchor line too long")
        text = line.decode("utf-8", "strict")
        if text.endswith("\r\n"):
            raise ValueError("anchor holds a CR")
        yield text.removesuffix("\n")


def read_anchor(path: Path) -> Iterator[tuple[int, core.Checkpoint | str]]:
    """(line number, checkpoint) or (line number, problem) for each entry, streaming."""
    with path.open("rb") as fh:
        try:
            yield from _entries(_lines(fh))
        except (UnicodeDecodeError, ValueError) as exc:
            yield 0, f"anchor unreadable: {exc}"
