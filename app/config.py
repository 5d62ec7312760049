"""Settings from the environment, with embedded defaults that need no server.

Development generates missing secrets once into instance/ (mode 0600); production
(KEYLEDGER_ENV=production) refuses to start without them, because a generated
secret on one host would not match the one on the next.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TIERS = ("basic", "premium", "enterprise")
KNOWN_SCOPES = ("keys:read", "keys:write", "usage:read")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(click.ClickException, RuntimeError):
    """A setting is missing or malformed; start-up must stop.

    A ClickException so that `flask ...` prints the message and exits 1 instead of a
    traceback; everywhere else it is an ordinary RuntimeError.
    """


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _env_optional_bool(name: str) -> bool | None:
    """None when unset, so production_defaults can pick the environment's default."""
    raw = os.environ.get(name)
    return None if raw is None or raw.strip() == "" else _env_bool(name, False)


def production_defaults(config: dict[str, Any]) -> None:
    """Fill the settings whose default depends on KEYLEDGER_ENV.

    Production serves HTTPS (ASVS 3.4.1, 3.4.4, 14.4.5): Secure `__Host-` cookies and
    HSTS unless a setting says otherwise (a plain-HTTP staging host, say). Elsewhere
    both stay off, since `make serve` answers on plain http://127.0.0.1.
    """
    if config.get("SESSION_COOKIE_SECURE") is None:
        config["SESSION_COOKIE_SECURE"] = config.get("KEYLEDGER_ENV") == "production"
    if config.get("HSTS") is None:
        config["HSTS"] = bool(config["SESSION_COOKIE_SECURE"])
    config["REMEMBER_COOKIE_SECURE"] = bool(config["SESSION_COOKIE_SECURE"])


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _tier_map(name: str, default: dict[str, int]) -> dict[str, int]:
    """Read e.g. KEY_MAX_DAYS="basic=90,premium=180,enterprise=365"."""
    raw = os.environ.get(name)
    if not raw:
        return dict(default)
    result = dict(default)
    for part in raw.split(","):
        tier, _, value = part.partition("=")
        tier = tier.strip()
        if tier not in TIERS or not value.strip().isdigit():
            raise ConfigError(f"{name}: expected tier=number pairs, got {part!r}")
        result[tier] = int(value)
    return result


def is_redis(uri: str | None) -> bool:
    """A Redis RATELIMIT_STORAGE_URI: counters (and the key stamp) shared by processes."""
    return str(uri or "").startswith(
        ("redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://")
    )


def instance_folder(raw: str | None) -> Path:
    """KEYLEDGER_INSTANCE, or instance/ when unset. Secrets are generated there, so an
    empty value (which would mean the working directory) and the project's own root
    (where `git add .` would commit them) are refused rather than guessed at."""
    if raw is None:
        return PROJECT_ROOT / "instance"
    if not raw.strip():
        raise ConfigError(
            "KEYLEDGER_INSTANCE is set but empty: unset it to use instance/, "
            "or name the folder for this instance's secrets and database"
        )
    folder = Path(raw).expanduser()
    if folder.resolve() == PROJECT_ROOT:
        raise ConfigError(
            f"KEYLEDGER_INSTANCE names the project's root ({PROJECT_ROOT}): secrets would "
            "be written beside the code; use a folder of its own, e.g. instance/"
        )
    return folder


