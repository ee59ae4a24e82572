"""Where the results database is, opening it, and bringing its schema up to date.

The URL is, in order: the one given (``--db``), ``$CYTOWHIM_DB``, else a SQLite file in the
user's data directory (:func:`default_url`; on Linux ``~/.local/share/cytowhim/results.sqlite``).
A lab with several workstations points every one at one PostgreSQL database
(``postgresql+psycopg://user:password@host/dbname``; the ``psycopg`` driver comes with
``pip install 'cytowhim[postgres]'``).

Opening migrates the schema to the newest version (Alembic, ``migrations/``), under a lock so
that processes opening a new database at once do not both create it. SQLite runs in WAL mode,
every write transaction begins ``IMMEDIATE`` (writers queue instead of failing half-way) and
waits up to :data:`BUSY_SECONDS` for another writer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CytowhimError

BUSY_SECONDS = 60.0
_LOCK_KEY = 0x43595457  # 'CYTW': the PostgreSQL advisory lock held while migrating


class DatabaseError(CytowhimError, RuntimeError):
    """The results database cannot be opened or used; the message names the URL (without its
    password) and what to do."""


def default_url() -> str:
    """``$CYTOWHIM_DB``, else ``sqlite:///<user data dir>/cytowhim/results.sqlite``."""
    url = os.environ.get("CYTOWHIM_DB", "").strip()
    if url:
        return url
    import platformdirs

    return "sqlite:///" + str(Path(platformdirs.user_data_dir("cytowhim")) / "results.sqlite")


def shown(url: Any) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return url.render_as_string(hide_password=True)
    except AttributeError:
        from sqlalchemy.engine import make_url

        try:
            return make_url(str(url)).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - a URL too broken to parse is shown as given
            return str(url)


def create(url: str | None = None) -> Any:
    """A SQLAlchemy engine for ``url`` (default :func:`default_url`), schema migrated."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    text = url or default_url()
    try:
        parsed = make_url(text)
    except ArgumentError:
        raise DatabaseError(
            f"results database {text!r}: not a database URL (expected e.g. "
            "sqlite:///path/results.sqlite or postgresql+psycopg://user@host/dbname)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"results database {shown(parsed)}: {backend!r} is not supported "
            "(use sqlite:///FILE or postgresql+psycopg://...)"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            raise DatabaseError(
                f"results database {text!r}: a SQLite database must be a file "
                "(sqlite:///path/results.sqlite)"
            )
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": BUSY_SECONDS}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DatabaseError(
            f"results database {shown(parsed)}: its driver is not installed ({exc}); for "
            "PostgreSQL: pip install 'cytowhim[postgres]'"
        ) from None
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):  # pragma: no cover - driver hooks
            dbapi_connection.isolation_level = None  # transactions are begun below
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - driver hooks
            # writers take the write lock at once (and queue); readers don't block them (WAL)
            write = conn.get_execution_options().get("cytowhim_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    try:
        migrate(engine)
    except DatabaseError:
        raise
    except Exception as exc:  # noqa: BLE001 - connection refused, bad password, ...
        engine.dispose()
        raise DatabaseError(f"results database {shown(parsed)}: cannot be opened: {exc}") from None
    return engine


@contextlib.contextmanager
def writing(engine: Any) -> Iterator[Any]:
    """A write transaction (SQLite: BEGIN IMMEDIATE, so concurrent writers queue; reads take
    no lock)."""
    with engine.connect() as conn:
        conn.execution_options(cytowhim_write=True)
        with conn.begin():
            yield conn


def _config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def head() -> str:
    """The newest schema revision."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def revision(engine: Any) -> str | None:
    """The schema revision a database is at (None: empty)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Any, to: str = "head") -> None:
    """Upgrade the schema to revision ``to`` (default: the newest), under a lock."""
    from alembic import command

    if to == "head" and revision(engine) == head():
        return
    cfg = _config()
    with writing(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, to)
