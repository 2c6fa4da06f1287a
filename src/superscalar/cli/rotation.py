"""`superscalar demo --rotation`: one rung of the ladder, from birth to replacement.

An LSP and four clients on the embedded kernel chain:

1. factory 0 is funded from the LSP's wallet, its tree signed (MuSig2), leaf
   channels open on its channel outputs; alice pays bob through the LSP;
2. blocks pass: factory 0 turns DYING, a new HTLC on it is refused;
3. factory 1 is funded and signed; each client's new channel opens with
   everything on the LSP's side;
4. the atomic move: the LSP offers each client one PTLC of exactly its old
   balance (msat), locked to its factory-0 key; the client's fulfil pays it
   and reveals that key to the LSP (PTLC key turnover, `ladder.move`);
5. the LSP closes factory 0 alone with those keys; the close is mined;
6. bob pays carol in factory 1; factory 1 closes on the channel balances.

Channels and signing ceremonies run in this process (the networked daemons
do the same over sockets); every transaction is mined into a block the
kernel accepts, and every amount is checked to the satoshi.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import p2tr_script
from superscalar.bitcoin.tx import Transaction, TxOut
from superscalar.chain.node import RegtestNode
from superscalar.channel import (
    AddHtlc,
    ChannelError,
    FulfillHtlc,
    Funding,
    IncomingHtlcCommitted,
    LoopbackChannel,
    OutgoingHtlcFulfilled,
    Side,
    channel_balances,
)
from superscalar.channel.htlc import ptlc_payment_hash
from superscalar.crypto.keys import SecretKey
from superscalar.factory import (
    ClientSpec,
    DWParams,
    FactoryParams,
    FactorySpec,
    FactoryState,
    FactoryTree,
    LStockSecrets,
    SignedTree,
    SigningPlan,
    build_shape,
    cooperative_close,
    run_ceremony,
    sign_tree,
)
from superscalar.factory.outputs import timeout_output
from superscalar.ladder import (
    REGTEST_LADDER,
    Ladder,
    LadderParams,
    Lifecycle,
    check_move_ptlc,
    factory_key,
    lsp_alone_close,
    plan_move,
)
from superscalar.node.channels import CHANNEL_CONFIG, channel_secrets

__all__ = ["RotationResult", "run_rotation", "run_rotation_demo"]

CLIENTS = ("alice", "bob", "carol", "dave")
AMOUNT_SAT = 200_000
"""Each client's own money at join; its channel is twice that (the LSP's inbound half)."""
LSTOCK_SAT = 50_000
ANCHOR_SAT = 240
FEERATE = Feerate(2000)


@dataclass
class FactoryRun:
    """One factory of the ladder as the demo holds it: tree, channels, lifecycle."""

    rung: int
    signed: SignedTree
    lifecycle: Lifecycle
    channels: dict[str, LoopbackChannel]
    keys: dict[str, SecretKey]
    """Each client's key in this factory."""

    def key_lookup(self, name: str) -> Callable[[bytes], SecretKey | None]:
        """For a client's turnover shell: its key in this factory, None for any other."""
        key = self.keys[name]
        return lambda fid: key if fid == self.fid else None

    @property
    def fid(self) -> bytes:
        return self.signed.tree.shape.spec.funding_outpoint.txid

    @property
    def funding_amount(self) -> int:
        return self.signed.tree.shape.spec.funding_amount

    def client_msat(self, name: str) -> int:
        return channel_balances(self.channels[name].b.state).local_msat


@dataclass
class RotationResult:
    """What the demo measured, for the caller (and the test) to check."""

    ok: bool = False
    balances_before: dict[str, int] = field(default_factory=dict)
    balances_moved: dict[str, int] = field(default_factory=dict)
    refused_htlc: str = ""
    turnover_ms: list[float] = field(default_factory=list)
    rotation_s: float = 0.0
    close0_txid: str = ""
    close0_vsize: int = 0
    close0_fee: int = 0
    close1_payouts: dict[str, int] = field(default_factory=dict)
    close1_txid: str = ""
    phases: list[dict[str, str]] = field(default_factory=list)


