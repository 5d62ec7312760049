"""Start-up settings: generated secrets in development, a hard stop in production."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.db import USE_PG, base_config

from app import create_app
from app.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("SECRET_KEY", "KEY_PEPPER", "AUDIT_SIGNING_KEY")
FILES = ("secret_key", "key_pepper", "audit_signing_key.pem")


def _config(tmp_path: Path, **over: object) -> dict:
    conf = base_config(tmp_path, f"sqlite:///{tmp_path / 'cfg.db'}")
    conf.update({"SECRET_KEY": None, "KEY_PEPPER": None, "AUDIT_SIGNING_KEY": None})
    conf.update(over)
    return conf


@pytest.mark.parametrize("missing", SECRETS)
def test_production_refuses_to_start_without_each_secret(tmp_path, missing):
    given = {
        "KEYLEDGER_ENV": "production",
        "SECRET_KEY": "s" * 40,
        "KEY_PEPPER": "p" * 40,
        "AUDIT_SIGNING_KEY": "a" * 40,
        missing: None,
    }
    with pytest.raises(ConfigError) as err:
        create_app(_config(tmp_path, **given))
    assert f"{missing} is not set" in str(err.value)
    # Nothing was generated as a fallback.
    instance = tmp_path / "instance"
    assert not any((instance / f).exists() for f in FILES)


def test_production_names_every_missing_secret_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        create_app(_config(tmp_path, KEYLEDGER_ENV="production", KEY_PEPPER="p" * 40))
    assert "SECRET_KEY, AUDIT_SIGNING_KEY are not set" in str(err.value)


def test_production_start_from_the_shell_says_why_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (*SECRETS, "DATABASE_URL")}
    env.update(
        KEYLEDGER_ENV="production",
        KEYLEDGER_INSTANCE=str(tmp_path / "instance"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.db'}",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "SECRET_KEY, KEY_PEPPER, AUDIT_SIGNING_KEY are not set" in proc.stderr
    assert not (tmp_path / "prod.db").exists()


def test_development_generates_secrets_once_private_and_says_so(tmp_path, capfd):
    first = create_app(_config(tmp_path))
    err = capfd.readouterr().err
    instance = tmp_path / "instance"
    assert "generated" in err and str(instance) in err
    for name in FILES:
        path = instance / name
        assert path.exists(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert name in err
    # The secrets themselves never reach the console.
    for key in SECRETS:
        assert first.config[key] and first.config[key] not in err
    assert "PRIVATE KEY" in first.config["AUDIT_SIGNING_KEY"]

    second = create_app(_config(tmp_path))
    assert "generated" not in capfd.readouterr().err
    for key in SECRETS:
        assert second.config[key] == first.config[key]


def test_environment_secrets_win_over_instance_files(tmp_path, monkeypatch):
    create_app(_config(tmp_path))
    monkeypatch.setenv("KEY_PEPPER", "pepper-from-env")
    conf = _config(tmp_path)
    del conf["KEY_PEPPER"]
    app = create_app(conf)
    assert app.config["KEY_PEPPER"] == "pepper-from-env"


def test_malformed_numeric_setting_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("KEY_EXPIRING_DAYS", "soon")
    with pytest.raises(ConfigError, match="KEY_EXPIRING_DAYS"):
        create_app(_config(tmp_path))


def test_tier_caps_are_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("KEY_MAX_DAYS", "basic=30,enterprise=400")
    app = create_app(_config(tmp_path))
    assert app.config["KEY_MAX_DAYS"] == {"basic": 30, "premium": 180, "enterprise": 400}


def test_a_secret_file_is_published_whole_and_never_replaced(tmp_path):
    """Workers start together: the first generated secret wins, later ones are dropped
    (the old exists-then-create raced: FileExistsError in the 8-process audit test)."""
    from app.config import _publish

    path = tmp_path / "inst" / "key_pepper"
    assert _publish(path, "first") is True
    assert _publish(path, "second") is False
    assert path.read_text() == "first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["key_pepper"]  # no temp files left


def test_a_key_cache_age_below_its_ttl_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("KEY_CACHE_MAX_AGE", "0.2")
    with pytest.raises(ValueError, match="KEY_CACHE_MAX_AGE"):
        create_app({**_config(tmp_path), "KEY_CACHE_TTL": 0.5})


@pytest.mark.skipif(USE_PG, reason="a SQLite setting")
def test_sqlite_runs_in_wal_mode(tmp_path):
    """The usage writer and the portal's readers do not block each other (operations.md)."""
    from app.extensions import db

    app = create_app(_config(tmp_path, KEYLEDGER_ENV="development"))
    with app.app_context(), db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, [], 1),  # memory:// counters are per process: more workers, more than the limit
        ({"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}, [], os.cpu_count() or 1),
        ({"RATELIMIT_STORAGE_URI": "redis+unix:///run/redis.sock"}, [], os.cpu_count() or 1),
        ({"RATELIMIT_STORAGE_URI": "redis://h/0", "WEB_CONCURRENCY": "3"}, [], 3),
        ({"RATELIMIT_STORAGE_URI": "redis://h/0"}, ["--workers", "2"], 2),
        ({}, ["--workers", "2"], None),  # refused: two workers on memory://
        ({"RATELIMIT_ALLOW_PER_WORKER": "true"}, ["--workers", "2"], 2),  # with the warning
    ],
)
def test_the_server_starts_as_many_workers_as_the_limit_storage_can_share(env, flags, expected):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RATELIMIT_STORAGE_URI", "WEB_CONCURRENCY", "RATELIMIT_ALLOW_PER_WORKER")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "app.serve", *flags, "--check"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if expected is None:
        assert proc.returncode == 1
        assert "RATELIMIT_STORAGE_URI is memory:// with 2 workers" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["workers"] == expected


@pytest.mark.skipif(USE_PG, reason="the SQLite file of the embedded defaults")
def test_database_file_and_anchor_are_private_like_the_secrets(tmp_path):
    """Issue 22: instance/keyledger.db (key hashes, the audit trail) and the audit anchor
    were created with the umask's 0644/0640; like the secrets, they are 0600."""
    from flask_migrate import upgrade

    from app.audit import log as auditlog
    from app.audit import service, trail
    from app.extensions import db

    old = os.umask(0o022)
    try:
        conf = _config(tmp_path)
        conf["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'instance' / 'keyledger.db'}"
        app = create_app(conf)
        with app.app_context():
            upgrade()
            trail.record(db.session, "key.created", actor="user:1", target="key:k")
            db.session.commit()
            auditlog.seal_all(db.engine, service.settings(app), force_checkpoint=True)
            db.engine.dispose()
    finally:
        os.umask(old)
    instance = tmp_path / "instance"
    for name in ("keyledger.db", "audit_anchor.jsonl"):
        assert (instance / name).exists(), name
        assert stat.S_IMODE((instance / name).stat().st_mode) == 0o600, name
