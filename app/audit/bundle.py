"""Build the auditor's single-file offline verifier from the app.audit.core package.

A real build step: `zipapp` packs the package's own modules, unchanged, as the
package `keyledger_audit` with a `__main__` that runs its command line. Nothing
is spliced: the file an auditor runs is the code the app verifies with. File
times inside the archive are fixed, so the same source builds the same bytes and
an auditor can compare a digest with a build of their own.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipapp
from pathlib import Path

CORE = Path(__file__).resolve().parent / "core"
PACKAGE = "keyledger_audit"
_MAIN = f"""import sys

from {PACKAGE}.offline import main

sys.exit(main())
"""
_EPOCH = 315532800 + 86400  # 1980-01-02: the zip format starts at 1980


def build_verifier(target: Path | io.BufferedIOBase) -> None:
    """Write the offline verifier (a zipapp: `python FILE export ...`) to `target`."""
    with tempfile.TemporaryDirectory(prefix="kl-verifier-") as tmp:
        root = Path(tmp)
        shutil.copytree(CORE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (root / "__main__.py").write_text(_MAIN)
        for path in [root, *root.rglob("*")]:
            os.utime(path, (_EPOCH, _EPOCH))
        zipapp.create_archive(root, target, interpreter="/usr/bin/env python3", compressed=True)