class _World:
    def __init__(self, node: RegtestNode, workdir: Path, params: LadderParams) -> None:
        self.node = node
        self.workdir = workdir
        self.params = params
        self.miner = node.wallet.new_script()
        self.lsp = SecretKey(hashlib.sha256(b"rotation demo lsp " + os.urandom(16)).digest())
        self.nodes = {n: SecretKey.generate() for n in CLIENTS}
        self.payout = {n: p2tr_script(k.xonly_public_key) for n, k in self.nodes.items()}
        self.lsp_script = p2tr_script(self.lsp.xonly_public_key)
        self.runs: list[FactoryRun] = []

    # -- factories and channels ------------------------------------------------------------

    def open_factory(self, rung: int, client_msat: dict[str, int], capacity: int) -> FactoryRun:
        """Fund, build and sign a factory; open each client's channel at `client_msat`."""
        node = self.node
        created = node.height
        lifecycle = self.params.lifecycle(created)
        fparams = FactoryParams(cltv_timeout=lifecycle.cltv_timeout, arity=(2,), dw=DWParams(4, 2))
        names = list(client_msat)
        keys = {n: factory_key(self.nodes[n], rung) for n in names}
        clients = tuple(ClientSpec(keys[n].public_key, capacity) for n in names)
        funding = len(names) * (capacity + LSTOCK_SAT) + 8 * len(names) * ANCHOR_SAT
        script = timeout_output(
            [self.lsp.public_key, *(c.key for c in clients)],
            self.lsp.xonly_public_key,
            fparams.cltv_timeout,
        ).script_pubkey
        funding_tx = node.send_to(script, funding)
        node.mine(1, self.miner)
        vout = next(i for i, o in enumerate(funding_tx.outputs) if o.script_pubkey == script)
        spec = FactorySpec(
            self.lsp.public_key, clients, funding_tx.outpoint(vout), funding, fparams
        )
        shape = build_shape(spec)
        lstock = LStockSecrets(os.urandom(32))
        state = FactoryState.initial(shape, [lstock.point(i, 0) for i in range(len(shape.leaves))])
        tree = FactoryTree.build(shape, state)
        all_keys = {0: self.lsp, **{p + 1: keys[n] for p, n in enumerate(names)}}
        signed = sign_tree(tree, all_keys)
        fid = funding_tx.txid
        channels = {}
        for pos, n in enumerate(names):
            out = tree.channel_txout(pos)
            channels[n] = LoopbackChannel.open(
                Funding(tree.channel_outpoint(pos), out.value),
                CHANNEL_CONFIG,
                (b"", b""),
                (out.value * 1000 - client_msat[n], client_msat[n]),
                (self.lsp_script, self.payout[n]),
                names=("lsp", n),
                chain_height=node.height,
                secrets=(channel_secrets(self.lsp, fid, pos), channel_secrets(keys[n], fid, pos)),
            )
        run = FactoryRun(rung, signed, lifecycle, channels, keys)
        self.runs.append(run)
        return run

    def ladder(self) -> Ladder:
        return Ladder.of(self.params, [(r.fid, r.lifecycle.created) for r in self.runs])

    # -- payments ---------------------------------------------------------------------------

    @staticmethod
    def _take(side: Side, kind: type[Any]) -> list[Any]:
        found = [e for e in side.notices if isinstance(e, kind)]
        side.notices.clear()
        return found

    def pay(self, run: FactoryRun, payer: str, payee: str, amount_msat: int) -> None:
        """payer → LSP → payee with a real preimage; refused unless the factory is ACTIVE."""
        height = self.node.height
        delta = CHANNEL_CONFIG.min_cltv_delta + 2
        cltv, up_cltv = height + delta, height + 2 * delta  # the LSP keeps a delta between them
        if not run.lifecycle.accepts_htlc(height, up_cltv):
            raise ChannelError(
                f"factory {run.rung} is {run.lifecycle.phase(height)} at height {height}:"
                " no new HTLCs"
            )
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        up, down = run.channels[payer], run.channels[payee]
        onion = self.nodes[payee].public_key.data
        up.apply(up.b, AddHtlc(amount_msat, payment_hash, up_cltv, onion))
        up.settle()
        (incoming,) = self._take(up.a, IncomingHtlcCommitted)
        down.apply(down.a, AddHtlc(amount_msat, payment_hash, cltv))
        down.settle()
        (arrived,) = self._take(down.b, IncomingHtlcCommitted)
        down.apply(down.b, FulfillHtlc(arrived.htlc.id, preimage))
        down.settle()
        (done,) = self._take(down.a, OutgoingHtlcFulfilled)
        up.apply(up.a, FulfillHtlc(incoming.htlc.id, done.preimage))
        up.settle()
        self._take(up.b, OutgoingHtlcFulfilled)

    # -- the atomic move: one PTLC per client ---------------------------------------------

    def move(self, old: FactoryRun, new: FactoryRun) -> tuple[dict[bytes, SecretKey], list[float]]:
        """Each client's old balance crosses as one PTLC locked to its key in `old`; its
        fulfil reveals that key. Returns the LSP's recovered keys and per-move times (ms)."""
        keys: dict[bytes, SecretKey] = {}
        times: list[float] = []
        height = self.node.height
        timeout = old.lifecycle.cltv_timeout
        for name, old_key in old.keys.items():
            start = time.perf_counter()
            ch = new.channels[name]
            balance = old.client_msat(name)
            point = old_key.public_key
            plan = plan_move(
                balance,
                ch.a.state.funding.amount_sat,
                CHANNEL_CONFIG,
                point,
                height=height,
                old_timeout=timeout,
            )
            ch.apply(
                ch.a,
                AddHtlc(plan.amount_msat, ptlc_payment_hash(point), plan.cltv_expiry, point=point),
            )
            ch.settle()
            (incoming,) = self._take(ch.b, IncomingHtlcCommitted)
            scalar = check_move_ptlc(
                incoming.htlc,
                expected_msat=balance,
                key=old_key,
                height=height,
                min_cltv_delta=CHANNEL_CONFIG.min_cltv_delta,
                old_timeout=timeout,
                new_exit_delay=new.signed.tree.shape.worst_case_exit_delay,
            )
            ch.apply(ch.b, FulfillHtlc(incoming.htlc.id, scalar))
            ch.settle()
            (done,) = self._take(ch.a, OutgoingHtlcFulfilled)
            secret = SecretKey(done.preimage)
            if secret.public_key != point:  # pragma: no cover - the channel core checked it
                raise RuntimeError("the revealed scalar is not the client's factory-0 key")
            keys[point.data] = secret
            times.append((time.perf_counter() - start) * 1000)
        return keys, times

    # -- closes -----------------------------------------------------------------------------

    def mine(self, tx: Transaction) -> None:
        self.node.send(tx)
        self.node.mine(1, self.miner)

    def confirmed(self, txid: bytes) -> bool:
        status = self.node.transaction(txid)
        return status is not None and status.height is not None