def from_env() -> dict[str, Any]:
    """Every setting the app reads, taken from the environment once at start-up."""
    instance = instance_folder(os.environ.get("KEYLEDGER_INSTANCE"))
    return {
        "KEYLEDGER_ENV": os.environ.get("KEYLEDGER_ENV", "development"),
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": os.environ.get("SECRET_KEY"),
        "KEY_PEPPER": os.environ.get("KEY_PEPPER"),
        "AUDIT_SIGNING_KEY": os.environ.get("AUDIT_SIGNING_KEY"),
        "SQLALCHEMY_DATABASE_URI": os.environ.get(
            "DATABASE_URL", f"sqlite:///{instance / 'keyledger.db'}"
        ),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "KEY_PREFIX": os.environ.get("KEY_PREFIX", "klk"),
        # Test keys' prefix; unset: KEY_PREFIX + "test" (klktest).
        "TEST_KEY_PREFIX": os.environ.get("TEST_KEY_PREFIX", ""),
        "REGISTRATION_OPEN": _env_bool("REGISTRATION_OPEN", True),
        # Unset: on with KEYLEDGER_ENV=production, off otherwise (production_defaults).
        "SESSION_COOKIE_SECURE": _env_optional_bool("SESSION_COOKIE_SECURE"),
        "HSTS": _env_optional_bool("HSTS"),
        "PROXY_FIX_HOPS": _env_int("PROXY_FIX_HOPS", 0),
        "KEY_MAX_DAYS": _tier_map("KEY_MAX_DAYS", {"basic": 90, "premium": 180, "enterprise": 365}),
        "TIER_RATE_LIMITS": _tier_map(
            "TIER_RATE_LIMITS", {"basic": 60, "premium": 300, "enterprise": 1200}
        ),
        "KEY_EXPIRING_DAYS": _env_int("KEY_EXPIRING_DAYS", 7),
        # Monthly request quota per tier (e.g. "basic=100000"); a tier not named has none.
        # Its own key, apart from BILLING_PLANS (docs/api.md, "Monthly quota").
        "MONTHLY_QUOTAS": _tier_map("MONTHLY_QUOTAS", {}),
        # Optional: one monthly quota per account of a tier, all its keys together.
        "ACCOUNT_MONTHLY_QUOTAS": _tier_map("ACCOUNT_MONTHLY_QUOTAS", {}),
        # GitHub secret scanning's public keys: a URL or a file path (docs/operations.md).
        "GITHUB_SECRET_SCANNING_KEYS": os.environ.get(
            "GITHUB_SECRET_SCANNING_KEYS",
            "https://api.github.com/meta/public_keys/secret_scanning",
        ),
        # Per client IP, for the unauthenticated POST /api/v1/keys/report-leak.
        "LEAK_REPORT_LIMIT": os.environ.get("LEAK_REPORT_LIMIT", "10/minute"),
        "ARGON2_TIME_COST": _env_int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_COST": _env_int("ARGON2_MEMORY_COST", 65536),
        "ARGON2_PARALLELISM": _env_int("ARGON2_PARALLELISM", 4),
        "LOGIN_RATE_LIMIT": os.environ.get("LOGIN_RATE_LIMIT", "10/minute"),
        # Portal sessions (docs/security.md, V3) and failed logins per account, whatever
        # the client IP (counted in the limit storage, like every other limit).
        "SESSION_IDLE_MINUTES": _env_int("SESSION_IDLE_MINUTES", 60),
        "SESSION_MAX_HOURS": _env_int("SESSION_MAX_HOURS", 12),
        "LOGIN_ACCOUNT_LIMIT": os.environ.get("LOGIN_ACCOUNT_LIMIT", "10 per 15 minutes"),
        # The API's hot path (docs/api.md): how long a worker trusts a cached key lookup
        # without Redis limits (revocation reaches every worker within it; under 1 s) and
        # with them (a shared key stamp announces changes at once; app/keys/cache.py), the
        # failed-guess budget per client IP, and the limit strategy (docs/performance.md,
        # "Key lookups: Core, cached" and "Rate-limit strategy: moving window").
        "KEY_CACHE_TTL": _env_float("KEY_CACHE_TTL", 0.5),
        "KEY_CACHE_MAX_AGE": _env_float("KEY_CACHE_MAX_AGE", 30.0),
        "FAILED_VALIDATION_LIMIT": os.environ.get("FAILED_VALIDATION_LIMIT", "30/minute"),
        "RATELIMIT_STRATEGY": os.environ.get("RATELIMIT_STRATEGY", "moving-window"),
        "RATELIMIT_KEY_PREFIX": os.environ.get("RATELIMIT_KEY_PREFIX", ""),
        # Bounded waits (docs/reliability.md): seconds a request waits on the database
        # (a statement, or SQLite's write lock) and on a new connection before its 503.
        "DATABASE_TIMEOUT": _env_float("DATABASE_TIMEOUT", 1.2),
        "DATABASE_CONNECT_TIMEOUT": _env_float("DATABASE_CONNECT_TIMEOUT", 1.0),
        # Usage recording (docs/usage.md): a crash loses at most one flush interval.
        "USAGE_FLUSH_INTERVAL": _env_float("USAGE_FLUSH_INTERVAL", 1.0),
        "USAGE_RETENTION_DAYS": _env_int("USAGE_RETENTION_DAYS", 30),
        "USAGE_MINUTE_RETENTION_DAYS": _env_int("USAGE_MINUTE_RETENTION_DAYS", 90),
        # thread | manual | sync; empty means thread, or manual under TESTING.
        "USAGE_MODE": os.environ.get("USAGE_MODE", ""),
        # Billing plans per tier as JSON, merged over app.billing.DEFAULT_PLANS
        # (docs/usage.md, "Billing"); parsed once by app.billing.init_app.
        "BILLING_PLANS": os.environ.get("BILLING_PLANS", ""),
        # Audit log (docs/audit.md). Sealer: on/off; unset means on, or off under TESTING.
        "AUDIT_ORIGIN": os.environ.get("AUDIT_ORIGIN", "keyledger/audit"),
        "AUDIT_SEAL_INTERVAL": _env_float("AUDIT_SEAL_INTERVAL", 2.0),
        "AUDIT_CHECKPOINT_INTERVAL": _env_float("AUDIT_CHECKPOINT_INTERVAL", 300.0),
        "AUDIT_SEALER": (
            _env_bool("AUDIT_SEALER", True) if os.environ.get("AUDIT_SEALER") else None
        ),
        # Unset: instance/audit_anchor.jsonl and instance/audit_trusted_keys.pem; "off" disables.
        "AUDIT_ANCHOR_PATH": os.environ.get("AUDIT_ANCHOR_PATH"),
        "AUDIT_ANCHOR_COMMAND": os.environ.get("AUDIT_ANCHOR_COMMAND", ""),
        "AUDIT_TRUSTED_KEYS": os.environ.get("AUDIT_TRUSTED_KEYS"),
        "AUDIT_SEAL_BATCH": _env_int("AUDIT_SEAL_BATCH", 5000),
        "AUDIT_VERIFY_INLINE_MAX": _env_int("AUDIT_VERIFY_INLINE_MAX", 20000),
        # Webhooks (docs/webhooks.md): private and loopback targets are refused unless
        # allowed; dispatcher on/off (unset: on, or off under TESTING).
        "WEBHOOK_ALLOW_PRIVATE": _env_bool("WEBHOOK_ALLOW_PRIVATE", False),
        "WEBHOOK_TIMEOUT": _env_float("WEBHOOK_TIMEOUT", 5.0),
        "WEBHOOK_INTERVAL": _env_float("WEBHOOK_INTERVAL", 5.0),
        "WEBHOOK_RETRY_BASE": _env_float("WEBHOOK_RETRY_BASE", 5.0),
        "WEBHOOK_RETRY_HOURS": _env_float("WEBHOOK_RETRY_HOURS", 24.0),
        # Per endpoint: retries across all its messages, and "send a test" presses.
        "WEBHOOK_RETRY_BUDGET": os.environ.get("WEBHOOK_RETRY_BUDGET", "60 per hour"),
        "WEBHOOK_TEST_LIMIT": os.environ.get("WEBHOOK_TEST_LIMIT", "5 per 10 minutes"),
        "WEBHOOK_DISPATCHER": (
            _env_bool("WEBHOOK_DISPATCHER", True) if os.environ.get("WEBHOOK_DISPATCHER") else None
        ),
        # Operations (docs/operations.md): log lines as JSON (or text for development),
        # the bearer token /metrics asks for (unset: open), the readiness lag allowed.
        "LOG_FORMAT": os.environ.get("LOG_FORMAT", "json"),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN") or None,
        "READY_AUDIT_MAX_LAG": _env_float("READY_AUDIT_MAX_LAG", 0.0) or None,
        # Witnesses (docs/audit.md): `URL VKEY` per line or `;`-separated.
        "AUDIT_WITNESSES": os.environ.get("AUDIT_WITNESSES", ""),
        # Two-factor sign-in (docs/security.md): who must use it until an admin chooses
        # on /admin/security (none | admins | everyone), and the days given to set it up.
        "MFA_REQUIRED": os.environ.get("MFA_REQUIRED", "none"),
        "MFA_GRACE_DAYS": _env_int("MFA_GRACE_DAYS", 7),
        "MFA_ISSUER": os.environ.get("MFA_ISSUER", "Keyledger"),
        # Mail (docs/operations.md): smtp://, smtp+starttls://user:pass@, smtps://; unset
        # writes mails to the log (refused with KEYLEDGER_ENV=production).
        "MAIL_URL": os.environ.get("MAIL_URL", ""),
        # The portal's address, for links in mails sent outside a request (the CLI).
        "PUBLIC_URL": os.environ.get("PUBLIC_URL", "http://localhost:5000"),
        "MAIL_FROM": os.environ.get("MAIL_FROM", "Keyledger <keyledger@localhost>"),
        "MAIL_TIMEOUT": _env_float("MAIL_TIMEOUT", 10.0),
        "MAIL_CA_FILE": os.environ.get("MAIL_CA_FILE", ""),
        # Reset links asked for, per address (whether it exists or not) and per client IP.
        "PASSWORD_RESET_ADDRESS_LIMIT": os.environ.get(
            "PASSWORD_RESET_ADDRESS_LIMIT", "3 per hour"
        ),
        "PASSWORD_RESET_IP_LIMIT": os.environ.get("PASSWORD_RESET_IP_LIMIT", "10 per hour"),
        # Passkeys' relying party (docs/operations.md); unset: the host the browser asked for.
        "WEBAUTHN_RP_ID": os.environ.get("WEBAUTHN_RP_ID", ""),
        "WEBAUTHN_ORIGIN": os.environ.get("WEBAUTHN_ORIGIN", ""),
    }


