"""The distribution tx in the daemons: signed in the factory ceremony, broadcast at its locktime.

The distribution tx (`factory.distribution_tx`) spends the funding output by
key path, pays every client its opening balance to its own payout script and
the LSP the rest, with zero fee and a P2A anchor. It is one more MuSig2
session (`DISTRIBUTION_SESSION`, every participant) in the factory's own
ceremony rounds: PROPOSE carries its terms, each client checks its own payout
and the locktime before it sends a nonce, READY carries the signature, and
the LSP broadcasts the funding tx only after every client acknowledged READY
(`factory_ready_ack`) — so no factory is funded whose distribution tx some
client does not hold.

Its nLockTime is `Lifecycle.distribution_at`: `LadderParams.distribution_margin`
blocks *before* the CLTV timeout, so it becomes valid before the LSP's timeout
path. When it is due and the funding output is still unspent:

- a client broadcasts it (LSP gone: it is paid its opening balance) unless it
  handed its key to the LSP at a turnover (it moved: its money is elsewhere);
- the LSP broadcasts it for a factory none of whose clients moved (clients
  gone: each is paid its default, the LSP recovers the rest) instead of
  sweeping the whole funding through the timeout path later.

Each broadcast is the zero-fee parent plus a wallet-funded CPFP child on the
anchor, submitted as a package. A factory whose clients partly moved keeps
the timeout-path recovery (the distribution tx would pay the movers twice).

**Kickoff defense.** A stayer of such a factory (or anyone holding its copy)
could still broadcast the distribution tx at its locktime and pay every
mover its opening balance a second time, at the LSP's expense. So the LSP,
`KICKOFF_LEAD` blocks before the locktime, broadcasts the factory's
pre-signed root kickoff (tree tx 0, zero fee, CPFP on its anchor): once it
confirms, the distribution tx's only input is spent and it can never
confirm. The kickoff's output has the same MuSig2/timeout script as the
funding output, so the LSP's CLTV sweep takes it instead (`exits.
onchain_node_outputs`). The decision (the signed kickoff) is stored in
`kickoffs` before the first broadcast; each poll re-broadcasts it until it
confirms, so a restarted LSP picks it up. A stayer that comes back after the
kickoff confirmed, before the CLTV, is closed out cooperatively from the
kickoff's output instead of the funding output (`ClosePropose.from_kickoff`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from superscalar.bitcoin.fees import Feerate, dust_limit
from superscalar.bitcoin.tx import Transaction, TxOut
from superscalar.chain.bitcoind import BitcoindClient, ChainResponseError, ChainUnavailable
from superscalar.chain.rpc import RpcError
from superscalar.factory import (
    FactoryTree,
    FundingRef,
    FundingSpend,
    VerifiedView,
    distribution_tx,
    funding_distribution,
)
from superscalar.store.db import Database
from superscalar.wire.codec import Hex, decode_record, encode_record
from superscalar.wire.messages import DistributionTerms, Payout

from .common import now, wallet_cpfp

__all__ = [
    "DISTRIBUTION_FEERATE",
    "DISTRIBUTION_SESSION",
    "KICKOFF_LEAD",
    "client_payout_sat",
    "client_terms_refusal",
    "defense_locktime",
    "distribute_due",
    "distribute_loop",
    "kickoff_status",
    "lsp_distribution",
    "new_terms",
    "push_kickoff",
    "record_kickoff",
    "record_signed",
    "record_terms",
    "status_of",
    "stored_terms",
    "view_distribution",
]

log = logging.getLogger(__name__)

DISTRIBUTION_SESSION = 1 << 30
"""Session id of the distribution tx in the factory ceremony (tree sessions are tx indexes)."""

DISTRIBUTION_FEERATE = Feerate(2000)
"""Package feerate of distribution tx + CPFP child (sat/kvB)."""


KICKOFF_LEAD = 3
"""Blocks before the distribution locktime at which the LSP broadcasts the root kickoff.

