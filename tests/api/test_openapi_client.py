"""openapi-python-client, the outside check on the API document, generates a client
from the served document without errors or warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient


@pytest.mark.timeout(600)  # generates and imports a whole client package
@pytest.mark.any_database  # the document comes from the models and settings alone
def test_a_python_client_generates_cleanly(client: FlaskClient, tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(client.get("/api/v1/openapi.json").json))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(spec)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Warning" not in output and "Error" not in output, output
    models = tmp_path / "keyledger-api-client" / "keyledger_api_client" / "models"
    assert (models / "create_key.py").exists() and (models / "validated.py").exists()
