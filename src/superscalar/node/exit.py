"""A client's unilateral exit, driven block by block: "the LSP is gone — get my money out".

`superscalar exit` asks the client daemon (control RPC `exit`) to leave its
funded factory without the LSP. The request is decided in one SQLite
transaction and then only carried out:

- the exit's whole plan: the factory path root→leaf (`client_exit` of our
  verified view, with the NEWEST leaf state from `leaf_advances`), our latest
  local commitment (the channel core's `ForceClose`, which also marks the channel
  force-closed so no update is ever signed again) and the sweep of its to_local
  to our payout script with an explicit fee — all signed now, all stored as
  `exit_steps` rows, together with the force-closed channel state;
- `exit_tick` (each second, on the daemon's loop) then walks the steps in order:
  a confirmed step is passed, a step in the mempool is waited for, and the next
  one goes out once its parent is confirmed and its relative lock (nSequence in
  blocks) can be met by the next block. Zero-fee tree txs and the commitment go
  as a package with a wallet CPFP child on their P2A anchor (the child is stored
  before it is sent); the sweep pays its own fee. The mempool is the judge of
  BIP68: a refusal is kept as `last_error` and tried again next time.

A client whose channel is frozen by a signed leaf advance without its DONE
(`signed_advance`) cannot know which leaf state the LSP will publish: the
newest one it holds signed (the old one) is its own path, and the re-anchored
commitment on the new one (signed before the leaf state, at the same balances)
is stored as 'alt-commitment' / 'alt-sweep' steps. If the new leaf state is the
one that confirms, those replace the leaf state, commitment and sweep.

A received HTLC/PTLC whose secret we hold and which is still in our latest commitment
(we fulfilled it, the LSP never completed the update: `ladder.enforce.revealed_claims`)
is claimed: its success tx ('htlc-success:ID', for a PTLC the LSP's adaptor signature
completed with the scalar) goes right after the commitment, its sweep ('htlc-sweep:ID')
after `to_self_delay`; an exit whose only value is such a claim (a moved channel with
nothing on our side yet) is allowed. Should the LSP's commitment confirm instead of
ours, 'remote-claim:TXID:ID' / 'remote-sweep:TXID' steps take the same HTLCs from it.
The client starts such an exit by itself when `ladder.enforce.claims_due` says so
(`ClientLadder.claim_exit_reason`, on its deadline loop).

Everything the loop needs is in the database, so a restarted daemon resumes
where the chain says it is. Other clients' outputs are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from superscalar.bitcoin.tx import OutPoint, Transaction
from superscalar.chain.bitcoind import BitcoindClient, ChainUnavailable
from superscalar.channel import (
    BroadcastTransaction,
    ChannelError,
    ChannelSecrets,
    ChannelState,
    ForceClose,
    signed_local_commitment,
    step,
)
from superscalar.channel.htlc import Direction
from superscalar.channel.onchain import (
    SpendInput,
    build_sweep,
    claim_remote_htlc_success,
    claim_remote_ptlc,
    htlc_second_stage,
    sweep_second_stage,
    sweep_to_local,
    sweep_to_remote,
)
from superscalar.channel.scripts import to_remote_output
from superscalar.channel.state import remote_commitment
from superscalar.factory import TxKind
from superscalar.factory.errors import FactoryError
from superscalar.factory.exits import client_exit
from superscalar.ladder.enforce import Claim
from superscalar.store.db import Database

from .chancodec import encode_state
from .channels import ChannelShell
from .common import now
from .steps import CPFP_FEERATE, SWEEP_FEERATE, StepTable, height_of

__all__ = [
    "CPFP_FEERATE",
    "SWEEP_FEERATE",
    "ExitRefused",
    "exit_loop",
    "exit_requested",
    "exit_status",
    "exit_tick",
    "plan_exit",
]

log = logging.getLogger(__name__)


class ExitRefused(RuntimeError):
    """The exit cannot start (no funded factory, no open channel, nothing to sweep)."""


def exit_requested(db: Database, fid: bytes) -> bool:
    row = db.execute("SELECT 1 FROM exits WHERE factory_id=?", (fid.hex(),)).fetchone()
    return row is not None


def _newest_leaf(db: Database, fid: bytes) -> Transaction | None:
    """Our leaf's newest state tx (signed) after leaf advances; None: the first one."""
    row = db.execute(
        "SELECT new_tx, new_sig FROM leaf_advances WHERE factory_id=? AND stage='done'"
        " ORDER BY generation DESC LIMIT 1",
        (fid.hex(),),
    ).fetchone()
    if row is None:
        return None
    return Transaction.from_hex(row["new_tx"]).with_witness(0, (bytes.fromhex(row["new_sig"]),))


