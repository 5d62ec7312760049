"""What a verifier answers: the first Damage found, or a Report of an intact log."""

from __future__ import annotations

from dataclasses import dataclass, field

from .hashing import EMPTY_ROOT


class Damage(Exception):
    """The first thing found wrong: a kind (stable, for machines), the first bad
    sequence number when one applies, and a sentence for people."""

    def __init__(self, kind: str, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.seq = seq

    def __str__(self) -> str:
        where = f" at seq {self.seq}" if self.seq is not None else ""
        return f"{self.kind}{where}: {self.message}"


@dataclass
class Report:
    ok: bool
    events: int = 0
    checkpoints: int = 0
    root: bytes = EMPTY_ROOT
    tree_size: int = 0
    seconds: float = 0.0
    last_checkpoint_time: str | None = None
    damage: Damage | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pruned: int = 0
    workers: int = 0  # processes that checked event lines besides this one

    def summary(self) -> str:
        if self.ok:
            extra = "".join(f"; {n}" for n in self.notes)
            return (
                f"audit trail intact: {self.events} events, {self.checkpoints} checkpoints, "
                f"root {self.root.hex()}, verified in {self.seconds:.2f}s{extra}"
            )
        assert self.damage is not None
        where = f"seq {self.damage.seq}" if self.damage.seq is not None else "the trail"
        return f"audit trail DAMAGED at {where}: {self.damage.kind}: {self.damage.message}"
