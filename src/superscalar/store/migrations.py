"""Versioned schema migrations: an ordered list of SQL scripts, applied once each.

Why: a daemon's database outlives any one version of the code, and money
state must never be read by code that misunderstands its schema. So:

- `MIGRATIONS` is the project's schema history, versions 1, 2, 3, … in order.
  Applied migrations are never edited (each row in `schema_version` keeps the
  script's SHA256, and a mismatch refuses to open); changes are new migrations.
- Each migration runs in its own `BEGIN IMMEDIATE … COMMIT` together with its
  `schema_version` row and a `PRAGMA foreign_key_check`, so it is applied
  completely or not at all, and two processes opening the same file cannot both
  apply it.
- A database whose version is higher than the code knows is refused
  (`SchemaTooNewError`): an old binary must not write to a newer schema.

Adding a migration (the lead's schemas for factories, channels, …): append
`Migration(N + 1, "short_name", '''SQL…''')` to `MIGRATIONS`. Scripts may hold
several statements (triggers too) but no transaction control (BEGIN, COMMIT,
SAVEPOINT) and no `PRAGMA foreign_keys` (it is ignored inside a transaction;
use `PRAGMA defer_foreign_keys = ON` for a table rebuild). Prefer `STRICT`
tables: SQLite then refuses a wrongly typed value instead of storing it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .errors import MigrationError, SchemaTooNewError

__all__ = [
    "MIGRATIONS",
    "Migration",
    "applied_versions",
    "check_migrations",
    "current_version",
    "migrate",
    "split_statements",
]


@dataclass(frozen=True)
class Migration:
    """One step of the schema history: its version, a short name, and its SQL script."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA256 of the script, recorded when applied so later edits are detected."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "meta",
        """
        -- Node-wide facts the daemon must check on every start (network, node id, ...):
        -- e.g. refuse to open a regtest database on mainnet.
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        """,
    ),
)

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT
"""

_FORBIDDEN = ("BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "VACUUM")


def split_statements(script: str) -> Iterator[str]:
    """The complete SQL statements of `script`, as SQLite's own tokenizer sees them.

    (`executescript` cannot be used: it commits any open transaction first,
    which would break a migration's atomicity.)
    """
    start = 0
    for i, ch in enumerate(script):
        if ch == ";" and sqlite3.complete_statement(script[start : i + 1]):
            statement = script[start : i + 1].strip()
            start = i + 1
            if statement.strip("; \t\r\n") and not _only_comments(statement):
                yield statement
    rest = script[start:].strip()
    if rest and not _only_comments(rest):
        raise MigrationError(f"incomplete SQL statement at end of script: {rest[:60]!r}")


def _only_comments(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines()]
    return all(not line or line.startswith("--") or line == ";" for line in lines)


def _first_word(statement: str) -> str:
    for line in statement.splitlines():
        line = line.strip()
        if line and not line.startswith("--"):
            return line.split(None, 1)[0].rstrip(";").upper()
    return ""


def _sets_foreign_keys(statement: str) -> bool:
    """`PRAGMA foreign_keys = …`, which SQLite silently ignores inside a transaction."""
    text = " ".join(statement.lower().split())
    return text.startswith("pragma") and re.search(r"\bforeign_keys\b", text) is not None


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Refuse a history that is not versions 1..N in order, or scripts that control transactions."""
    for expected, m in enumerate(migrations, start=1):
        if m.version != expected:
            raise MigrationError(
                f"migration versions must be 1..N in order; got {m.version} at {expected}"
            )
        if not m.name:
            raise MigrationError(f"migration {m.version} has no name")
        for statement in split_statements(m.sql):
            word = _first_word(statement)
            if word in _FORBIDDEN or _sets_foreign_keys(statement):
                raise MigrationError(
                    f"migration {m.version} ({m.name}) must not contain {word}: "
                    "each migration already runs in its own transaction"
                )


def applied_versions(conn: sqlite3.Connection) -> dict[int, str]:
    """Applied migration versions and their checksums (empty for a fresh database)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return {}
    return {int(v): str(c) for v, c in conn.execute("SELECT version, checksum FROM schema_version")}


def current_version(conn: sqlite3.Connection) -> int:
    """The database's schema version: the highest applied migration, 0 if none."""
    return max(applied_versions(conn), default=0)


def _verify(applied: dict[int, str], migrations: Sequence[Migration]) -> int:
    newest = max(applied, default=0)
    if newest > len(migrations):
        raise SchemaTooNewError(newest, len(migrations))
    if sorted(applied) != list(range(1, newest + 1)):
        raise MigrationError(f"schema_version has gaps: {sorted(applied)}")
    for version, checksum in applied.items():
        m = migrations[version - 1]
        if m.checksum != checksum:
            raise MigrationError(
                f"migration {version} ({m.name}) differs from the one applied to this database; "
                "never edit an applied migration, add a new one"
            )
    return newest


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply every pending migration, each atomically; returns the versions applied now.

    `conn` must be in autocommit mode (`isolation_level=None`) with no open
    transaction. Safe to call on every start: an up-to-date database is a no-op.
    """
    check_migrations(migrations)
    if conn.in_transaction:
        raise MigrationError("migrate() needs a connection with no open transaction")
    done: list[int] = []
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SCHEMA_TABLE)
            version = _verify(applied_versions(conn), migrations)
            if version == len(migrations):
                conn.execute("COMMIT")
                return done
            m = migrations[version]
            try:
                for statement in split_statements(m.sql):
                    conn.execute(statement)
                violations = conn.execute("PRAGMA foreign_key_check").fetchall()
            except sqlite3.Error as exc:
                raise MigrationError(f"migration {m.version} ({m.name}) failed: {exc}") from exc
            if violations:
                raise MigrationError(
                    f"migration {m.version} ({m.name}) leaves {len(violations)} foreign key "
                    "violations"
                )
            conn.execute(
                "INSERT INTO schema_version (version, name, checksum, applied_at) "
                "VALUES (?, ?, ?, ?)",
                (m.version, m.name, m.checksum, int(time.time())),
            )
            conn.execute("COMMIT")
            done.append(m.version)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