The distribution tx is final for block `locktime + 1`; the kickoff broadcast at tip
`locktime - KICKOFF_LEAD` may enter block `locktime - KICKOFF_LEAD + 1`, so it has
KICKOFF_LEAD blocks to confirm first (one block at the package feerate, plus two to
re-broadcast after a miss). Later would race the distribution tx; much earlier would
give up the factory's cooperative close with its returning stayers sooner than needed."""


def client_payout_sat(opening_msat: int, script: bytes) -> int:
    """A client's distribution payout: its opening balance in whole sat, 0 if that is dust
    (no output; the LSP's remainder takes it, like a close's rounding)."""
    sat = opening_msat // 1000
    return sat if sat >= dust_limit(script) else 0


def _outputs(terms: DistributionTerms) -> list[TxOut]:
    return [TxOut(p.amount_sat, bytes(p.script)) for p in terms.payouts if p.amount_sat]


def lsp_distribution(tree: FactoryTree, terms: DistributionTerms) -> FundingSpend:
    """The LSP's distribution tx and its session, from the whole tree."""
    return distribution_tx(
        tree.scripts,
        _outputs(terms),
        bytes(terms.lsp_script),
        terms.locktime,
        DISTRIBUTION_SESSION,
    )


def view_distribution(verified: VerifiedView, terms: DistributionTerms) -> FundingSpend:
    """The same tx and session, built by a client from its path view alone."""
    view = verified.view
    ref = FundingRef(view.funding_outpoint, view.funding_amount, view.lsp, view.participants)
    return funding_distribution(
        verified.funding_output,
        ref,
        view.params,
        _outputs(terms),
        bytes(terms.lsp_script),
        terms.locktime,
        DISTRIBUTION_SESSION,
    )


def client_terms_refusal(
    terms: DistributionTerms | None,
    position: int,
    n_clients: int,
    payout_script: bytes,
    opening_msat: int,
    cltv_timeout: int,
) -> str | None:
    """Why a client refuses the proposed distribution terms (None: they pay it in full)."""
    if terms is None:
        return "the proposal has no distribution tx"
    if len(terms.payouts) != n_clients:
        return "the distribution tx does not list one payout per client"
    ours = terms.payouts[position]
    expected = client_payout_sat(opening_msat, payout_script)
    if bytes(ours.script) != payout_script or ours.amount_sat != expected:
        return f"the distribution tx does not pay us {expected} sat to our payout script"
    if not 0 < terms.locktime < cltv_timeout:
        return (
            f"distribution locktime {terms.locktime} is not before the factory's"
            f" CLTV timeout {cltv_timeout}"
        )
    return None


def new_terms(
    payouts: Sequence[tuple[bytes, int]], lsp_script: bytes, locktime: int
) -> DistributionTerms:
    """Terms from (payout script, opening msat) per client position."""
    return DistributionTerms(
        payouts=tuple(
            Payout(script=Hex(s), amount_sat=client_payout_sat(msat, s)) for s, msat in payouts
        ),
        lsp_script=Hex(lsp_script),
        locktime=locktime,
    )


def record_terms(
    c: sqlite3.Connection, fid: bytes, terms: DistributionTerms, payout_sat: int | None
) -> None:
    c.execute(
        "INSERT OR REPLACE INTO distributions (factory_id, terms, locktime, payout_sat, state,"
        " updated) VALUES (?, ?, ?, ?, 'unsigned', ?)",
        (fid.hex(), encode_record(terms).decode(), terms.locktime, payout_sat, now()),
    )


def record_signed(c: sqlite3.Connection, fid: bytes, tx: Transaction) -> None:
    """The fully signed tx: from here on this party can broadcast it alone."""
    c.execute(
        "UPDATE distributions SET tx=?, state='held', updated=? WHERE factory_id=?"
        " AND state='unsigned'",
        (tx.hex(), now(), fid.hex()),
    )


def stored_terms(db: Database, fid: bytes) -> DistributionTerms | None:
    row = db.execute("SELECT terms FROM distributions WHERE factory_id=?", (fid.hex(),)).fetchone()
    return None if row is None else decode_record(row["terms"], DistributionTerms)


