"""The peer for scripts/bench_validate.py --table: djangorestframework-api-key, the API-key
library a Django user would pick, in a minimal project whose one endpoint answers
{"ok": true} behind its HasAPIKey permission (the key looked up and its hash checked),
under gunicorn (sync) and Granian, as its users would serve it.

Everything lives under /tmp: a virtualenv made from PyPI on first use (reused after),
and the project files this module writes; nothing of the peer is kept in the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VENV = Path(os.environ.get("PEER_VENV", "/tmp/keyledger-bench-peer-venv"))
PACKAGES = ("django", "djangorestframework", "djangorestframework-api-key", "gunicorn", "granian")

SETTINGS = """
from pathlib import Path
BASE = Path(__file__).resolve().parent
SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth",
                  "rest_framework", "rest_framework_api_key"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "peer.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE / "peer.db"}}
USE_TZ = True
REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [],
                  "DEFAULT_PERMISSION_CLASSES": ["rest_framework_api_key.permissions.HasAPIKey"],
                  "UNAUTHENTICATED_USER": None}
"""

URLS = """
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView


class Check(APIView):
    def post(self, request):
        return Response({"ok": True})


urlpatterns = [path("check", Check.as_view())]
"""

WSGI = """
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer.settings")
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
"""

MAKE_KEYS = """
import django, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer.settings")
django.setup()
from rest_framework_api_key.models import APIKey
for i in range(int(sys.argv[1])):
    print(APIKey.objects.create_key(name=f"bench{i}")[1])
"""


def python() -> Path:
    """The peer's interpreter; the virtualenv is made (from PyPI) when missing."""
    exe = VENV / "bin" / "python"
    if not (VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(exe), "-m", "pip", "install", "--quiet", "--upgrade", "pip", *PACKAGES],
            check=True,
        )
        (VENV / ".installed").touch()
    return exe


def versions() -> str:
    out = subprocess.run(
        [str(python()), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = {"django", "djangorestframework-api-key", "granian", "gunicorn"}
    return ", ".join(line for line in out.splitlines() if line.split("==")[0].lower() in wanted)


def make_project(root: Path, keys: int) -> list[str]:
    """Write the project under `root`, migrate its SQLite database, return `keys` keys."""
    package = root / "peer"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(SETTINGS)
    (package / "urls.py").write_text(URLS)
    (package / "wsgi.py").write_text(WSGI)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "peer.settings", "PYTHONPATH": str(root)}
    exe = str(python())
    subprocess.run(
        [exe, "-m", "django", "migrate", "--verbosity", "0"], cwd=root, env=env, check=True
    )
    out = subprocess.run(
        [exe, "-c", MAKE_KEYS, str(keys)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def command(server: str, root: Path, port: str, workers: int) -> tuple[list[str], dict[str, str]]:
    """(argv, env) serving the peer on 127.0.0.1:port with `server` (gunicorn or granian)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "peer.settings", "PYTHONPATH": str(root)}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL"):
        env.pop(name, None)
    bin_ = VENV / "bin"
    if server == "gunicorn":
        return [
            str(bin_ / "gunicorn"),
            *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
            *("--chdir", str(root), "--log-level", "warning", "peer.wsgi"),
        ], env
    return [
        str(bin_ / "granian"),
        *("--interface", "wsgi", "--host", "127.0.0.1", "--port", port),
        *("--workers", str(workers), "--working-dir", str(root), "--log-level", "warning"),
        "peer.wsgi:application",
    ], env
