"""Spotting a peer's revoked commitment of one of our channels among a block's transactions.

The daemons' watchers (and a tower watching a daemon's database read-only) ask
`ChannelDetector` about every transaction; it answers with the watch entry whose
penalty claims everything, built from the channel's stored revocation secrets.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator

from superscalar.bitcoin.tx import OutPoint, Transaction
from superscalar.channel.errors import ChannelError
from superscalar.channel.keys import ChannelSecrets
from superscalar.channel.penalty import revoked_number
from superscalar.channel.revocation import RevokedCommitment
from superscalar.channel.state import ChannelState
from superscalar.crypto.keys import SecretKey
from superscalar.store.db import Database
from superscalar.watch import (
    WatchEntry,
    WatchError,
)
from superscalar.watch.responses import penalty_after_spends, penalty_entry

from .chancodec import decode_state, decode_value
from .channels import channel_anchor, channel_secrets
from .common import factory_signing_key

__all__ = ["ChannelDetector", "Ident", "fundings"]

log = logging.getLogger(__name__)


Ident = tuple[str, int, int | None]
"""(factory id hex, position, retired anchor or None for the channel's current one)."""


class ChannelDetector:
    """Spots a peer's revoked commitment of one of our channels and builds its penalty.

    A commitment spends the channel's funding outpoint, so each transaction's
    first input is looked up among our channels' outpoints (cached: a channel's
    funding never changes; the list of channels is re-read each block, cheaply).
    Only on a hit is the channel state decoded and the revoked record read; the
    penalty pays the channel's own close script. A leaf advance re-anchors a
    channel (`advance`): its retired anchors stay watched, because their
    revoked commitments become spendable the moment the superseded leaf state
    they spend confirms.
    """

    def __init__(self, db: Database | sqlite3.Connection, key: SecretKey) -> None:
        self.db = db
        self.key = key
        self._fundings: dict[Ident, OutPoint] = {}
        self._by_outpoint: dict[OutPoint, Ident] = {}
        self._anchors = 0

    def _refresh(self) -> dict[OutPoint, Ident]:
        """Funding outpoint -> channel anchor; only an anchor not seen before is decoded."""
        idents: list[Ident] = [
            (str(r["factory_id"]), int(r["position"]), None)
            for r in self.db.execute("SELECT factory_id, position FROM channels")
        ]
        idents += [
            (str(r["factory_id"]), int(r["position"]), int(r["generation"]))
            for r in self.db.execute(
                "SELECT factory_id, position, generation FROM channel_anchors WHERE stage='retired'"
            )
        ]
        anchors = int(self.db.execute("SELECT COUNT(*) FROM channel_anchors").fetchone()[0])
        if anchors != self._anchors:  # a leaf advance moved channels to new outpoints
            self._anchors = anchors
            self._fundings = {}
        if len(idents) != len(self._fundings):
            for ident in idents:
                if ident not in self._fundings:
                    self._fundings[ident] = self._state(ident).funding.outpoint
            self._by_outpoint = {op: ident for ident, op in self._fundings.items()}
        return self._by_outpoint

    def _state(self, ident: Ident) -> ChannelState:
        fid, position, anchor = ident
        if anchor is None:
            row = self.db.execute(
                "SELECT state FROM channels WHERE factory_id=? AND position=?", (fid, position)
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT state FROM channel_anchors WHERE factory_id=? AND position=?"
                " AND generation=? AND stage='retired'",
                (fid, position, anchor),
            ).fetchone()
        return decode_state(row["state"])

    def _secrets(self, ident: Ident) -> ChannelSecrets:
        fid, position, anchor = ident
        factory = bytes.fromhex(fid)
        if anchor is None:
            anchor = channel_anchor(self.db, factory, position)
        key = factory_signing_key(self.db, self.key, factory)
        return channel_secrets(key, factory, position, anchor)

    def _revoked_rows(self) -> Iterator[tuple[Ident, str]]:
        for r in self.db.execute("SELECT factory_id, position, revoked FROM channel_revoked"):
            yield (str(r["factory_id"]), int(r["position"]), None), str(r["revoked"])
        for r in self.db.execute(
            "SELECT factory_id, position, generation, revoked FROM channel_revoked_retired"
        ):
            yield (
                (str(r["factory_id"]), int(r["position"]), int(r["generation"])),
                str(r["revoked"]),
            )

    def __call__(self, tx: Transaction) -> WatchEntry | None:
        if not tx.inputs:
            return None
        ident = self._refresh().get(tx.inputs[0].prevout)
        if ident is None:
            return None
        fid, position, anchor = ident
        state = self._state(ident)
        number = revoked_number(state, tx)
        if number is None:
            return None  # a current commitment or a close: not a breach
        if anchor is None:
            rec = self.db.execute(
                "SELECT revoked FROM channel_revoked WHERE factory_id=? AND position=?"
                " AND number=?",
                (fid, position, number),
            ).fetchone()
        else:
            rec = self.db.execute(
                "SELECT revoked FROM channel_revoked_retired WHERE factory_id=? AND position=?"
                " AND generation=? AND number=?",
                (fid, position, anchor, number),
            ).fetchone()
        if rec is None:
            log.error("revoked commitment %d of channel %s/%d has no record", number, fid, position)
            return None
        revoked = decode_value(json.loads(rec["revoked"]))
        if not isinstance(revoked, RevokedCommitment) or revoked.txid != tx.txid:
            return None  # e.g. our own commitment whose number the peer also revoked
        try:
            return penalty_entry(self._secrets(ident), state, revoked, state.local_close_script)
        except (ChannelError, WatchError) as exc:
            log.error("cannot build the penalty for %s: %s", tx.txid_hex, exc)
            return None

    def rebuild(self, entry: WatchEntry, spenders: list[Transaction]) -> WatchEntry | None:
        """`penalty_after_spends` for the channel whose revoked commitment `entry` answers."""
        for ident, record in self._revoked_rows():
            revoked = decode_value(json.loads(record))
            if not isinstance(revoked, RevokedCommitment) or revoked.txid != entry.trigger_txid:
                continue
            state = self._state(ident)
            try:
                return penalty_after_spends(
                    self._secrets(ident),
                    state,
                    revoked,
                    state.local_close_script,
                    entry,
                    spenders,
                )
            except (ChannelError, WatchError) as exc:
                log.error("cannot rebuild the penalty for %s: %s", revoked.txid.hex(), exc)
                return None
        return None


def fundings(db: Database) -> list[str]:
    """Our live factories' funding txids (display hex)."""
    rows = db.execute(
        "SELECT funding_txid FROM factories WHERE state != 'aborted' AND funding_txid IS NOT NULL"
    )
    return [str(r["funding_txid"]) for r in rows]
