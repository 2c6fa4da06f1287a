"""The LSP enforces a payer's HTLC on chain: "I paid the payee; the payer will not settle".

The attack (issue 14, 10): payer P offers an HTLC to the LSP, the LSP forwards it,
payee Q fulfils downstream (the LSP paid Q), and P never takes the LSP's fulfil —
it stays silent until the HTLC's expiry and takes it back on chain by timeout.
The answer is the LSP's own unilateral close of P's channel, started in time:

- `EnforceTick` (each second, on the LSP's loop) looks at every channel of the live
  factory whose latest local commitment still holds a received HTLC whose preimage
  we have (`forwards` row 'fulfilled'). When `ladder.enforce.must_enforce` says
  so — `expiry − (P's worst-case exit delay + confirmation margin)` has come — it
  plans the close in one SQLite transaction (`plan_enforcement`): P's factory path
  root→leaf (every tree signature is ours; the leaf's newest signed state after
  leaf advances), our latest commitment (the channel core's `ForceClose`, which
  marks the channel force-closed in the same transaction, so no update is ever
  signed again), the HTLC-success tx of each such HTLC (with the preimage), the
  sweeps of their outputs and of our to_local after `to_self_delay` to a fresh
  wallet address, and — should P publish ITS commitment instead — the direct
  claim of each HTLC P offered on it (preimage path) with our to_remote. Every
  tx is signed and stored as an `enforce_steps` row before anything is broadcast.
- The same tick then drives each running plan block by block like a client's exit
  (`node.exit`): a confirmed step is passed, a step in the mempool waited for, the
  next one broadcast once its parent confirmed and its relative lock allows; zero
  fee txs go out as a package with a wallet CPFP child on their P2A anchor. If P's
  commitment confirms on our channel output, the 'alt' steps for it replace ours.
- `superscalar force-close --datadir L --client POS` plans the same close at once.

Everything is in the database, so a restarted LSP resumes where the chain is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import BitcoindClient, ChainUnavailable
from superscalar.channel import (
    BroadcastTransaction,
    ChannelError,
    ChannelSecrets,
    ChannelState,
    Direction,
    ForceClose,
    signed_local_commitment,
    step,
)
from superscalar.channel.onchain import (
    SpendInput,
    build_sweep,
    claim_remote_htlc_success,
    htlc_second_stage,
    sweep_second_stage,
    sweep_to_local,
    sweep_to_remote,
)
from superscalar.channel.state import Status, remote_commitment
from superscalar.factory import FactoryTree, TxKind
from superscalar.ladder.enforce import confirmation_margin, enforce_height, must_enforce
from superscalar.store.db import Database

from .chancodec import encode_state
from .channels import ChannelShell
from .common import now
from .steps import CPFP_FEERATE, SWEEP_FEERATE, StepTable, height_of

__all__ = [
    "CPFP_FEERATE",
    "SWEEP_FEERATE",
    "EnforceRefused",
    "Enforcer",
    "enforce_status",
    "payer_budget",
    "remote_claims",
]

log = logging.getLogger(__name__)


class EnforceRefused(RuntimeError):
    """The close cannot be planned; `code` says why in one word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Claimable:
    """A received HTLC we hold the preimage of, still in our latest local commitment."""

    htlc_id: int
    amount_msat: int
    cltv_expiry: int
    preimage: bytes


def payer_budget(tree: FactoryTree, position: int) -> tuple[int, int]:
    """(worst-case exit delay, confirmation margin) of client `position`'s path."""
    shape = tree.shape
    return (
        shape.exit_delay(shape.client_leaf[position]),
        confirmation_margin(len(shape.client_txs(position))),
    )


def claimable(db: Database, fid: bytes, shell: ChannelShell) -> list[Claimable]:
    """Received HTLCs of `shell` we fulfilled downstream and the payer has not settled off
    chain (they are still in our latest local commitment)."""
    state = shell.state
    if state is None or state.local_commit is None:
        return []
    out = []
    for r in db.execute(
        "SELECT up_htlc_id, preimage FROM forwards WHERE factory_id=? AND up_position=?"
        " AND state='fulfilled' AND preimage IS NOT NULL",
        (fid.hex(), shell.position),
    ).fetchall():
        h = state.local_commit.spec.find(Direction.RECEIVED, int(r["up_htlc_id"]))
        if h is not None:
            out.append(Claimable(h.id, h.amount_msat, h.cltv_expiry, bytes.fromhex(r["preimage"])))
    return out


