"""SQLite base: durable settings, migrations (once, atomic, refuse newer), transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from superscalar.store.db import Database
from superscalar.store.errors import MigrationError, SchemaTooNewError, StoreError
from superscalar.store.migrations import (
    MIGRATIONS,
    Migration,
    applied_versions,
    check_migrations,
    current_version,
    migrate,
    split_statements,
)

# A trivial schema history, standing in for the real one in these tests.
V1 = Migration(
    1,
    "accounts",
    """
    CREATE TABLE account (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;
    CREATE TABLE entry (
        id INTEGER PRIMARY KEY,
        account INTEGER NOT NULL REFERENCES account (id),
        amount_sat INTEGER NOT NULL CHECK (amount_sat >= 0)
    ) STRICT;
    """,
)
V2 = Migration(
    2,
    "entry_note",
    """
    ALTER TABLE entry ADD COLUMN note TEXT NOT NULL DEFAULT '';  -- a second statement follows
    CREATE INDEX entry_by_account ON entry (account);
    """,
)
HISTORY = (V1, V2)


def tables(db: Database) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def test_open_sets_wal_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    with Database.open(tmp_path / "node.db", HISTORY) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.schema_version == 2


def test_migrations_apply_once_and_reopening_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, HISTORY) == [1, 2]
    assert migrate(conn, HISTORY) == []
    assert set(applied_versions(conn)) == {1, 2}
    conn.close()
    with Database.open(path, HISTORY) as db:
        assert {"account", "entry", "schema_version"} <= tables(db)
        rows = db.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        assert [tuple(r) for r in rows] == [(1, "accounts"), (2, "entry_note")]


def test_upgrade_applies_only_the_new_migration_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with Database.open(path, (V1,)) as db:
        with db.transaction() as conn:
            conn.execute("INSERT INTO account (name) VALUES ('lsp')")
        assert db.schema_version == 1
    with Database.open(path, HISTORY) as db:
        assert db.schema_version == 2
        assert db.execute("SELECT name FROM account").fetchone()[0] == "lsp"


def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    Database.open(path, HISTORY).close()
    with pytest.raises(SchemaTooNewError) as info:
        Database.open(path, (V1,))
    assert (info.value.found, info.value.supported) == (2, 1)
    with Database.open(path, HISTORY) as db:
        assert db.schema_version == 2


def test_a_failing_migration_leaves_the_previous_version_intact(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    broken = Migration(
        2,
        "broken",
        "CREATE TABLE half (x INTEGER) STRICT;\nINSERT INTO no_such_table VALUES (1);",
    )
    Database.open(path, (V1,)).close()
    with pytest.raises(MigrationError, match="migration 2 \\(broken\\) failed"):
        Database.open(path, (V1, broken))
    with Database.open(path, (V1,)) as db:
        assert db.schema_version == 1
        assert "half" not in tables(db)  # the first statement was rolled back too


def test_a_migration_that_breaks_foreign_keys_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with Database.open(path, (V1,)) as db, db.transaction() as conn:
        conn.execute("INSERT INTO account (id, name) VALUES (1, 'a')")
        conn.execute("INSERT INTO entry (account, amount_sat) VALUES (1, 5)")
    orphaning = Migration(
        2, "orphan", "PRAGMA defer_foreign_keys = ON;\nDELETE FROM account WHERE id = 1;"
    )
    with pytest.raises(MigrationError, match="foreign key"):
        Database.open(path, (V1, orphaning))
    with Database.open(path, (V1,)) as db:
        assert db.execute("SELECT count(*) FROM account").fetchone()[0] == 1


def test_an_edited_applied_migration_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    Database.open(path, (V1,)).close()
    edited = Migration(1, "accounts", V1.sql + "\nCREATE TABLE sneaky (x INTEGER);")
    with pytest.raises(MigrationError, match="never edit an applied migration"):
        Database.open(path, (edited,))


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ((V2,), "1..N in order"),
        ((V1, Migration(3, "gap", "SELECT 1;")), "1..N in order"),
        ((Migration(1, "", "SELECT 1;"),), "no name"),
        ((Migration(1, "tx", "BEGIN;\nCREATE TABLE t (x INTEGER);\nCOMMIT;"),), "BEGIN"),
        ((Migration(1, "sp", "SAVEPOINT a;"),), "SAVEPOINT"),
        ((Migration(1, "fk", "PRAGMA foreign_keys = OFF;"),), "PRAGMA"),
        ((Migration(1, "open", "CREATE TABLE t (x INTEGER"),), "incomplete"),
    ],
)
def test_malformed_histories_are_refused(history: tuple[Migration, ...], match: str) -> None:
    with pytest.raises(MigrationError, match=match):
        check_migrations(history)


def test_statement_splitter_keeps_triggers_and_strings_whole() -> None:
    script = """
        CREATE TABLE t (x TEXT);  -- trailing comment; with a semicolon
        CREATE TRIGGER t_guard BEFORE INSERT ON t BEGIN
            SELECT RAISE(ABORT, 'no; way') WHERE NEW.x = 'bad';
        END;
        INSERT INTO t VALUES ('a;b');
        -- a comment at the end
    """
    statements = list(split_statements(script))
    assert len(statements) == 3
    assert "CREATE TRIGGER" in statements[1] and statements[1].endswith("END;")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for s in statements:
        conn.execute(s)
    assert conn.execute("SELECT x FROM t").fetchone()[0] == "a;b"


def test_the_projects_own_migrations_apply(tmp_path: Path) -> None:
    with Database.open(tmp_path / "node.db") as db:
        assert db.schema_version == len(MIGRATIONS)
        with db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('network', 'regtest')")
        assert db.execute("SELECT value FROM meta").fetchone()[0] == "regtest"


def test_in_memory_database_works_for_tests() -> None:
    with Database.open(":memory:", HISTORY) as db:
        assert current_version(db.conn) == 2


# --- transactions -------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database.open(tmp_path / "node.db", HISTORY)


def count(db: Database, table: str = "account") -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_transaction_commits_on_success_and_is_visible_to_another_connection(
    db: Database, tmp_path: Path
) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO account (name) VALUES ('a')")
        conn.execute("INSERT INTO account (name) VALUES ('b')")
    other = sqlite3.connect(tmp_path / "node.db")
    assert other.execute("SELECT count(*) FROM account").fetchone()[0] == 2
    other.close()


def test_transaction_rolls_back_everything_on_exception(db: Database) -> None:
    with pytest.raises(RuntimeError, match="crash"), db.transaction() as conn:
        conn.execute("INSERT INTO account (name) VALUES ('a')")
        raise RuntimeError("crash before the state change completed")
    assert count(db) == 0
    assert not db.conn.in_transaction


def test_constraint_violation_rolls_back_the_whole_state_change(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        conn.execute("INSERT INTO account (id, name) VALUES (1, 'a')")
        conn.execute("INSERT INTO entry (account, amount_sat) VALUES (99, 1)")  # no account 99
    assert count(db) == 0


def test_nested_transactions_are_savepoints(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO account (name) VALUES ('outer')")
        with pytest.raises(ValueError), db.transaction() as inner:
            inner.execute("INSERT INTO account (name) VALUES ('inner')")
            raise ValueError("inner step failed")
        with db.transaction() as inner:
            inner.execute("INSERT INTO account (name) VALUES ('inner ok')")
    names = {r[0] for r in db.execute("SELECT name FROM account")}
    assert names == {"outer", "inner ok"}


def test_outer_failure_undoes_committed_savepoints(db: Database) -> None:
    with pytest.raises(KeyError), db.transaction() as conn:
        with db.transaction() as inner:
            inner.execute("INSERT INTO account (name) VALUES ('inner')")
        conn.execute("INSERT INTO account (name) VALUES ('outer')")
        raise KeyError("late failure")
    assert count(db) == 0


def test_writers_are_serialized_by_begin_immediate(db: Database, tmp_path: Path) -> None:
    other = Database.open(tmp_path / "node.db", HISTORY, busy_timeout=0.05)
    with db.transaction() as conn:
        conn.execute("INSERT INTO account (name) VALUES ('a')")
        with pytest.raises(sqlite3.OperationalError, match="locked"), other.transaction():
            pass
    with other.transaction() as conn:
        conn.execute("INSERT INTO account (name) VALUES ('b')")
    assert count(db) == 2
    other.close()


def test_close_inside_a_transaction_is_refused(db: Database) -> None:
    with db.transaction(), pytest.raises(StoreError):
        db.close()
    db.close()


def test_a_transaction_opened_behind_our_back_is_refused(db: Database) -> None:
    db.execute("BEGIN")
    with pytest.raises(StoreError, match="outside"), db.transaction():
        pass
    db.execute("ROLLBACK")


def test_commits_count_outermost_transactions_only_and_not_rollbacks(tmp_path: Path) -> None:
    with Database.open(tmp_path / "node.db", HISTORY) as db:
        before = db.commits
        with db.transaction() as c:
            c.execute("INSERT INTO account VALUES (1, 'a')")
            with db.transaction() as inner:  # a savepoint: part of the same commit
                inner.execute("INSERT INTO account VALUES (2, 'b')")
        with pytest.raises(RuntimeError), db.transaction() as c:
            c.execute("INSERT INTO account VALUES (3, 'c')")
            raise RuntimeError("rolled back")
        assert db.commits == before + 1