def status_of(db: Database, fid: str) -> dict[str, Any] | None:
    """What `status` shows: locktime, our payout, the tx and whether it was broadcast."""
    row = db.execute("SELECT * FROM distributions WHERE factory_id=?", (fid,)).fetchone()
    if row is None:
        return None
    tx = Transaction.from_hex(row["tx"]) if row["tx"] else None
    return {
        "locktime": int(row["locktime"]),
        "payout_sat": None if row["payout_sat"] is None else int(row["payout_sat"]),
        "state": row["state"],
        "txid": tx.txid_hex if tx is not None else None,
        "outputs": [o.value for o in tx.outputs] if tx is not None else [],
    }


def _funding_unspent(chain: BitcoindClient, tx: Transaction) -> bool:
    prev = tx.inputs[0].prevout
    return chain.get_tx_out(prev.txid[::-1].hex(), prev.vout) is not None


def _known(chain: BitcoindClient, txid: str) -> bool:
    try:
        chain.get_raw_transaction(txid)
    except (RpcError, ChainResponseError):
        return False
    return True


def distribute_due(
    db: Database,
    chain: BitcoindClient,
    role: str,
    allowed: Callable[[bytes], bool],
    on_broadcast: Callable[[bytes, Transaction], None] = lambda fid, tx: None,
) -> list[str]:
    """Broadcast every held distribution tx that is final (tip ≥ nLockTime: it may enter
    the next block), whose factory (of `role`) is still funded — or closing: a close we
    signed but have not seen confirmed disarms nothing — with its funding output unspent,
    and that `allowed(fid)`; returns the txids recorded as broadcast.

    A distribution tx already spending the funding output (ours from before a restart,
    or another party's copy, even one we would not have sent) is recorded as broadcast
    and the factory as paid out by it; a funding spent by anything else (a close, an
    exit) leaves it held and unused.
    """
    height = chain.get_block_count()
    done: list[str] = []
    rows = db.execute(
        "SELECT d.factory_id, d.tx, d.locktime FROM distributions d JOIN factories f"
        " ON f.factory_id = d.factory_id WHERE d.state='held' AND f.role=? AND"
        " f.state IN ('funded', 'closing') AND d.locktime <= ?",
        (role, height),
    ).fetchall()
    for row in rows:
        fid = bytes.fromhex(row["factory_id"])
        tx = Transaction.from_hex(row["tx"])
        try:
            if _funding_unspent(chain, tx):
                if not allowed(fid):
                    continue
                result = chain.submit_package([tx, wallet_cpfp(chain, tx, DISTRIBUTION_FEERATE)])
                if not result.success:
                    log.warning("distribution %s refused: %s", tx.txid_hex, result)
                    continue
            elif not _known(chain, tx.txid_hex):
                continue
        except (RpcError, ChainResponseError, ChainUnavailable, ValueError) as exc:
            log.warning("distribution %s not broadcast: %s", tx.txid_hex, exc)
            continue
        with db.transaction() as c:
            c.execute(
                "UPDATE distributions SET state='broadcast', broadcast_txid=?, updated=?"
                " WHERE factory_id=?",
                (tx.txid_hex, now(), fid.hex()),
            )
        on_broadcast(fid, tx)
        log.warning(
            "factory %s paid out by its distribution tx %s at height %d (locktime %d): %s",
            fid.hex()[:16],
            tx.txid_hex,
            height,
            int(row["locktime"]),
            [o.value for o in tx.outputs],
        )
        done.append(tx.txid_hex)
    return done


async def distribute_loop(
    db: Database,
    chain: BitcoindClient,
    role: str,
    allowed: Callable[[bytes], bool],
    on_broadcast: Callable[[bytes, Transaction], None] = lambda fid, tx: None,
    interval: float = 1.0,
) -> None:
    """`distribute_due` every `interval` seconds, on the loop (it shares the daemon's db)."""
    while True:
        try:
            distribute_due(db, chain, role, allowed, on_broadcast)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("distribution check failed")
        await asyncio.sleep(interval)