def _path(
    db: Database, fid: bytes, tree: FactoryTree, position: int
) -> list[tuple[str, Transaction, int]]:
    """Client `position`'s signed path root→leaf, its leaf state the newest one signed."""
    sigs = {
        int(s["session_id"]): bytes.fromhex(s["signature"])
        for s in db.execute(
            "SELECT session_id, signature FROM tree_signatures WHERE factory_id=?", (fid.hex(),)
        )
    }
    path = []
    for i in tree.shape.client_txs(position):
        t = tree.txs[i]
        if i not in sigs:
            raise EnforceRefused("no-tree-signature", f"tree tx {i} has no stored signature")
        delay = 0 if t.kind is TxKind.KICKOFF else t.tx.inputs[0].sequence & 0xFFFF
        path.append((str(t.kind), t.tx.with_witness(0, (sigs[i],)), delay))
    leaf = tree.shape.client_leaf[position]
    row = db.execute(
        "SELECT new_tx, new_sig FROM leaf_advances WHERE factory_id=? AND leaf=? AND stage='done'"
        " ORDER BY generation DESC LIMIT 1",
        (fid.hex(), leaf),
    ).fetchone()
    if row is not None:
        newest = Transaction.from_hex(row["new_tx"])
        newest = newest.with_witness(0, (bytes.fromhex(row["new_sig"]),))
        if newest.inputs[0].prevout != path[-1][1].inputs[0].prevout:
            raise EnforceRefused("bad-leaf", "the newest leaf state does not spend the kickoff")
        path[-1] = (str(TxKind.STATE), newest, newest.inputs[0].sequence & 0xFFFF)
    return path


def plan_enforcement(
    db: Database,
    fid: bytes,
    shell: ChannelShell,
    tree: FactoryTree,
    payout_script: bytes,
    height: int,
    reason: str,
) -> dict[str, Any]:
    """Sign every step of the LSP's close of `shell`'s channel and store them with the
    force-closed channel state, atomically (the caller holds `shell.lock`)."""
    state = shell.state
    pos = shell.position
    if state is None or state.local_commit is None:
        raise EnforceRefused("no-channel", f"channel {pos} is not open")
    if db.execute(
        "SELECT 1 FROM enforcements WHERE factory_id=? AND position=?", (fid.hex(), pos)
    ).fetchone():
        raise EnforceRefused("already-enforcing", f"channel {pos} is already being closed")
    if state.status is not Status.OPEN and state.status is not Status.SHUTTING_DOWN:
        raise EnforceRefused("channel-not-open", f"channel {pos} is {state.status.value}")
    claims = claimable(db, fid, shell)
    plan: list[tuple[str, Transaction, int, bool, int | None]] = [
        (kind, tx, delay, True, None) for kind, tx, delay in _path(db, fid, tree, pos)
    ]
    try:
        commitment, ctx = signed_local_commitment(shell.secrets, state)
        t = step(shell.secrets, state, ForceClose())
    except ChannelError as exc:
        raise EnforceRefused("cannot-close", str(exc)) from exc
    if [e.tx.txid for e in t.effects if isinstance(e, BroadcastTransaction)] != [ctx.txid]:
        raise AssertionError("force close broadcasts a different commitment")  # pragma: no cover
    if ctx.inputs[0].prevout.txid != plan[-1][1].txid:
        raise EnforceRefused("bad-path", "our commitment does not spend the leaf state")
    plan.append(("commitment", ctx, 0, True, None))
    delay = commitment.to_self_delay
    sweeps: list[tuple[str, Transaction, int, bool, int | None]] = []
    for c in claims:
        try:
            success = htlc_second_stage(
                shell.secrets,
                commitment,
                state.local_commit.htlc_signatures,
                Direction.RECEIVED,
                c.htlc_id,
                c.preimage,
            )
            sweep = build_sweep(
                [sweep_second_stage(shell.secrets, commitment, success)],
                payout_script,
                SWEEP_FEERATE,
            )
        except ChannelError as exc:  # trimmed (dust): nothing to claim on chain
            log.info("HTLC %d of channel %d not claimable on chain: %s", c.htlc_id, pos, exc)
            continue
        plan.append((f"htlc-success:{c.htlc_id}", success, 1, True, c.amount_msat))
        sweeps.append((f"htlc-sweep:{c.htlc_id}", sweep, delay, False, c.amount_msat))
    with contextlib.suppress(ChannelError):  # no (or a dust) to_local: nothing ours there
        to_local = build_sweep(
            [sweep_to_local(shell.secrets, commitment)], payout_script, SWEEP_FEERATE
        )
        sweeps.append(("to-local-sweep", to_local, delay, False, None))
    plan.extend(sweeps)
    plan.extend(remote_claims(shell.secrets, state, {c.htlc_id: c for c in claims}, payout_script))
    with db.transaction() as tx_:
        tx_.execute(
            "INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?)",
            (fid.hex(), pos, encode_state(t.state), now()),
        )
        tx_.execute(
            "INSERT INTO enforcements VALUES (?, ?, 'running', ?, ?, ?, ?)",
            (fid.hex(), pos, reason, height, now(), now()),
        )
        tx_.executemany(
            "INSERT INTO enforce_steps (factory_id, position, idx, kind, tx, txid, delay, cpfp,"
            " amount_msat) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (fid.hex(), pos, i, kind, tx.hex(), tx.txid_hex, d, int(cpfp), amount)
                for i, (kind, tx, d, cpfp, amount) in enumerate(plan)
            ],
        )
    shell.state = t.state
    log.warning(
        "enforcing channel %d on chain (%s): %d steps, HTLCs %s",
        pos,
        reason,
        len(plan),
        [c.htlc_id for c in claims],
    )
    return {"factory_id": fid.hex(), "position": pos, "steps": len(plan), "reason": reason}


