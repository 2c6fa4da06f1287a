"""The LSP's forward table: each downstream add is tied to the upstream HTLC it forwards."""

from __future__ import annotations

from pathlib import Path

from superscalar.channel import Htlc, IncomingHtlcCommitted, SendMessage, UpdateAddHtlc
from superscalar.node.forwarding import forward_journal
from superscalar.store.db import Database
from superscalar.store.schema import DAEMON_MIGRATIONS

FID = bytes(32)
HASH = bytes(range(32))
PAYEE = bytes(33)
DELTA = 58
"""A forwarding delta (the forwarder derives it from the tree; any value will do here)."""


def _upstream(db: Database, pos: int, htlc_id: int, amount_msat: int, expiry: int) -> None:
    with db.transaction() as c:
        forward_journal(FID)(
            c, pos, (IncomingHtlcCommitted(Htlc(htlc_id, amount_msat, HASH, expiry, PAYEE)),)
        )


def _forwarded(db: Database, pos: int, htlc_id: int, amount_msat: int, expiry: int) -> None:
    """What the forwarder does: store the downstream expiry it chose on the upstream row
    (incoming expiry `expiry` less the delta), then send the add."""
    with db.transaction() as c:
        c.execute(
            "UPDATE forwards SET out_expiry=? WHERE cltv_expiry=? AND amount_msat=?"
            " AND state='received'",
            (expiry - DELTA, expiry, amount_msat),
        )
    with db.transaction() as c:
        add = UpdateAddHtlc(Htlc(htlc_id, amount_msat, HASH, expiry - DELTA))
        forward_journal(FID)(c, pos, (SendMessage(add),))


def _rows(db: Database) -> list[tuple[int, int, str, int | None]]:
    return [
        (r["up_position"], r["amount_msat"], r["state"], r["down_htlc_id"])
        for r in db.execute("SELECT * FROM forwards ORDER BY up_position")
    ]


def test_an_add_marks_the_upstream_htlc_it_forwards_when_two_share_a_payment_hash(
    tmp_path: Path,
) -> None:
    db = Database.open(tmp_path / "lsp.sqlite3", DAEMON_MIGRATIONS)
    _upstream(db, 0, 7, 5_000_000, 500)
    _upstream(db, 1, 3, 9_000_000, 520)
    _forwarded(db, 2, 0, 9_000_000, 520)  # the second payment goes out first
    assert _rows(db) == [(0, 5_000_000, "received", None), (1, 9_000_000, "forwarded", 0)]
    _forwarded(db, 2, 1, 5_000_000, 500)
    assert _rows(db) == [(0, 5_000_000, "forwarded", 1), (1, 9_000_000, "forwarded", 0)]


def test_an_add_matching_no_received_htlc_marks_nothing(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "lsp.sqlite3", DAEMON_MIGRATIONS)
    _upstream(db, 0, 7, 5_000_000, 500)
    _forwarded(db, 2, 0, 5_000_000, 501)  # e.g. the LSP's own move PTLC or another expiry
    assert _rows(db) == [(0, 5_000_000, "received", None)]


def test_an_add_with_the_same_hash_and_amount_but_not_the_chosen_expiry_marks_nothing(
    tmp_path: Path,
) -> None:
    """The journal ties an add to the expiry the forwarder chose, not to a constant delta."""
    db = Database.open(tmp_path / "lsp.sqlite3", DAEMON_MIGRATIONS)
    _upstream(db, 0, 7, 5_000_000, 500)
    with db.transaction() as c:  # no out_expiry chosen: e.g. the LSP's own add
        add = UpdateAddHtlc(Htlc(0, 5_000_000, HASH, 500 - DELTA))
        forward_journal(FID)(c, 2, (SendMessage(add),))
    assert _rows(db) == [(0, 5_000_000, "received", None)]