def plan_exit(
    db: Database,
    fid: bytes,
    position: int,
    verified: Any,
    shell: ChannelShell,
    payout_script: bytes,
    height: int,
    signed_advance: tuple[Transaction, ChannelSecrets, ChannelState] | None = None,
    claims: Sequence[Claim] = (),
) -> None:
    """Sign every step of the exit and store them with the force-closed channel, atomically.

    The caller holds `shell.lock`; afterwards the shell's state is force-closed.
    `signed_advance`: a leaf state tx we gave our partial signature for whose DONE never
    came, and our channel re-anchored on it (see the module docstring).
    `claims`: received HTLCs/PTLCs of our latest commitment whose secret we hold (see
    `ladder.enforce.revealed_claims`): each gets its success tx ('htlc-success:ID',
    the peer's adaptor signature completed with a PTLC's scalar) right after the
    commitment, then its sweep after `to_self_delay` ('htlc-sweep:ID'). An exit whose
    only value is such a claim (a moved channel at 0 on our side) is allowed.
    """
    state = shell.state
    if state is None or state.local_commit is None:
        raise ExitRefused("our channel is not open: nothing to exit with")
    sigs = {
        int(r["session_id"]): bytes.fromhex(r["signature"])
        for r in db.execute(
            "SELECT session_id, signature FROM tree_signatures WHERE factory_id=?", (fid.hex(),)
        )
    }
    try:
        path = client_exit(verified, sigs)
    except FactoryError as exc:
        raise ExitRefused(f"cannot build our exit path: {exc}") from exc
    plan: list[tuple[str, Transaction, int, bool]] = []
    for s in path.steps:
        plan.append((str(s.kind), s.tx, s.relative_delay, True))
    leaf = _newest_leaf(db, fid)
    if leaf is not None:
        last = path.steps[-1]
        if leaf.inputs[0].prevout != last.tx.inputs[0].prevout:
            raise ExitRefused("the newest leaf state does not spend our leaf's kickoff")
        plan[-1] = (str(TxKind.STATE), leaf, leaf.inputs[0].sequence & 0xFFFF, True)
    try:
        commitment, ctx = signed_local_commitment(shell.secrets, state)
        t = step(shell.secrets, state, ForceClose())
    except ChannelError as exc:
        raise ExitRefused(f"cannot close our channel: {exc}") from exc
    successes: list[tuple[str, Transaction, int, bool]] = []
    sweeps: list[tuple[str, Transaction, int, bool]] = []
    for claim in claims:
        try:
            success = htlc_second_stage(
                shell.secrets,
                commitment,
                state.local_commit.htlc_signatures,
                Direction.RECEIVED,
                claim.htlc_id,
                claim.secret,
            )
            claim_sweep = build_sweep(
                [sweep_second_stage(shell.secrets, commitment, success)],
                payout_script,
                SWEEP_FEERATE,
            )
        except ChannelError as exc:  # trimmed (dust): nothing to claim on chain
            log.info("HTLC %d not claimable on chain: %s", claim.htlc_id, exc)
            continue
        successes.append((f"htlc-success:{claim.htlc_id}", success, 1, True))
        sweeps.append((f"htlc-sweep:{claim.htlc_id}", claim_sweep, commitment.to_self_delay, False))
    try:
        sweep: Transaction | None = build_sweep(
            [sweep_to_local(shell.secrets, commitment)], payout_script, SWEEP_FEERATE
        )
    except ChannelError as exc:
        if not successes:
            raise ExitRefused(f"cannot close our channel: {exc}") from exc
        sweep = None  # nothing of ours in to_local: the claims are the exit's value
    broadcast = [e.tx for e in t.effects if isinstance(e, BroadcastTransaction)]
    if [b.txid for b in broadcast] != [ctx.txid]:  # pragma: no cover - one core, one answer
        raise AssertionError("force close broadcasts a different commitment")
    if ctx.inputs[0].prevout.txid != plan[-1][1].txid:
        raise ExitRefused("our commitment does not spend the newest leaf state")
    leaf_step = len(plan) - 1
    plan.append(("commitment", ctx, 0, True))
    plan.extend(successes)  # second stages first: they must confirm before the expiry
    plan.extend(sweeps)
    if sweep is not None:
        plan.append(("sweep", sweep, commitment.to_self_delay, False))
    plan.extend(remote_claim_steps(shell.secrets, state, claims, payout_script))
    if signed_advance is not None:
        new_leaf, secrets, pending = signed_advance
        if new_leaf.inputs[0].prevout != plan[leaf_step][1].inputs[0].prevout:
            raise ExitRefused("the signed leaf advance does not spend our leaf's kickoff")
        try:
            alt, alt_ctx = signed_local_commitment(secrets, pending)
            alt_sweep = build_sweep([sweep_to_local(secrets, alt)], payout_script, SWEEP_FEERATE)
        except ChannelError as exc:
            raise ExitRefused(f"cannot close our re-anchored channel: {exc}") from exc
        if alt_ctx.inputs[0].prevout.txid != new_leaf.txid:
            raise ExitRefused("our re-anchored commitment does not spend the signed leaf state")
        plan.append(("alt-commitment", alt_ctx, 0, True))
        plan.append(("alt-sweep", alt_sweep, alt.to_self_delay, False))
    with db.transaction() as c:
        c.execute(
            "INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?)",
            (fid.hex(), position, encode_state(t.state), now()),
        )
        c.execute(
            "INSERT INTO exits VALUES (?, ?, 'running', ?, ?, ?)",
            (fid.hex(), position, height, now(), now()),
        )
        c.executemany(
            "INSERT INTO exit_steps (factory_id, idx, kind, tx, txid, delay, cpfp)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (fid.hex(), i, kind, tx.hex(), tx.txid_hex, delay, int(cpfp))
                for i, (kind, tx, delay, cpfp) in enumerate(plan)
            ],
        )
    shell.state = t.state