DEMO_LADDER = LadderParams(REGTEST_LADDER.active_blocks, 50)
"""Regtest's active period, and a dying period long enough for a move PTLC the clients
accept: its expiry (a margin before factory 0's CLTV) must leave them factory 1's whole
exit, a margin and the claim budget (`ladder.move.claim_lead`)."""


def run_rotation(
    workdir: Path, console: Console | None = None, params: LadderParams = DEMO_LADDER
) -> RotationResult:
    """The whole rotation on a fresh kernel chain under `workdir`; prints if `console`."""
    say = console.print if console is not None else (lambda *_a, **_k: None)
    result = RotationResult()
    with RegtestNode(workdir / "chain") as node:
        w = _World(node, workdir, params)
        node.mine(101, w.miner)

        def phases(label: str) -> None:
            ladder = w.ladder()
            row = {"at": f"{label} (height {node.height})"}
            row.update(
                {f"factory {r.rung}": str(ladder.phases(node.height)[r.fid]) for r in w.runs}
            )
            result.phases.append(row)
            say(
                f"   ladder at height {node.height}: "
                + ", ".join(f"factory {r.rung} {ladder.phases(node.height)[r.fid]}" for r in w.runs)
            )

        # 1. factory 0, channels, a payment
        f0 = w.open_factory(0, dict.fromkeys(CLIENTS, AMOUNT_SAT * 1000), 2 * AMOUNT_SAT)
        say(
            f"[bold]1. Factory 0[/bold] funded ({f0.funding_amount:,} sat, txid "
            f"{f0.fid[::-1].hex()[:16]}…) at height {f0.lifecycle.created}; "
            f"DYING from {f0.lifecycle.dying_at}, CLTV timeout {f0.lifecycle.cltv_timeout}; "
            f"{len(f0.signed.tree.txs)} tree txs signed; 4 channels open"
        )
        w.pay(f0, "alice", "bob", 30_000_000)
        say("   alice pays bob 30,000 sat through the LSP (real preimage, HTLCs settled)")
        phases("after payment")

        # 2. DYING: no new HTLCs on factory 0
        node.mine(f0.lifecycle.dying_at - node.height, w.miner)
        try:
            w.pay(f0, "carol", "dave", 1_000_000)
        except ChannelError as exc:
            result.refused_htlc = str(exc)
        say(f"[bold]2. Factory 0 is dying[/bold]: new payment refused: {result.refused_htlc}")
        phases("dying")

        # 3. factory 1, every channel opening on the LSP's side
        rotation_start = time.perf_counter()
        result.balances_before = {n: f0.client_msat(n) for n in CLIENTS}
        if not w.ladder().should_open(node.height):  # pragma: no cover - schedule says so
            raise RuntimeError("the ladder schedule does not call for a new factory yet")
        f1 = w.open_factory(1, dict.fromkeys(CLIENTS, 0), 2 * AMOUNT_SAT)
        say(
            f"[bold]3. Factory 1[/bold] funded by the LSP's wallet at height {f1.lifecycle.created}"
            "; channels open with nothing on the clients' side"
        )

        # 4. the atomic move: one PTLC per client, locked to its factory-0 key
        keys, result.turnover_ms = w.move(f0, f1)
        result.balances_moved = {n: f1.client_msat(n) for n in CLIENTS}
        table = Table(title="Balances moved to factory 1 (msat)")
        for col in ("client", "factory 0", "factory 1"):
            table.add_column(col, justify="right")
        for n in CLIENTS:
            table.add_row(n, f"{result.balances_before[n]:,}", f"{result.balances_moved[n]:,}")
        say(
            f"[bold]4. Atomic move[/bold]: each balance crossed as one PTLC locked to the"
            f" client's factory-0 key; fulfilling it revealed {len(keys)}/4 keys to the LSP"
            " (checked against the tree); per move "
            + ", ".join(f"{ms:.1f} ms" for ms in result.turnover_ms)
        )
        say(table)

        # 5. the LSP closes factory 0 alone
        scripts0 = f0.signed.tree.scripts
        positions = {c.key.data: p for p, c in enumerate(scripts0.shape.spec.clients)}
        held = {positions[k]: s for k, s in keys.items()}
        close0 = lsp_alone_close(scripts0, w.lsp, held, w.lsp_script, FEERATE)
        w.mine(close0.tx)
        result.close0_txid = close0.tx.txid_hex
        result.close0_vsize, result.close0_fee = close0.vsize, close0.fee
        result.rotation_s = time.perf_counter() - rotation_start
        say(
            f"[bold]5. LSP closes factory 0 alone[/bold]: {close0.tx.txid_hex[:16]}… "
            f"{close0.vsize} vB, fee {close0.fee} sat, {close0.paid:,} sat back to the LSP; "
            f"confirmed: {w.confirmed(close0.tx.txid)}"
        )
        phases("factory 0 closed")

        # 6. payments in factory 1, then its close
        w.pay(f1, "bob", "carol", 20_000_000)
        say("[bold]6. Factory 1 serves[/bold]: bob pays carol 20,000 sat")
        spec1 = f1.signed.tree.shape.spec
        payouts = [TxOut(f1.client_msat(n) // 1000, w.payout[n]) for n in CLIENTS]
        spend = cooperative_close(f1.signed.tree.scripts, payouts, w.lsp_script, FEERATE)
        all1 = {0: w.lsp, **{p + 1: f1.keys[n] for p, n in enumerate(CLIENTS)}}
        sig = run_ceremony(SigningPlan([spend.session]), all1).signatures[spend.session.id]
        close1 = spend.signed(sig)
        w.mine(close1)
        result.close1_txid = close1.txid_hex
        result.close1_payouts = {
            n: next(o.value for o in close1.outputs if o.script_pubkey == w.payout[n])
            for n in CLIENTS
        }
        say(
            f"   factory 1 closes on its balances: {close1.txid_hex[:16]}… pays "
            + ", ".join(f"{n} {v:,}" for n, v in result.close1_payouts.items())
            + f" sat (fee {spend.fee} sat of {spec1.funding_amount:,}); confirmed: "
            f"{w.confirmed(close1.txid)}"
        )
        result.ok = (
            result.balances_moved == result.balances_before
            and bool(result.refused_htlc)
            and len(keys) == 4
            and w.confirmed(close0.tx.txid)
            and w.confirmed(close1.txid)
            and all(result.close1_payouts[n] == f1.client_msat(n) // 1000 for n in CLIENTS)
        )
    return result


def run_rotation_demo(console: Console, workdir: Path | None = None) -> int:
    console.print(
        Panel(
            "[bold]SuperScalar ladder demo[/bold]: factory 0 is born, serves, dies and is "
            "replaced by factory 1 without clients losing a satoshi.",
            expand=False,
        )
    )
    with tempfile.TemporaryDirectory(prefix="superscalar-rotation-") as tmp:
        result = run_rotation(workdir or Path(tmp), console)
    console.print(
        f"rotation (factory 1 funded → factory 0 closed): {result.rotation_s:.2f} s, 4 clients"
    )
    console.print(
        "[green]rotation demo complete[/green]" if result.ok else "[red]rotation demo FAILED[/red]"
    )
    return 0 if result.ok else 1
