"""A persisted on-chain plan, walked block by block: the one step runner behind a client's
unilateral exit (`exit`) and the LSP's HTLC enforcement (`enforce`).

A plan is rows of signed transactions, each spending the one before it (its first
input's parent) after a relative `delay`. Every row is stored before anything is
broadcast, so a restart resumes where the chain is. Each tick passes the confirmed
steps, then either waits (in the mempool, parent unconfirmed, delay not reached) or
broadcasts the next step, with a wallet CPFP child where the step carries no fee.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError
from superscalar.chain.rpc import RpcError
from superscalar.store.db import Database

from .common import wallet_cpfp

__all__ = ["CPFP_FEERATE", "SWEEP_FEERATE", "StepTable", "height_of"]

log = logging.getLogger(__name__)

CPFP_FEERATE = Feerate.from_sat_per_vb(2)
"""What a CPFP child pays for itself and its zero-fee parent together."""
SWEEP_FEERATE = Feerate.from_sat_per_vb(2)
"""What a sweep or second-stage claim pays from the swept output."""


def height_of(chain: BitcoindClient, txid: str, tip: int) -> int | None:
    """The height `txid` confirmed at; 0 while in the mempool; None if the chain has no idea."""
    try:
        conf = chain.get_raw_transaction_verbose(txid).confirmations
    except (RpcError, ChainResponseError):
        return None
    return 0 if conf <= 0 else tip - conf + 1


@dataclass(frozen=True)
class StepTable:
    """One plan's rows: `table` filtered by `key` (column → value), ordered by `idx`."""

    db: Database
    table: str
    key: tuple[tuple[str, Any], ...]
    label: str
    """What the log calls a step of this plan ("exit step", "enforce step")."""

    def _where(self) -> str:
        return " AND ".join(f"{column}=?" for column, _ in self.key)

    def _values(self) -> tuple[Any, ...]:
        return tuple(value for _, value in self.key)

    def rows(self) -> list[Any]:
        return list(
            self.db.execute(
                f"SELECT * FROM {self.table} WHERE {self._where()} ORDER BY idx", self._values()
            ).fetchall()
        )

    def set(self, idx: int, **cols: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in cols)
        with self.db.transaction() as c:
            c.execute(
                f"UPDATE {self.table} SET {sets} WHERE {self._where()} AND idx=?",
                (*cols.values(), *self._values(), idx),
            )

    def drive(self, chain: BitcoindClient, steps: Sequence[Any], tip: int) -> bool:
        """Walk `steps` in order: pass confirmed (or skipped) ones, broadcast the next ready
        one. True once every step is confirmed: the plan is done."""
        for s in steps:
            idx = int(s["idx"])
            if s["state"] in ("confirmed", "skipped"):
                continue
            at = height_of(chain, s["txid"], tip)
            if at is not None and at > 0:
                self.set(idx, state="confirmed", confirmed_height=at, last_error=None)
                log.warning(
                    "%s %d (%s) %s confirmed at %d", self.label, idx, s["kind"], s["txid"], at
                )
                continue
            if at == 0:
                return False  # in the mempool: wait for a block
            tx = Transaction.from_hex(s["tx"])
            parent = height_of(chain, tx.inputs[0].prevout.txid_hex, tip)
            if parent is None or parent == 0:
                self.set(idx, wait_height=None)
                return False  # its parent is not confirmed (yet)
            ready = parent + int(s["delay"]) - 1  # from this tip the next block may hold it
            if tip < ready:
                self.set(idx, wait_height=ready)
                return False
            self.broadcast(chain, idx, tx, bool(s["cpfp"]))
            return False
        return True

    def broadcast(self, chain: BitcoindClient, idx: int, tx: Transaction, cpfp: bool) -> None:
        """Persist what goes out, then send it; a refusal is kept and retried next tick."""
        try:
            if cpfp:
                child = wallet_cpfp(chain, tx, CPFP_FEERATE)
                self.set(idx, state="broadcast", child=child.hex())
                result = chain.submit_package([tx, child])
                if not result.success:
                    why = "; ".join(r.error for r in result.results if r.error is not None)
                    raise ValueError(f"{result.package_msg}: {why}")
            else:
                self.set(idx, state="broadcast")
                chain.send_raw_transaction(tx)
        except (RpcError, ChainResponseError, ValueError) as exc:
            self.set(idx, state="waiting", last_error=str(exc)[:500])
            log.info("%s %d %s not accepted yet: %s", self.label, idx, tx.txid_hex, exc)
            return
        self.set(idx, last_error=None)
        log.warning("%s %d %s broadcast", self.label, idx, tx.txid_hex)