# -- the kickoff defense ------------------------------------------------------------------


def defense_locktime(db: Database, fid: bytes, height: int) -> int | None:
    """The locktime of factory `fid`'s held distribution tx if, at `height`, the LSP must
    broadcast the kickoff now (tip ≥ locktime − KICKOFF_LEAD); else None."""
    row = db.execute(
        "SELECT locktime FROM distributions WHERE factory_id=? AND state='held'", (fid.hex(),)
    ).fetchone()
    if row is None or height < int(row["locktime"]) - KICKOFF_LEAD:
        return None
    return int(row["locktime"])


def record_kickoff(
    c: sqlite3.Connection, fid: bytes, tx: Transaction, locktime: int, height: int
) -> None:
    """The decision, stored before the first broadcast (a restart re-broadcasts it)."""
    c.execute(
        "INSERT OR IGNORE INTO kickoffs (factory_id, tx, txid, locktime, state, decided_height,"
        " updated) VALUES (?, ?, ?, ?, 'decided', ?, ?)",
        (fid.hex(), tx.hex(), tx.txid_hex, locktime, height, now()),
    )


def kickoff_status(db: Database, fid: bytes) -> dict[str, Any] | None:
    """What `status` shows of a kickoff defense (None: none decided for `fid`)."""
    row = db.execute("SELECT * FROM kickoffs WHERE factory_id=?", (fid.hex(),)).fetchone()
    if row is None:
        return None
    return {
        "txid": row["txid"],
        "state": row["state"],
        "locktime": int(row["locktime"]),
        "decided_height": int(row["decided_height"]),
        "confirmed_height": row["confirmed_height"],
    }


def _confirmations(chain: BitcoindClient, txid: str) -> int | None:
    """None: unknown to the node; 0: in the mempool; n: confirmed n times."""
    try:
        return chain.get_raw_transaction_verbose(txid).confirmations
    except (RpcError, ChainResponseError):
        return None


def push_kickoff(db: Database, chain: BitcoindClient, fid: bytes) -> str | None:
    """Drive factory `fid`'s decided kickoff towards a block: record it confirmed once it
    is, else (re)submit it with a wallet CPFP child unless the mempool has it. Returns
    what happened worth an event (None: nothing new)."""
    row = db.execute("SELECT * FROM kickoffs WHERE factory_id=?", (fid.hex(),)).fetchone()
    if row is None or row["state"] == "confirmed":
        return None
    tx = Transaction.from_hex(row["tx"])
    try:
        confs = _confirmations(chain, tx.txid_hex)
        if confs:
            height = chain.get_block_count() - confs + 1
            with db.transaction() as c:
                c.execute(
                    "UPDATE kickoffs SET state='confirmed', confirmed_height=?, updated=?"
                    " WHERE factory_id=?",
                    (height, now(), fid.hex()),
                )
            return (
                f"kickoff {tx.txid_hex[:16]} of factory {fid.hex()[:16]} confirmed at height"
                f" {height} (distribution locktime {row['locktime']}): its distribution tx"
                " can never confirm"
            )
        if confs == 0:
            return None
        if not _funding_unspent(chain, tx):
            return None  # spent by something else (a close); the walk of the sweep sees it
        result = chain.submit_package([tx, wallet_cpfp(chain, tx, DISTRIBUTION_FEERATE)])
    except (RpcError, ChainResponseError, ChainUnavailable, ValueError) as exc:
        return f"kickoff {tx.txid_hex[:16]} not broadcast: {exc}"
    if not result.success:
        return f"kickoff {tx.txid_hex[:16]} refused: {result}"
    first = row["state"] == "decided"
    with db.transaction() as c:
        c.execute(
            "UPDATE kickoffs SET state='broadcast', updated=? WHERE factory_id=?",
            (now(), fid.hex()),
        )
    return (
        f"kickoff {tx.txid_hex[:16]} of factory {fid.hex()[:16]}"
        f" {'broadcast' if first else 're-broadcast'} before its distribution locktime"
        f" {row['locktime']}"
    )
