"""The Merkle log in the database, one module per concern.

- state: the tree state row every sealer locks, the tables, settings and errors
- writer: sealing pending events and signing checkpoints (the single integrator)
- reader: checkpoints from rows, inclusion and consistency proofs
- witnesses: C2SP tlog-witness submission and the cosignatures kept
- export, recovery, retention, receipts: what their names say

Hashing, notes and proofs come from app.audit.core. Works on an Engine and plain
connections; no Flask.
"""

from app.audit.log.export import (
    export_lines,
)
from app.audit.log.reader import (
    CP_COLUMNS,
    TreeReader,
    checkpoint_at,
    consistency_proof,
    cosignatures_of,
    covering_checkpoint,
    inclusion_proof,
    latest_checkpoint,
    row_checkpoint,
    seq_of_leaf,
    signed_latest,
)
from app.audit.log.receipts import (
    NOT_LIFECYCLE,
    key_receipts,
)
from app.audit.log.recovery import (
    import_export,
    rebuild_state,
    recover,
)
from app.audit.log.retention import (
    PruneError,
    prune,
    prune_plan,
)
from app.audit.log.state import (
    CHUNK,
    NODE_MIN_LEVEL,
    LogError,
    LogSettings,
    SealResult,
    halt,
    halted,
    lock_state,
)
from app.audit.log.witnesses import (
    MAX_ANSWER,
    REQUEST_TYPE,
    WITNESS_TIMEOUT,
    WitnessView,
    restore_cosignatures,
    store_cosignatures,
    submit_to_witnesses,
    views_problem,
    witness_views,
)
from app.audit.log.writer import (
    anchor_unusable,
    external_problem,
    seal,
    seal_all,
)

__all__ = [
    "CHUNK",
    "CP_COLUMNS",
    "MAX_ANSWER",
    "NODE_MIN_LEVEL",
    "NOT_LIFECYCLE",
    "REQUEST_TYPE",
    "WITNESS_TIMEOUT",
    "LogError",
    "LogSettings",
    "PruneError",
    "SealResult",
    "TreeReader",
    "WitnessView",
    "anchor_unusable",
    "checkpoint_at",
    "consistency_proof",
    "cosignatures_of",
    "covering_checkpoint",
    "export_lines",
    "external_problem",
    "halt",
    "halted",
    "import_export",
    "inclusion_proof",
    "key_receipts",
    "latest_checkpoint",
    "lock_state",
    "prune",
    "prune_plan",
    "rebuild_state",
    "recover",
    "restore_cosignatures",
    "row_checkpoint",
    "seal",
    "seal_all",
    "seq_of_leaf",
    "signed_latest",
    "store_cosignatures",
    "submit_to_witnesses",
    "views_problem",
    "witness_views",
]