def remote_claims(
    secrets: ChannelSecrets,
    state: ChannelState,
    claims: Mapping[int, Claimable],
    payout_script: bytes,
) -> list[tuple[str, Transaction, int, bool, int | None]]:
    """If the payer publishes one of its unrevoked commitments instead (the one it holds
    and, if we signed a newer one it never revoked the old for, that one): claim each
    HTLC it offered us there with the preimage, with our to_remote, in one sweep ('alt'
    steps, keyed by that commitment's txid)."""
    out: list[tuple[str, Transaction, int, bool, int | None]] = []
    seen: set[bytes] = set()
    for latest in (False, True):
        try:
            theirs = remote_commitment(state, latest=latest)
        except ChannelError:
            continue
        if theirs.txid in seen:
            continue
        seen.add(theirs.txid)
        inputs: list[SpendInput] = []
        amount = 0
        for c in claims.values():
            try:
                inputs.append(claim_remote_htlc_success(secrets, theirs, c.htlc_id, c.preimage))
                amount += c.amount_msat
            except ChannelError:
                continue
        if not inputs:
            continue
        with contextlib.suppress(ChannelError):
            inputs.append(sweep_to_remote(secrets, theirs))
        try:
            tx = build_sweep(inputs, payout_script, SWEEP_FEERATE)
        except ChannelError as exc:
            log.info("no claim on the payer's commitment %s: %s", theirs.txid[::-1].hex(), exc)
            continue
        out.append((f"alt-claim:{theirs.txid[::-1].hex()}", tx, 1, False, amount))
    return out


# -- driving a plan ----------------------------------------------------------------------------


def _drive(db: Database, chain: BitcoindClient, fid: str, pos: int) -> None:
    tip = chain.get_block_count()
    table = StepTable(db, "enforce_steps", (("factory_id", fid), ("position", pos)), "enforce step")
    rows = table.rows()
    main = [s for s in rows if not str(s["kind"]).startswith("alt-")]
    alts = [s for s in rows if str(s["kind"]).startswith("alt-")]
    commit_at = next(i for i, s in enumerate(main) if s["kind"] == "commitment")
    steps = main
    for alt in alts:  # the payer published its commitment on our channel output?
        parent = Transaction.from_hex(alt["tx"]).inputs[0].prevout.txid_hex
        at = height_of(chain, parent, tip)
        if at is not None and at > 0:
            steps = [*main[:commit_at], alt]
            for s in main[commit_at:]:
                if s["state"] != "skipped":
                    table.set(int(s["idx"]), state="skipped")
            break
    if table.drive(chain, steps, tip):
        with db.transaction() as c:
            c.execute(
                "UPDATE enforcements SET state='done', updated=? WHERE factory_id=?"
                " AND position=? AND state='running'",
                (now(), fid, pos),
            )


