"""The SQLite database every daemon persists to: durable settings, migrations, transactions.

Why these settings: this database holds money state (signatures, revocation
secrets, nonce use), and the rule is *persist before you send what commits
you*. So:

- `journal_mode=WAL`: readers never block the writer, and a crash mid-write
  leaves the last committed state intact.
- `synchronous=FULL`: a COMMIT has reached the disk (fsync of the WAL) before
  it returns, so a message sent after it can never refer to lost state — even
  on power loss, not only on a process crash.
- `foreign_keys=ON`: SQLite's default is off; dangling rows are bugs.
- `transaction()`: `BEGIN IMMEDIATE` takes the write lock up front (no
  deadlock-prone lock upgrade halfway through), and the block is all-or-nothing.
  Nested calls become savepoints, so helpers that each "do one change" compose
  into one atomic state change.

Usage:

    db = Database.open(path)          # applies pending migrations
    with db.transaction() as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("network", "regtest"))
    # committed and on disk here; now it is safe to send the message that depends on it
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import StoreError
from .migrations import MIGRATIONS, Migration, current_version, migrate

__all__ = ["Database"]

_MEMORY = ":memory:"


class Database:
    """An open SQLite database at the current schema. Not shared between threads."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        """Wrap an already configured connection; use `Database.open` instead."""
        self._conn = conn
        self._depth = 0
        self.commits = 0
        """Outermost transactions committed (each one fsync): what `bench swarm` counts."""
        self.path = path

    @classmethod
    def open(
        cls,
        path: str | Path,
        migrations: Sequence[Migration] = MIGRATIONS,
        *,
        busy_timeout: float = 5.0,
    ) -> Database:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        Raises `SchemaTooNewError` if newer code wrote it, `MigrationError` if a
        migration fails (the database is left at the last good version), and
        `StoreError` if SQLite cannot give the durability settings we need.
        """
        name = str(path)
        try:
            conn = sqlite3.connect(name, isolation_level=None, timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {name}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            _configure(conn, in_memory=name == _MEMORY)
            migrate(conn, migrations)
        except BaseException:
            conn.close()
            raise
        return cls(conn, name)

    @property
    def conn(self) -> sqlite3.Connection:
        """The raw connection, in autocommit mode: use `transaction()` for any write."""
        return self._conn

    @property
    def schema_version(self) -> int:
        return current_version(self._conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic state change: commits on normal exit, rolls back on any exception.

        The outermost call is `BEGIN IMMEDIATE … COMMIT` (durable on return);
        nested calls are savepoints, so an inner failure that the caller catches
        undoes only the inner block.
        """
        conn = self._conn
        if self._depth == 0:
            if conn.in_transaction:
                raise StoreError("a transaction was opened outside Database.transaction()")
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield conn
            except BaseException:
                self._depth = 0
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
                self.commits += 1
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
        else:
            name = f"sp{self._depth}"
            conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield conn
            except BaseException:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
                raise
            else:
                conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """Run one statement; outside `transaction()` it is its own (autocommitted) transaction."""
        return self._conn.execute(sql, params)

    def close(self) -> None:
        """Close the connection; refuses while a transaction is open (that would lose it)."""
        if self._depth:
            raise StoreError("cannot close the database inside a transaction")
        self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _pragma(conn: sqlite3.Connection, statement: str) -> Any:
    row = conn.execute(statement).fetchone()
    return None if row is None else row[0]


def _configure(conn: sqlite3.Connection, *, in_memory: bool) -> None:
    mode = _pragma(conn, "PRAGMA journal_mode = WAL")
    if not in_memory and str(mode).lower() != "wal":
        raise StoreError(f"SQLite refused WAL mode (journal_mode is {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if _pragma(conn, "PRAGMA synchronous") != 2 or _pragma(conn, "PRAGMA foreign_keys") != 1:
        raise StoreError("SQLite did not accept synchronous=FULL and foreign_keys=ON")