def remote_claim_steps(
    secrets: ChannelSecrets, state: ChannelState, claims: Sequence[Claim], payout_script: bytes
) -> list[tuple[str, Transaction, int, bool]]:
    """Should the LSP publish one of its unrevoked commitments instead of letting ours
    confirm: claim each of `claims` from it with the secret — a PTLC by its fixed claim
    tx (the LSP's adaptor signature completed with the scalar; zero fee, CPFP), an HTLC
    with the preimage — and sweep them with our to_remote ('remote-claim:TXID:ID',
    'remote-sweep:TXID' steps, TXID that commitment's; the driver follows whichever
    commitment confirms)."""
    out: list[tuple[str, Transaction, int, bool]] = []
    if not claims:
        return out
    seen: set[bytes] = set()
    mine = to_remote_output(secrets.payment.public_key)
    for latest in (False, True):
        rc = state.remote_commit
        if latest and state.remote_next_commit is not None:
            rc = state.remote_next_commit
        try:
            theirs = remote_commitment(state, latest=latest)
        except ChannelError:
            continue
        if theirs.txid in seen:
            continue
        seen.add(theirs.txid)
        tag = theirs.txid[::-1].hex()
        inputs: list[SpendInput] = []
        direct: list[SpendInput] = []
        for c in claims:
            try:
                vout = theirs.htlc_vout(Direction.OFFERED, c.htlc_id)
                if vout is None:
                    continue  # not in this commitment (or trimmed)
                htlc = theirs.outputs[vout].htlc
                if htlc is not None and htlc.is_ptlc:
                    claim = claim_remote_ptlc(
                        secrets, theirs, c.htlc_id, c.secret, rc.ptlc_claim_signatures
                    )
                    out.append((f"remote-claim:{tag}:{c.htlc_id}", claim, 1, True))
                    inputs.append(
                        SpendInput(
                            OutPoint(claim.txid, 0),
                            claim.outputs[0],
                            1,
                            secrets.payment,
                            mine,
                            mine.leaves[0],
                        )
                    )
                else:
                    direct.append(claim_remote_htlc_success(secrets, theirs, c.htlc_id, c.secret))
            except ChannelError as exc:
                log.info("HTLC %d not claimable on the LSP's commitment: %s", c.htlc_id, exc)
        if not inputs and not direct:
            continue
        with contextlib.suppress(ChannelError):
            direct.append(sweep_to_remote(secrets, theirs))
        try:  # claim-tx outputs first: the driver waits for input 0's parent
            sweep = build_sweep([*inputs, *direct], payout_script, SWEEP_FEERATE)
            out.append((f"remote-sweep:{tag}", sweep, 1, False))
        except ChannelError as exc:
            log.info("no sweep on the LSP's commitment %s: %s", tag, exc)
    return out


