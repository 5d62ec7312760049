"""Fixtures: a real database per test (SQLite file, or PostgreSQL when DATABASE_URL
names one), the schema built by the real migrations, CSRF left on. The helpers they
use, and tests import, live in tests/support/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from support import fuzz
from support.db import USE_PG, WORKER, base_config, drop_template, fresh_db, migrate_template
from support.routing import share_compiled_url_builders
from support.templates import share_compiled_templates
from support.web import OTHER_PASSWORD, PASSWORD, Portal

from app import create_app
from app.extensions import db

# Markers of the long tests that CI runs in steps of their own: left out of a run
# unless its -m expression names them (`pytest -m slow`, `pytest -m fuzz`).
OWN_STEP_MARKERS = ("faults", "slow", "fuzz")


# Tests that start processes of their own (servers, browsers, proxies) share one xdist
# worker (`--dist loadgroup`), so that two of them never fight over the CPU or a port:
# those using these fixtures, the browser tests, and modules that mark themselves
# `pytest.mark.xdist_group("servers")`.
PROCESS_FIXTURES = frozenset(
    {
        "served",
        "private_redis",
        "pg_proxy",
        "proxied_app",
        "witness",
        "live_server",
        "redis_cluster",
        "redis_sentinel",
    }
)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Groups are given as each test is collected: xdist reads them in its own
    pytest_collection_modifyitems, which may run before this file's."""
    if item.get_closest_marker("xdist_group"):
        return
    if item.get_closest_marker("e2e"):
        item.add_marker(pytest.mark.xdist_group("browser"))
    elif PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.xdist_group("servers"))


def pytest_configure(config: pytest.Config) -> None:
    share_compiled_templates()
    share_compiled_url_builders()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config.option, "loadgroup", False) and any(
        item.get_closest_marker("xdist_group") and "@" not in item.nodeid for item in items
    ):
        # xdist marks a grouped test by a suffix on its node id; a pytest whose node ids
        # it cannot change would scatter the process-starting tests over every worker.
        raise pytest.UsageError("--dist loadgroup does not group with this pytest/xdist pair")
    wanted = config.getoption("markexpr") or ""
    left_out = [m for m in OWN_STEP_MARKERS if m not in wanted]
    if USE_PG:
        # Ran on the SQLite run already and would do exactly the same work again here.
        left_out.append("any_database")
    if not left_out:
        return
    kept, dropped = [], []
    for item in items:
        (dropped if any(item.get_closest_marker(m) for m in left_out) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


_fuzz_requests: list[int] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # The fuzz fixture records its count as it tears down: the teardown report carries it.
    if report.when == "teardown":
        _fuzz_requests.extend(v for k, v in report.user_properties if k == "fuzz_requests")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The fuzz tests' bar over all of them (on the xdist controller, which hears every
    worker's reports): FLOOR generated requests at the default number of examples."""
    if WORKER or not _fuzz_requests:
        return
    total = sum(_fuzz_requests)
    say = session.config.get_terminal_writer().line
    say(f"fuzz: {total} generated requests at FUZZ_EXAMPLES={fuzz.EXAMPLES}")
    if fuzz.EXAMPLES >= 700 and total < fuzz.FLOOR:
        say(f"fuzz: FAILED: fewer than {fuzz.FLOOR} generated requests", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the migrations once per process (each xdist worker: its own SQLite template
    under its own basetemp, or its own PostgreSQL database); tests get a copy (SQLite)
    or a truncated schema (PostgreSQL)."""
    yield migrate_template(tmp_path_factory.mktemp("template"))
    drop_template()


@pytest.fixture
def app(migrated_db: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Flask]:
    config = base_config(tmp_path, fresh_db(migrated_db, tmp_path))
    if request.node.get_closest_marker("concurrent_writers"):
        # Threads writing at once check that nothing is lost or doubled, not how long a
        # writer waits: SQLite's lock wait (DATABASE_TIMEOUT) must not turn a loaded
        # machine (parallel workers, CI) into a failure.
        config["DATABASE_TIMEOUT"] = 60.0
    app = create_app(config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def fresh_app(migrated_db: str, tmp_path: Path) -> Iterator[Callable[[], Flask]]:
    """Make apps one after another, each on an empty database (on PostgreSQL the same
    database emptied again: finish with one app before making the next)."""
    made: list[Flask] = []

    def make() -> Flask:
        for earlier in made:
            with earlier.app_context():
                db.session.remove()
                db.engine.dispose()
        tmp = tmp_path / f"app{len(made)}"
        tmp.mkdir()
        made.append(create_app(base_config(tmp, fresh_db(migrated_db, tmp))))
        return made[-1]

    yield make
    for earlier in made:
        with earlier.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def portal(client: FlaskClient) -> Portal:
    return Portal(client)


@pytest.fixture
def user(portal: Portal) -> Portal:
    """A registered, logged-in basic-tier user."""
    resp = portal.register("alice@example.com")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return portal


@pytest.fixture
def other(app: Flask) -> Portal:
    """A second registered, logged-in user (bob) in a browser of their own."""
    bob = Portal(app.test_client())
    resp = bob.register("bob@example.com", OTHER_PASSWORD)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return bob


@pytest.fixture
def admin(app: Flask) -> Portal:
    """An admin made the documented way (`flask users create --admin`), then logged in."""
    result = app.test_cli_runner().invoke(
        args=["users", "create", "root@example.com", "--admin", "--tier", "enterprise"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    root = Portal(app.test_client())
    resp = root.login("root@example.com")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return root
