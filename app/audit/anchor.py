"""The outside anchor: every checkpoint also goes somewhere the database cannot reach.

Default: one JSON line per checkpoint appended to instance/audit_anchor.jsonl
(AUDIT_ANCHOR_PATH). AUDIT_ANCHOR_COMMAND, when set, is run once per checkpoint with
the same line on its standard input, to push it to a WORM store (S3 Object Lock, a
syslog host, a transparency witness). A database restored from an older copy is
caught because the anchor holds checkpoints the database no longer has.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.audit.offline import MAX_LINE, Checkpoint, checkpoint_from_json, strict_loads

log = logging.getLogger(__name__)


def checkpoint_line(cp: Checkpoint) -> str:
    return json.dumps({"type": "checkpoint", **cp.to_json()}, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Anchor:
    path: Path | None
    command: str | None = None

    def append(self, cp: Checkpoint) -> None:
        """Write one checkpoint out. Failures are logged, never raised: the checkpoint is
        already committed, and `verify` reports checkpoints missing from the anchor."""
        line = checkpoint_line(cp)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                log.exception("could not append checkpoint %s to %s", cp.index, self.path)
        if self.command:
            try:
                subprocess.run(  # noqa: S603 - the operator's own configured command
                    shlex.split(self.command),
                    input=line.encode(),
                    check=True,
                    timeout=30,
                    capture_output=True,
                )
            except (OSError, subprocess.SubprocessError):
                log.exception("anchor command failed for checkpoint %s", cp.index)


def read_anchor(path: Path) -> Iterator[tuple[int, Checkpoint | str]]:
    """(line number, checkpoint) or (line number, problem) for each line."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if len(raw) > MAX_LINE:
                yield number, "line too long"
                continue
            try:
                obj = strict_loads(raw.decode("utf-8", "strict"))
                if not isinstance(obj, dict) or obj.get("type") != "checkpoint":
                    raise ValueError("not a checkpoint line")
                yield (
                    number,
                    checkpoint_from_json(
                        {"note": obj.get("note"), "signature": obj.get("signature")}
                    ),
                )
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                yield number, str(exc)
