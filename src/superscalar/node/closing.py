"""A client's cooperative close after it signed: frozen channel, safety nets armed, chain as judge.

The LSP collects the clients' close partial signatures and alone holds the
fully signed close. A client therefore takes nothing the LSP says about the
close as evidence (issue 14, attacks 1 and 6):

- From the moment it commits to a close (the nonce round, stored in the same
  transaction as the close nonce use) the factory is `closing` and its channel
  is frozen: no HTLC added, fulfilled or failed, no commitment signed. Signed
  balances cannot move while a close paying the old ones is in the LSP's hands.
- `CloseDone` is accepted only for a close tx this client signed; it changes
  nothing but a log line. The factory becomes `closed` only when the chain
  shows one of the closes we signed confirmed (or the distribution tx paid it
  out, see `distribution`).
- While `closing`, the distribution tx and `exit` stay armed. If every close we
  signed had its input spent on chain by some other tx (a kickoff, the
  distribution tx), none can ever confirm: the close is abandoned, the factory
  goes back to `funded` and the channel thaws. If the LSP sits on the signed
  close for `exit_after` blocks, the client starts its unilateral exit.

The record of a close in progress lives in `node_kv` (`closing:<factory id>`),
written in the caller's transaction; the verdict (`close_verdict`) is a pure
function of what the chain says.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError
from superscalar.chain.rpc import RpcError
from superscalar.store.db import Database

__all__ = [
    "CLOSE_EXIT_BLOCKS",
    "CLOSE_EXIT_BLOCKS_REGTEST",
    "ChainView",
    "CloseVerdict",
    "Closing",
    "SignedClose",
    "clear_closing",
    "close_verdict",
    "closing_status",
    "load_closing",
    "observe",
    "save_closing",
]

log = logging.getLogger(__name__)

CLOSE_EXIT_BLOCKS = 144
"""Blocks a client waits for a close it signed to confirm before it exits alone (a day)."""
CLOSE_EXIT_BLOCKS_REGTEST = 6
"""The same on regtest, where blocks are mined on demand."""

_KEY = "closing:"


@dataclass(frozen=True)
class SignedClose:
    """One close tx we committed to: its txid and the outpoint it spends."""

    txid: str
    prev_txid: str
    prev_vout: int

    @staticmethod
    def of(tx: Transaction) -> SignedClose:
        prev = tx.inputs[0].prevout
        return SignedClose(tx.txid_hex, prev.txid_hex, prev.vout)


@dataclass(frozen=True)
class Closing:
    """A close in progress: what we signed, and the one whose nonces are out."""

    signed: tuple[SignedClose, ...] = ()
    """Closes whose partial signature we sent: the LSP may hold any of them fully signed."""
    pending: SignedClose | None = None
    """The close whose nonces we sent (no partial signature yet)."""
    signed_height: int | None = None
    """Tip when our first partial signature went out (the exit deadline counts from it)."""

    def with_pending(self, close: SignedClose) -> Closing:
        return replace(self, pending=close)

    def with_signed(self, close: SignedClose, height: int) -> Closing:
        signed = self.signed if close in self.signed else (*self.signed, close)
        start = height if self.signed_height is None else self.signed_height
        return Closing(signed, None, start)

    def knows(self, txid: str) -> bool:
        return any(s.txid == txid for s in self.signed)

    def to_json(self) -> str:
        def one(s: SignedClose) -> dict[str, Any]:
            return {"txid": s.txid, "prev_txid": s.prev_txid, "prev_vout": s.prev_vout}

        return json.dumps(
            {
                "signed": [one(s) for s in self.signed],
                "pending": None if self.pending is None else one(self.pending),
                "signed_height": self.signed_height,
            }
        )

    @staticmethod
    def from_json(text: str) -> Closing:
        raw = json.loads(text)

        def one(d: dict[str, Any]) -> SignedClose:
            return SignedClose(str(d["txid"]), str(d["prev_txid"]), int(d["prev_vout"]))

        pending = raw.get("pending")
        height = raw.get("signed_height")
        return Closing(
            tuple(one(d) for d in raw["signed"]),
            None if pending is None else one(pending),
            None if height is None else int(height),
        )


def load_closing(db: Database | Any, fid: bytes) -> Closing | None:
    row = db.execute("SELECT value FROM node_kv WHERE key=?", (_KEY + fid.hex(),)).fetchone()
    return None if row is None else Closing.from_json(str(row["value"]))


def save_closing(c: Any, fid: bytes, closing: Closing) -> None:
    """Inside the caller's transaction."""
    c.execute("INSERT OR REPLACE INTO node_kv VALUES (?, ?)", (_KEY + fid.hex(), closing.to_json()))


def clear_closing(c: Any, fid: bytes) -> None:
    c.execute("DELETE FROM node_kv WHERE key=?", (_KEY + fid.hex(),))


# -- the rule ------------------------------------------------------------------------------


class CloseVerdict(StrEnum):
    WAIT = "wait"
    """Nothing decided on chain yet: stay frozen, nets armed."""
    CONFIRMED = "confirmed"
    """A close we signed is in a block: the factory is closed."""
    ABANDONED = "abandoned"
    """Every close we signed lost its input to another confirmed tx: none can ever confirm."""
    EXIT = "exit"
    """The LSP sat on the signed close past our deadline: go on chain alone."""


@dataclass(frozen=True)
class ChainView:
    """What the chain says about a `Closing`'s txs."""

    height: int
    confirmed: str | None
    """A signed close confirmed in a block (None: none)."""
    inputs_spent: bool
    """Every signed close's input is spent in a block by a confirmed tx."""


def close_verdict(closing: Closing, chain: ChainView, exit_after: int) -> CloseVerdict:
    """What a client does about a close it signed, from the chain alone (never from the LSP)."""
    if not closing.signed:
        return CloseVerdict.WAIT
    if chain.confirmed is not None and closing.knows(chain.confirmed):
        return CloseVerdict.CONFIRMED
    if chain.inputs_spent:
        return CloseVerdict.ABANDONED
    if closing.signed_height is not None and chain.height >= closing.signed_height + exit_after:
        return CloseVerdict.EXIT
    return CloseVerdict.WAIT


def _confirmations(chain: BitcoindClient, txid: str) -> int:
    try:
        return max(0, chain.get_raw_transaction_verbose(txid).confirmations)
    except (RpcError, ChainResponseError):
        return 0


def observe(chain: BitcoindClient, closing: Closing) -> ChainView:
    """Ask the chain (`ChainUnavailable` propagates: the caller tries again)."""
    height = chain.get_block_count()
    spent = bool(closing.signed)
    for s in closing.signed:
        # spent in a block: its parent is confirmed and the output left the UTXO set
        if _confirmations(chain, s.prev_txid) == 0 or (
            chain.get_tx_out(s.prev_txid, s.prev_vout, include_mempool=False) is not None
        ):
            spent = False
    confirmed = next((s.txid for s in closing.signed if _confirmations(chain, s.txid) > 0), None)
    return ChainView(height, confirmed, spent)


def closing_status(closing: Closing | None, exit_after: int) -> dict[str, Any] | None:
    """What `status` shows of a close in progress."""
    if closing is None:
        return None
    return {
        "signed_txids": [s.txid for s in closing.signed],
        "pending_txid": None if closing.pending is None else closing.pending.txid,
        "signed_height": closing.signed_height,
        "exit_height": (
            None if closing.signed_height is None else closing.signed_height + exit_after
        ),
    }