DEFAULTS: dict[str, Any] = {
    # hide_parameters: a failed statement's log line must not carry hashes or emails.
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": True},
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    # Forms are small; the API caps its own bodies tighter.
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "RATELIMIT_HEADERS_ENABLED": True,
    "RATELIMIT_STRATEGY": "moving-window",
    "WTF_CSRF_TIME_LIMIT": 3600,
}

# file name in instance/ -> (config key, generator)
_GENERATED = {
    "secret_key": ("SECRET_KEY", lambda: secrets.token_urlsafe(48)),
    "key_pepper": ("KEY_PEPPER", lambda: secrets.token_urlsafe(48)),
    "audit_signing_key.pem": (
        "AUDIT_SIGNING_KEY",
        lambda: (
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        ),
    ),
}


def _publish(path: Path, content: str) -> bool:
    """Create `path` whole or not at all: gunicorn workers start together, and none may
    read a half-written secret or overwrite another's. False when another won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp files are mode 0600
            fh.write(content)
        os.link(tmp, path)  # atomic, and fails if the file exists
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def ensure_secrets(config: dict[str, Any]) -> list[str]:
    """Fill missing secrets: from instance/ files in development, or fail in production.

    Returns the names of the files it created, so the caller can say so.
    """
    instance = Path(config["INSTANCE_PATH"])
    production = config.get("KEYLEDGER_ENV") == "production"
    created: list[str] = []
    missing = [key for key, _ in _GENERATED.values() if not config.get(key)]
    if production and missing:
        raise ConfigError(
            f"KEYLEDGER_ENV=production but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set. In production every secret "
            "comes from the environment (SECRET_KEY, KEY_PEPPER, AUDIT_SIGNING_KEY); "
            "see docs/operations.md."
        )
    for filename, (key, generate) in _GENERATED.items():
        if config.get(key):
            continue
        path = instance / filename
        if not path.exists() and _publish(path, generate()):
            created.append(filename)
        config[key] = path.read_text().strip()
    if created:
        print(
            f"keyledger: generated {', '.join(created)} in {instance} (mode 0600); "
            "keep them: losing key_pepper invalidates every API key.",
            file=sys.stderr,
        )
    return created