def _drive(db: Database, chain: BitcoindClient, fid: str) -> None:
    tip = chain.get_block_count()
    table = StepTable(db, "exit_steps", (("factory_id", fid),), "exit step")
    steps = table.rows()
    main = [s for s in steps if not str(s["kind"]).startswith(("alt-", "remote-"))]
    alts = [s for s in steps if str(s["kind"]).startswith("alt-")]
    remote: dict[str, list[Any]] = {}
    for s in steps:
        if str(s["kind"]).startswith("remote-"):
            remote.setdefault(str(s["kind"]).split(":")[1], []).append(s)
    steps = main
    for theirs, group in remote.items():  # the LSP's commitment confirmed instead of ours?
        at = height_of(chain, theirs, tip)
        if at is not None and at > 0:
            commit = next(i for i, s in enumerate(main) if s["kind"] == "commitment")
            _finish(db, fid, table.drive(chain, [*main[:commit], *group], tip))
            return
    if alts:  # the LSP published the leaf state of an advance it never finished?
        other = Transaction.from_hex(alts[0]["tx"]).inputs[0].prevout.txid_hex
        at = height_of(chain, other, tip)
        if at is not None and at > 0:
            leaf = next(i for i, s in enumerate(main) if s["kind"] == "commitment") - 1
            steps = [*main[:leaf], *alts]
    _finish(db, fid, table.drive(chain, steps, tip))


def _finish(db: Database, fid: str, done: bool) -> None:
    """Every step of the exit confirmed: it is done (the loop stops driving it)."""
    if done:
        with db.transaction() as c:
            c.execute(
                "UPDATE exits SET state='done', updated=? WHERE factory_id=? AND state='running'",
                (now(), fid),
            )


def exit_tick(db: Database, chain: BitcoindClient) -> None:
    """One pass over every running exit."""
    for row in db.execute("SELECT factory_id FROM exits WHERE state='running'").fetchall():
        _drive(db, chain, str(row["factory_id"]))


async def exit_loop(db: Database, chain: BitcoindClient, interval: float = 1.0) -> None:
    """`exit_tick` every `interval` seconds on the daemon's loop (it shares the daemon's db)."""
    while True:
        try:
            exit_tick(db, chain)
        except asyncio.CancelledError:
            raise
        except ChainUnavailable as exc:
            log.warning("exit: chain unavailable: %s", exc)
        except Exception:
            log.exception("exit step failed")
        await asyncio.sleep(interval)


def _step_fee(txs: dict[str, Transaction], tx: Transaction) -> int | None:
    """The fee `tx` pays out of its inputs (in minus out), when each input spends an
    earlier step of the same exit (the sweep spends our commitment's to_local: its fee
    comes out of our balance, so `status` shows it); None when an input is not ours to
    value (the root kickoff spends the factory's funding output)."""
    values = []
    for i in tx.inputs:
        parent = txs.get(i.prevout.txid_hex)
        if parent is None:
            return None
        values.append(parent.outputs[i.prevout.vout].value)
    return sum(values) - sum(o.value for o in tx.outputs)


def exit_status(db: Database) -> list[dict[str, Any]]:
    """Each exit's progress for `status`: step i/n, what it waits for, txids."""
    out = []
    for e in db.execute("SELECT * FROM exits ORDER BY created").fetchall():
        rows = db.execute(
            "SELECT * FROM exit_steps WHERE factory_id=? ORDER BY idx", (e["factory_id"],)
        ).fetchall()
        txs = {s["txid"]: Transaction.from_hex(s["tx"]) for s in rows}
        steps = [
            {
                "index": int(s["idx"]),
                "kind": s["kind"],
                "txid": s["txid"],
                "state": s["state"],
                "delay": int(s["delay"]),
                "wait_height": s["wait_height"],
                "confirmed_height": s["confirmed_height"],
                "last_error": s["last_error"],
                "fee_sat": _step_fee(txs, txs[s["txid"]]),
            }
            for s in rows
        ]
        done = sum(1 for s in steps if s["state"] == "confirmed")
        out.append(
            {
                "factory_id": e["factory_id"],
                "position": int(e["position"]),
                "state": e["state"],
                "requested_height": int(e["requested_height"]),
                "confirmed_steps": done,
                "total_steps": len(steps),
                "steps": steps,
            }
        )
    return out
