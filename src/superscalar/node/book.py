"""The factories a daemon knows, as typed rows over SQLite: the one port to the `factories`,
`factory_clients` and `node_kv` tables that every service shares.

A service asks the book (`phase`, `clients`, `position`) instead of writing its own
SELECT and comparing state strings; writes take the caller's transaction, so a
phase change commits together with whatever else the step persists.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from superscalar.crypto.keys import PublicKey
from superscalar.store.db import Database

from .common import now

__all__ = ["ClientRow", "FactoryBook", "FactoryPhase", "FactoryRow"]


class FactoryPhase(StrEnum):
    """Where a factory is in its life (the `factories.state` column)."""

    PROPOSED = "proposed"
    """LSP: PROPOSE sent, no nonces stored yet."""
    NONCES = "nonces"
    """LSP: every client's nonces in, ours recorded as used."""
    NONCES_SENT = "nonces_sent"
    """Client: the proposal accepted and our nonces sent."""
    PSIGS_SENT = "psigs_sent"
    """Client: our partial signatures sent."""
    READY = "ready"
    """Client: every tree signature (and the distribution tx) stored; READY acknowledged."""
    SIGNED = "signed"
    """LSP: the tree signed by all, the funding tx signed, not yet broadcast."""
    FUNDED = "funded"
    """The funding tx is out: the factory is live."""
    CLOSING = "closing"
    """Client: a cooperative close signed, not yet seen confirmed (`closing`)."""
    CLOSED = "closed"
    """Its funding output is spent by a close (or the distribution tx)."""
    ABORTED = "aborted"
    """The ceremony never finished; nothing was broadcast."""

    @property
    def live(self) -> bool:
        """Signed by everyone: the factory's transactions can reach the chain."""
        return self in (
            FactoryPhase.SIGNED,
            FactoryPhase.READY,
            FactoryPhase.FUNDED,
            FactoryPhase.CLOSING,
            FactoryPhase.CLOSED,
        )


@dataclass(frozen=True)
class FactoryRow:
    """One `factories` row, typed."""

    factory_id: bytes
    role: str
    attempt: int
    phase: FactoryPhase
    position: int | None
    propose: str
    funding_txid: str | None
    funding_tx: str | None
    close_tx: str | None
    close_txid: str | None

    @classmethod
    def of(cls, row: sqlite3.Row) -> FactoryRow:
        return cls(
            factory_id=bytes.fromhex(row["factory_id"]),
            role=row["role"],
            attempt=int(row["attempt"]),
            phase=FactoryPhase(row["state"]),
            position=None if row["position"] is None else int(row["position"]),
            propose=row["propose"],
            funding_txid=row["funding_txid"],
            funding_tx=row["funding_tx"],
            close_tx=row["close_tx"],
            close_txid=row["close_txid"],
        )


@dataclass(frozen=True)
class ClientRow:
    """One `factory_clients` row: a client's seat in a factory."""

    position: int
    key: PublicKey
    amount_sat: int
    payout_script: bytes


class FactoryBook:
    """Reads and writes of the factory tables, by factory id."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, fid: bytes) -> FactoryRow | None:
        row = self.db.execute("SELECT * FROM factories WHERE factory_id=?", (fid.hex(),)).fetchone()
        return None if row is None else FactoryRow.of(row)

    def row(self, fid: bytes) -> FactoryRow:
        """The factory's row; a `KeyError` if we never heard of it."""
        found = self.get(fid)
        if found is None:
            raise KeyError(f"unknown factory {fid.hex()}")
        return found

    def phase(self, fid: bytes) -> FactoryPhase | None:
        found = self.get(fid)
        return None if found is None else found.phase

    def clients(self, fid: bytes) -> list[ClientRow]:
        """The factory's clients in position order."""
        return [
            ClientRow(
                int(r["position"]),
                PublicKey.from_hex(r["pubkey"]),
                int(r["amount_sat"]),
                bytes.fromhex(r["payout_script"]),
            )
            for r in self.db.execute(
                "SELECT * FROM factory_clients WHERE factory_id=? ORDER BY position",
                (fid.hex(),),
            )
        ]

    def position(self, fid: bytes, key: PublicKey) -> int | None:
        """The seat of node key `key` in factory `fid` (None: not one of its clients)."""
        row = self.db.execute(
            "SELECT position FROM factory_clients WHERE factory_id=? AND pubkey=?",
            (fid.hex(), key.hex()),
        ).fetchone()
        return None if row is None else int(row["position"])

    @staticmethod
    def set_phase(
        c: sqlite3.Connection,
        fid: bytes,
        phase: FactoryPhase,
        *,
        only_from: Sequence[FactoryPhase] = (),
        **cols: str | None,
    ) -> None:
        """Move factory `fid` to `phase` (and set `cols`) in the caller's transaction;
        with `only_from`, only if it is in one of those phases now."""
        sets = "".join(f", {k}=?" for k in cols)
        where = ""
        args: list[object] = [phase.value, now(), *cols.values(), fid.hex()]
        if only_from:
            where = f" AND state IN ({', '.join('?' for _ in only_from)})"
            args += [p.value for p in only_from]
        c.execute(f"UPDATE factories SET state=?, updated=?{sets} WHERE factory_id=?{where}", args)

    def kv(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM node_kv WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    @staticmethod
    def set_kv(c: sqlite3.Connection, key: str, value: str) -> None:
        c.execute("INSERT OR REPLACE INTO node_kv VALUES (?, ?)", (key, value))
