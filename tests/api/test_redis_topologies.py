"""Limit storage beyond one Redis server: a 3-node Redis Cluster and a Sentinel-watched
master with a replica, each started by the test on free ports of its own.

What a service notices must not change: tier limits exact per key, failed guesses
limited per client IP, a revocation seen at once by another worker (the key stamp),
and on Sentinel a failover survived with the counts kept.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.keys import Keys, forged_key
from support.servers import free_port

pytestmark = pytest.mark.slow

URL = "/api/v1/keys/validate"
REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None, reason="needs redis-server and redis-cli"
)
SMALL = {"basic": 5, "premium": 300, "enterprise": 1200}


def _wait(what: str, ready: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s")
        time.sleep(0.1)


class Servers:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        assert REDIS_SERVER is not None
        log = (self.tmp / f"redis-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [REDIS_SERVER, *args], cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _server_args(tmp: Path, port: int, *extra: str) -> list[str]:
    return [
        "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(tmp), *extra,
    ]  # fmt: skip


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """Three masters, no replicas, all 16384 slots assigned."""
    import redis

    servers = Servers(tmp_path)
    ports = [free_port() for _ in range(3)]
    try:
        for port in ports:
            servers.start(
                *_server_args(
                    tmp_path,
                    port,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-port", str(free_port()),
                )
            )  # fmt: skip
        for port in ports:
            _wait("redis node", lambda p=port: redis.Redis(port=p).ping())
        assert REDIS_CLI is not None
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in ports:
            _wait(
                "cluster state ok",
                lambda p=port: redis.Redis(port=p).cluster("info")["cluster_state"] == "ok",
            )
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports), ports
    finally:
        servers.stop()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """A master, its replica and one sentinel (quorum 1) watching them."""
    import redis

    servers = Servers(tmp_path)
    master, replica, sentinel = free_port(), free_port(), free_port()
    try:
        servers.start(*_server_args(tmp_path, master))
        servers.start(*_server_args(tmp_path, replica, "--replicaof", "127.0.0.1", str(master)))
        conf = tmp_path / "sentinel.conf"
        conf.write_text(
            f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor kltest 127.0.0.1 {master} 1\n"
            "sentinel down-after-milliseconds kltest 1000\n"
            "sentinel failover-timeout kltest 10000\n"
        )
        servers.start(str(conf), "--sentinel")
        _wait(
            "replica in sync",
            lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up",
        )
        s = redis.Redis(port=sentinel, decode_responses=True)
        _wait("sentinel sees the replica", lambda: len(s.sentinel_slaves("kltest")) == 1)
        yield f"redis+sentinel://127.0.0.1:{sentinel}/kltest", master, sentinel
    finally:
        servers.stop()


def _limits_are_exact(app: Any, keys: Keys, n_keys: int = 6) -> list[Any]:
    client = app.test_client()
    made = [keys.key(email=f"topo{i}@example.com") for i in range(n_keys)]
    for key in made:
        statuses = [client.post(URL, headers=key.bearer).status_code for _ in range(7)]
        assert statuses == [200] * 5 + [429] * 2, statuses
    return made


def _guesses_are_limited(app: Any, keys: Keys) -> None:
    client = app.test_client()
    live = keys.key(email="guessed@example.com")
    statuses = [client.post(URL, json={"key": forged_key()}).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    blocked = client.post(URL, headers=live.bearer)
    assert blocked.status_code == 429  # the address is blocked, right key or wrong
    other = app.test_client()
    fresh = other.post(URL, headers=live.bearer, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert fresh.status_code == 200
    assert fresh.headers["X-RateLimit-Remaining"] == "4"  # the blocked try spent nothing


def _revocation_reaches_another_worker(make_app: Any, keys: Keys, uri: str) -> None:
    key = keys.key(email="revoked@example.com")
    changer = make_app(RATELIMIT_STORAGE_URI=uri, TIER_RATE_LIMITS=SMALL)
    cached = make_app(RATELIMIT_STORAGE_URI=uri, TIER_RATE_LIMITS=SMALL, KEY_CACHE_TTL=0.5)
    client = cached.test_client()
    assert client.post(URL, headers=key.bearer).status_code == 200
    Keys(changer).revoke(key)
    resp = client.post(URL, headers=key.bearer)  # at once, well inside KEY_CACHE_MAX_AGE
    assert resp.status_code == 401
    assert resp.json["error"] == "revoked"


@needs_redis
def test_redis_cluster_limit_storage(
    make_app: Any, keys: Keys, redis_cluster: tuple[str, list[int]]
) -> None:
    import redis

    uri, ports = redis_cluster
    app = make_app(
        RATELIMIT_STORAGE_URI=uri,
        TIER_RATE_LIMITS=SMALL,
        FAILED_VALIDATION_LIMIT="3/minute",
        METRICS_TOKEN="t",
    )
    ready = app.test_client().get("/readyz", headers={"Authorization": "Bearer t"})
    assert ready.json["checks"]["limit_storage"] == {
        "ok": True,
        "detail": "RedisClusterStorage",
        "ms": ready.json["checks"]["limit_storage"]["ms"],
    }
    _limits_are_exact(app, keys)
    # The keys' counters are spread over the nodes, each in one node's slot.
    assert sum(1 for p in ports if redis.Redis(port=p).dbsize() > 0) >= 2
    _guesses_are_limited(app, keys)
    _revocation_reaches_another_worker(make_app, keys, uri)


@needs_redis
def test_redis_sentinel_limit_storage_survives_a_failover(
    make_app: Any, keys: Keys, redis_sentinel: tuple[str, int, int]
) -> None:
    import redis

    uri, master, sentinel = redis_sentinel
    app = make_app(
        RATELIMIT_STORAGE_URI=uri, TIER_RATE_LIMITS=SMALL, FAILED_VALIDATION_LIMIT="3/minute"
    )
    assert app.test_client().get("/readyz").status_code == 200
    made = _limits_are_exact(app, keys, n_keys=2)
    _revocation_reaches_another_worker(make_app, keys, uri)

    # A failover: the replica becomes the master; the counts it replicated still hold.
    fresh = keys.key(email="failover@example.com")
    client = app.test_client()
    for _ in range(3):
        assert client.post(URL, headers=fresh.bearer).status_code == 200
    s = redis.Redis(port=sentinel, decode_responses=True)
    _wait("replica caught up", lambda: redis.Redis(port=master).wait(1, 1000) == 1)
    s.execute_command("SENTINEL", "FAILOVER", "kltest")
    _wait(
        "failover done",
        lambda: int(s.sentinel_get_master_addr_by_name("kltest")[1]) != master,
        timeout=30,
    )
    deadline = time.monotonic() + 10
    statuses = []
    while time.monotonic() < deadline:
        resp = client.post(URL, headers=fresh.bearer)
        if resp.status_code != 503:  # the moment of the switch may fail closed, briefly
            statuses.append(resp.status_code)
            if len(statuses) == 3:
                break
        time.sleep(0.2)
    assert statuses == [200, 200, 429], statuses
    for key in made:  # counted before the failover: still spent
        assert client.post(URL, headers=key.bearer).status_code == 429
    _guesses_are_limited(app, keys)
