"""/metrics in the Prometheus text format (prometheus-client).

Under gunicorn each worker writes its counters to mmap files in
PROMETHEUS_MULTIPROC_DIR (app/serve.py makes one per server when unset, wipes it
at start and marks dead workers); a scrape of any worker aggregates them all. Without
it (flask run, tests) the app's own registry is served. The figures that are one per
deployment (audit sealing lag, checkpoint age) are read from the database at scrape
time; per-process figures (queue depths, pool use) are sampled every few seconds by a
thread in each worker, so the request path only increments counters.

METRICS_TOKEN, when set, is required as `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, current_app, request
from flask.typing import ResponseReturnValue
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.background import Worker

log = logging.getLogger(__name__)
EXTENSION = "keyledger.metrics"
bp = Blueprint("metrics", __name__)

# Seconds: fine buckets where a cached validation answers, coarse ones up to the
# dependency deadlines (near 2 s means a dependency timing out; docs/reliability.md).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """One app's metrics. Label children are bound once: labels() costs a lock and a
    lookup per call, and the hot path is called thousands of times a second."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.validations = Counter(
            "keyledger_validations",
            "Key validations answered, by outcome (valid or the error code).",
            ["outcome"],
            registry=r,
        )
        self.validation_seconds = Histogram(
            "keyledger_validation_seconds",
            "Time from reading a validation request to its answer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            "keyledger_api_requests",
            "Key-management API answers by status class (validations: keyledger_validations).",
            ["status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "keyledger_rate_limited",
            "Requests refused by a rate limit: key (tier limit), ip (failed guesses), "
            "portal (login and registration throttles).",
            ["limit"],
            registry=r,
        )
        self.usage_flush_seconds = Histogram(
            "keyledger_usage_flush_seconds",
            "Time to write one batch of usage and audit events.",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self.usage_written = Counter(
            "keyledger_usage_written",
            "Queued items written by the usage recorder, by kind (usage, audit).",
            ["kind"],
            registry=r,
        )
        self.usage_flush_failures = Counter(
            "keyledger_usage_flush_failures",
            "Flushes that found the database unreachable (the batch is kept and retried).",
            registry=r,
        )
        self.queue_depth = Gauge(
            "keyledger_queue_depth",
            "Items waiting in workers' memory for the next flush, by kind (usage, audit).",
            ["kind"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.queue_dropped = Gauge(
            "keyledger_queue_dropped",
            "Usage items dropped because the queue was full, since the last report.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool = Gauge(
            "keyledger_db_pool_connections",
            "Database pool connections per state (checked_out, idle, overflow), all workers.",
            ["state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool_size = Gauge(
            "keyledger_db_pool_size",
            "Configured pool size, summed over live workers.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self._outcomes: dict[str, Any] = {}
        self._statuses: dict[str, Any] = {}
        self._limited = {k: self.rate_limited.labels(k) for k in ("key", "ip", "portal")}
        self._observe = self.validation_seconds.observe
        self._sampler_pid: int | None = None
        self.sample_interval = float(app.config.get("METRICS_SAMPLE_INTERVAL") or 5.0)
        self.sampler = Worker("metrics-sampler", self.sample, self.sample_interval, wait_first=True)
        if multiprocess_dir() is None:
            self.registry.register(DatabaseCollector(app))

    # -- the request path ---------------------------------------------------------------

    def api_answer(
        self, validating: bool, status: int, error: str | None, started: float, key_limited: bool
    ) -> None:
        """One API answer (app/api/hooks.py): two or three mmap writes under gunicorn, no
        I/O. A validation counts by outcome (its status class follows from it); a
        management call by status class."""
        if status == 429:
            self._limited["key" if key_limited else "ip"].inc()
        if not validating:
            cls = self._statuses.get(status)
            if cls is None:
                cls = self._statuses[status] = self.api_requests.labels(f"{status // 100}xx")
            cls.inc()
            return
        if status == 200:
            outcome = "valid"
        else:
            outcome = error or ("unavailable" if status >= 500 else str(status))
        counter = self._outcomes.get(outcome)
        if counter is None:
            if len(self._outcomes) > 64:  # outcomes are our own codes; stay bounded anyway
                outcome = "other"
            counter = self._outcomes[outcome] = self.validations.labels(outcome)
        counter.inc()
        self._observe(time.perf_counter() - started)

    def on_status(self, environ: dict[str, Any], status: str) -> None:
        """Every answer's status line (the request-id middleware): portal throttling."""
        if status.startswith("429") and not environ.get("PATH_INFO", "").startswith("/api/"):
            self._limited["portal"].inc()

    # -- the recorder ---------------------------------------------------------------------

    def flushed(self, events: int, audits: int, seconds: float) -> None:
        self.usage_flush_seconds.observe(seconds)
        if events:
            self.usage_written.labels("usage").inc(events)
        if audits:
            self.usage_written.labels("audit").inc(audits)

    def flush_failed(self) -> None:
        self.usage_flush_failures.inc()

    # -- the per-process sampler ----------------------------------------------------------

    def ensure_sampler(self) -> None:
        """Start this process's sampler (first request, after gunicorn's fork). Not
        under TESTING: a test scrape samples on the spot, and apps come and go."""
        if self._sampler_pid == os.getpid() or self.app.testing:
            return
        self._sampler_pid = os.getpid()  # checked first: this runs before every request
        self.sample()
        self.sampler.ensure_running()

    def sample(self) -> None:
        recorder = self.app.extensions.get("keyledger.usage")
        if recorder is not None and hasattr(recorder, "queued"):
            usage, audits = recorder.queued()
            self.queue_depth.labels("usage").set(usage)
            self.queue_depth.labels("audit").set(audits)
            self.queue_dropped.set(getattr(recorder, "dropped", 0))
        from app.extensions import db

        with self.app.app_context():
            pool = db.engine.pool
        for state, reader in (
            ("checked_out", "checkedout"),
            ("idle", "checkedin"),
            ("overflow", "overflow"),
        ):
            value = getattr(pool, reader, None)
            if value is not None:
                self.pool.labels(state).set(max(0, int(value())))
        size = getattr(pool, "size", None)
        if size is not None:
            self.pool_size.set(int(size()))


class DatabaseCollector(Collector):
    """Figures that exist once per deployment, read from the database at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> list[Any]:
        return []  # computed at collect time; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from app.extensions import db
        from app.models import AuditCheckpoint
        from app.observability.health import audit_lag

        up = GaugeMetricFamily(
            "keyledger_database_up", "1 when the scrape could read the database."
        )
        try:
            with self.app.app_context(), db.engine.connect() as conn:
                pending, lag = audit_lag(conn)
                last = conn.execute(
                    select(AuditCheckpoint.created_at, AuditCheckpoint.tree_size)
                    .order_by(AuditCheckpoint.idx.desc())
                    .limit(1)
                ).first()
                size = conn.execute(select(func.count()).select_from(AuditCheckpoint)).scalar()
        except Exception as exc:
            log.warning("metrics: database unreadable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        g = GaugeMetricFamily(
            "keyledger_audit_unsealed_events", "Audit events waiting for the sealer."
        )
        g.add_metric([], pending)
        yield g
        g = GaugeMetricFamily(
            "keyledger_audit_sealing_lag_seconds",
            "How long the oldest unsealed audit event has waited (0 when none).",
        )
        g.add_metric([], lag)
        yield g
        g = GaugeMetricFamily(
            "keyledger_audit_checkpoint_age_seconds",
            "Seconds since the newest signed checkpoint (-1 when there is none).",
        )
        age = -1.0
        if last is not None:
            at = last.created_at if last.created_at.tzinfo else last.created_at.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - at).total_seconds())
        g.add_metric([], age)
        yield g
        g = GaugeMetricFamily("keyledger_audit_tree_size", "Events in the newest checkpoint.")
        g.add_metric([], last.tree_size if last is not None else 0)
        yield g
        g = GaugeMetricFamily("keyledger_audit_checkpoints", "Signed checkpoints stored.")
        g.add_metric([], size or 0)
        yield g


def metrics(app: Flask | None = None) -> Metrics:
    return (app or current_app).extensions[EXTENSION]


def _authorized() -> bool:
    return not current_app.config.get("METRICS_TOKEN") or presents_metrics_token()


def presents_metrics_token() -> bool:
    """The request carries `Authorization: Bearer <METRICS_TOKEN>` (one is configured)."""
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return False
    scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), str(token).encode()
    )


@bp.route("/metrics", methods=["GET"])
def serve() -> ResponseReturnValue:
    if not _authorized():
        return (
            "metrics need Authorization: Bearer <METRICS_TOKEN>\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"},
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    m = metrics(app)
    m.sample()  # this worker's figures as of now
    path = multiprocess_dir()
    if path is None:
        registry = m.registry
    else:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        registry.register(DatabaseCollector(app))
    return (
        generate_latest(registry),
        200,
        {
            "Content-Type": CONTENT_TYPE_LATEST,
            "Cache-Control": "no-store",
        },
    )


def init_app(app: Flask) -> Metrics:
    m = Metrics(app)
    app.extensions[EXTENSION] = m
    app.register_blueprint(bp)

    @app.before_request
    def _start_sampler() -> None:
        m.ensure_sampler()

    return m