# -- the LSP's service -------------------------------------------------------------------------


class Enforcer:
    """Decides when to go on chain for a payer's HTLC and drives every running close.

    Ports: the live factory id, its channels, its tree (after leaf advances) and a fresh
    payout script of the LSP's wallet, all given by the LSP daemon."""

    def __init__(
        self,
        db: Database,
        chain: BitcoindClient,
        factory_id: Callable[[], bytes | None],
        channels: Callable[[], Mapping[int, ChannelShell]],
        tree: Callable[[bytes], FactoryTree],
        payout_script: Callable[[], bytes],
    ) -> None:
        self.db = db
        self.chain = chain
        self.factory_id = factory_id
        self.channels = channels
        self.tree = tree
        self.payout_script = payout_script

    def due(self, height: int) -> list[tuple[int, Claimable]]:
        """(position, HTLC) pairs of the live factory that must go on chain at `height`."""
        fid = self.factory_id()
        if fid is None:
            return []
        out: list[tuple[int, Claimable]] = []
        for pos, shell in sorted(self.channels().items()):
            if shell.state is None or shell.state.status is not Status.OPEN:
                continue
            held = claimable(self.db, fid, shell)
            if not held:
                continue  # the usual case: no tree needed
            delay, margin = payer_budget(self.tree(fid), pos)
            out.extend((pos, c) for c in held if must_enforce(height, c.cltv_expiry, delay, margin))
        return out

    async def enforce(self, pos: int, reason: str) -> dict[str, Any]:
        """Plan the close of channel `pos` of the live factory (then `tick` drives it)."""
        fid = self.factory_id()
        shell = self.channels().get(pos)
        if fid is None or shell is None:
            raise EnforceRefused("no-channel", f"no channel at position {pos}")
        async with shell.lock:
            return plan_enforcement(
                self.db,
                fid,
                shell,
                self.tree(fid),
                self.payout_script(),
                self.chain.get_block_count(),
                reason,
            )

    async def tick(self) -> None:
        height = self.chain.get_block_count()
        for pos, c in self.due(height):
            fid = self.factory_id()
            assert fid is not None
            delay, margin = payer_budget(self.tree(fid), pos)
            try:
                await self.enforce(
                    pos,
                    f"htlc {c.htlc_id} expires at {c.cltv_expiry}; enforce from"
                    f" {enforce_height(c.cltv_expiry, delay, margin)}",
                )
            except EnforceRefused as exc:
                if exc.code != "already-enforcing":
                    log.error("cannot enforce channel %d: %s", pos, exc)
        for row in self.db.execute(
            "SELECT factory_id, position FROM enforcements WHERE state='running'"
        ).fetchall():
            _drive(self.db, self.chain, str(row["factory_id"]), int(row["position"]))

    async def loop(self, interval: float = 1.0) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except ChainUnavailable as exc:
                log.warning("enforce: chain unavailable: %s", exc)
            except Exception:
                log.exception("enforce tick failed")
            await asyncio.sleep(interval)


def enforce_status(db: Database) -> list[dict[str, Any]]:
    """Each on-chain enforcement's progress for `status`."""
    out = []
    for e in db.execute("SELECT * FROM enforcements ORDER BY created").fetchall():
        steps = [
            {
                "index": int(s["idx"]),
                "kind": s["kind"],
                "txid": s["txid"],
                "state": s["state"],
                "delay": int(s["delay"]),
                "amount_msat": s["amount_msat"],
                "wait_height": s["wait_height"],
                "confirmed_height": s["confirmed_height"],
                "last_error": s["last_error"],
            }
            for s in db.execute(
                "SELECT * FROM enforce_steps WHERE factory_id=? AND position=? ORDER BY idx",
                (e["factory_id"], e["position"]),
            )
        ]
        out.append(
            {
                "factory_id": e["factory_id"],
                "position": int(e["position"]),
                "state": e["state"],
                "reason": e["reason"],
                "requested_height": int(e["requested_height"]),
                "steps": steps,
            }
        )
    return out
