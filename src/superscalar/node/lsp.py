"""The LSP daemon: gathers N clients, runs the factory ceremony over BOLT-8, funds, closes.

An I/O shell only: the tree, the signing plan, the coordinator and the close tx
all come from `superscalar.factory`. What this module adds is ordering:

- Every step is one SQLite transaction committed *before* the message that
  depends on it is sent (PROPOSE after the factory row; READY after the
  signatures and the signed distribution tx; the funding broadcast after every
  client acknowledged READY and the signed funding tx is stored; see
  `distribution`).
- A ceremony attempt that fails (a client disconnects, times out or sends
  something wrong) is aborted: the faulty peer gets a wire `Error` and is
  dropped, the others get `factory_abort`, and a fresh attempt with a new
  factory id and a new (never signed) funding tx starts when N clients are
  queued again. Nothing was broadcast, so no satoshi moves.
- On restart, attempts that never reached `signed` are marked aborted (their
  secret nonces died with the process); a `signed` factory has its funding tx
  signed and broadcast again, and reconnecting clients get READY/FUNDED resent.
- A funded client that reconnects gets our channel_reestablish before any
  channel update; interrupted forwards then resume from the `forwards` table
  (see `forwarding`), which is written in the channel steps' own transactions.

Scale: the tree, signing plan and final signatures are built once per factory
(`Built`, kept in memory, rebuilt from the stored `FactoryTerms` after a
restart), so PROPOSE (each client's path view), READY and a channel's funding
outpoint cost O(path) per client, not O(N). Each ceremony step gives every
client `LspConfig.ceremony_step_timeout`, which grows with N.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from superscalar.bitcoin.address import Network, address_to_script_pubkey
from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import Transaction, TxOut
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.rpc import RpcError, RpcServer
from superscalar.channel import (
    ChannelError,
    ChannelOpen,
    ChannelReestablish,
    CommitmentSigned,
    DataLossDetected,
    Effect,
    FundingSigned,
    RevokeAndAck,
    SendMessage,
    UpdateFulfillHtlc,
    accept_open,
    open_message,
)
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.factory import (
    ClientSpec,
    FactoryScripts,
    FactoryState,
    FactoryTree,
    KeyAggCache,
    LStockSecrets,
    SignatureBundle,
    Signer,
    SigningPlan,
    build_shape,
    cooperative_close,
    extract_view,
)
from superscalar.factory.safety import check_exit_window, check_params, exit_window, safety_for
from superscalar.ladder.enforce import forward_cltv_delta, htlc_expiry_limit
from superscalar.store.db import Database
from superscalar.wire.codec import (
    ErrorCode,
    Hex,
    Hex32,
    Init,
    Message,
    PublicKeyHex,
    XOnlyHex,
    decode,
    decode_record,
    encode_record,
)
from superscalar.wire.connection import PeerConnection, PeerServer, exchange_init, start_server
from superscalar.wire.errors import ProtocolViolationError, WireError
from superscalar.wire.messages import (
    ChannelMsg,
    CloseAggNonce,
    CloseDone,
    CloseNonce,
    ClosePropose,
    ClosePsig,
    DistributionTerms,
    FactoryAbort,
    FactoryAggNonces,
    FactoryFunded,
    FactoryNonces,
    FactoryPropose,
    FactoryPsigs,
    FactoryReady,
    FactoryReadyAck,
    JoinRequest,
    LiquidityRequest,
    Payout,
)

from .admission import join_refusal, opening_credit_msat
from .advance import LspAdvance, replay_advances
from .chancodec import decode_message
from .channels import (
    CHANNEL_CONFIG,
    ChannelShell,
    channel_capacity,
    channel_funding,
    channel_secrets,
    load_channel,
    stored_balances,
)
from .common import (
    FactoryTerms,
    ProposedClient,
    crash_point,
    default_step_timeout,
    now,
    open_db,
    params_of,
    record_close_nonce_use,
    spec_of,
    tree_of,
    view_of,
)
from .control import write_control_port
from .distribution import (
    DISTRIBUTION_SESSION,
    distribute_loop,
    lsp_distribution,
    new_terms,
    record_signed,
    record_terms,
    status_of,
    stored_terms,
)
from .enforce import Enforcer, EnforceRefused, enforce_status, payer_budget
from .forwarding import Forwarder
from .ladder import (
    LspLadder,
    client_factory_key,
    lsp_journal,
    opening_balances_of,
    record_opening_balances,
)
from .misbehave import LspMisbehaviour, Misbehaviour
from .musig import Seat, musig_round
from .peers import Peer, PeerFault, PeerLink
from .watcher import DaemonWatch

__all__ = ["LspConfig", "LspDaemon", "script_for_address"]

STATUS_FORWARDS = 100
"""How many of the latest forwards `status` lists (their counts by state cover all)."""

log = logging.getLogger(__name__)

STEP_TIMEOUT = 60.0
"""How long a peer may take to send its JoinRequest after the handshake."""


@dataclass(frozen=True)
class Built:
    """One factory's tree and signing plan, built once (O(N)) and reused for every client."""

    terms: FactoryTerms
    tree: FactoryTree
    plan: SigningPlan
    distribution: DistributionTerms | None = None
    """The distribution tx's terms (None: a factory from before it was signed in the
    ceremony); its session is in `plan`."""


M = TypeVar("M", bound=Message)

DEFAULT_STEP_BLOCKS = 10
REGTEST_STEP_BLOCKS = 2
"""Regtest DW step: a 2-layer exit is 12 blocks, which fits regtest's 30-block dying period
with its 10-block margin and room to rotate (see `LadderParams.check_fits`)."""
HTLC_EXPIRY_TOO_LATE = "htlc-expiry-too-late"
"""Refusal code: an incoming HTLC expiring too late for us to enforce it on chain."""
SHORT_CLTV_BLOCKS = 25
"""dev-misbehave short-cltv: the CLTV timeout this many blocks above the tip."""


def script_for_address(address: str) -> bytes:
    """The scriptPubKey of a wallet address on whichever network it belongs to."""
    for network in (Network.REGTEST, Network.MAINNET, Network.TESTNET):
        with contextlib.suppress(ValueError):
            return address_to_script_pubkey(address, network)
    raise ValueError(f"cannot decode address {address!r}")


@dataclass(frozen=True)
class LspConfig:
    """Everything `superscalar lsp` takes on its command line."""

    datadir: Path
    host: str
    port: int
    n_clients: int
    arity: tuple[int, ...] = (2,)
    states_per_layer: int = 4
    step_blocks: int | None = None
    """Blocks between DW states (None: `DEFAULT_STEP_BLOCKS`, `REGTEST_STEP_BLOCKS` on
    regtest, so that a regtest factory's exit window fits its short dying period)."""
    lstock_sat: int = 50_000
    anchor_value: int = 240
    close_feerate: int = 2000
    step_timeout: float | None = None
    """Seconds each client gets per ceremony step (None: `default_step_timeout(n_clients)`)."""

    @property
    def ceremony_step_timeout(self) -> float:
        if self.step_timeout is not None:
            return self.step_timeout
        return default_step_timeout(self.n_clients)

    watch: bool = True
    dev_tools: bool = False
    watchtowers: tuple[str, ...] = ()
    active_blocks: int | None = None
    """Ladder: blocks a factory serves before it starts dying (None: the network default)."""
    dying_blocks: int | None = None
    """Ladder: blocks of handover before the CLTV timeout (None: the network default)."""
    client_credit_sat: int = 0
    """What the LSP gives each new (not moving) client on the client's side of its channel at
    opening, at most the client's `amount_sat`: the operator's own gift, paid from its
    wallet. A join never sets it: a client's balance comes from what it paid (a payment
    received, a moved balance); what a join gets for free is inbound capacity."""
    max_client_sat: int = 10_000_000
    """The largest `amount_sat` a join may ask for (its channel is twice that)."""
    misbehave: Misbehaviour[LspMisbehaviour] = field(default_factory=Misbehaviour)
    """Dev-only attacks on our own clients (`--dev-misbehave`, regtest + --dev-tools)."""
    max_liquidity_per_client: int | None = None
    """Sat of free liquidity one client may request per factory (None: its leaf share of
    the L-stock, `factory.advance.LiquidityLimits`)."""
    max_advances_per_client: int | None = None
    """Leaf advances one client may request per factory (None: its share of the DW states)."""


class LspDaemon:
    """See the module docstring. `run()` serves until cancelled."""

    def __init__(self, config: LspConfig, key: SecretKey, chain: BitcoindClient) -> None:
        self.config = config
        self.key = key
        self.chain = chain
        self.db: Database = open_db(config.datadir)
        self.queue: list[Peer] = []
        self.members: dict[bytes, Peer] = {}
        """Connected clients of the current factory, by node key."""
        self.factory_id: bytes | None = None
        self.server: PeerServer | None = None
        self.control: RpcServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self.ceremony_seconds: float | None = None
        self._lock = asyncio.Lock()
        self.link = PeerLink(lambda: self.config.ceremony_step_timeout)
        """Ceremony steps with clients: each gets `ceremony_step_timeout` per step."""
        self.channels: dict[int, ChannelShell] = {}
        """The current factory's leaf channels, by client position."""
        self._built: dict[bytes, Built] = {}
        """Trees of factories this process has built or loaded (the live one, mostly)."""
        self._signatures: dict[bytes, dict[int, bytes]] = {}
        """Final tree signatures by session, per signed factory (what READY carries)."""
        self.ladder = LspLadder(self)
        """Factory lifecycle, rotation into the next factory, key turnover, lone close."""
        self.advancer = LspAdvance(self)
        """Leaf advances: selling inbound liquidity out of a leaf's L-stock."""
        self.watch: DaemonWatch | None = None
        self.enforcer = Enforcer(
            self.db,
            chain,
            lambda: self.factory_id,
            lambda: self.channels,
            self.advancer.tree,
            lambda: script_for_address(self.chain.get_new_address()),
        )
        """On-chain enforcement of payers' HTLCs we fulfilled downstream (`enforce`)."""
        self._withholding: set[tuple[bytes, int]] = set()
        """dev-misbehave withhold-settle: channels whose client fulfilled an HTLC/PTLC; we
        never send them the commitment_signed / revoke_and_ack that would remove it."""

    # -- startup ------------------------------------------------------------------------

    def _recover(self) -> None:
        """Abort attempts that died mid-ceremony; remember the live factory."""
        self.advancer.recover()
        with self.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='aborted', updated=? WHERE role='lsp' AND state IN"
                " ('proposed', 'nonces')",
                (now(),),
            )
            row = c.execute(
                "SELECT factory_id FROM factories WHERE role='lsp' AND state IN"
                " ('signed', 'funded', 'closed') ORDER BY created DESC, rowid DESC LIMIT 1"
            ).fetchone()
        if row is not None:
            self.factory_id = bytes.fromhex(row["factory_id"])
            for r in self.db.execute(
                "SELECT position FROM factory_clients WHERE factory_id=?", (row["factory_id"],)
            ).fetchall():
                shell = load_channel(
                    self.db,
                    self.key,
                    self.factory_id,
                    int(r["position"]),
                    lsp_journal(self.factory_id, self.key.public_key),
                )
                if shell is not None:
                    self.channels[int(r["position"])] = shell

    def _rebroadcast(self) -> None:
        if self.factory_id is None:
            return
        row = self._row(self.factory_id)
        if row["state"] == "signed":
            self._broadcast_funding(self.factory_id)

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._recover()
        self._rebroadcast()
        self.server = await start_server(self.key, self._handle, self.config.host, self.config.port)
        watch = DaemonWatch(self.db, self.key, self.chain, name="lsp",
                            datadir=self.config.datadir, enabled=self.config.watch,
                            dev_tools=self.config.dev_tools,
                            towers=self.config.watchtowers)  # fmt: skip
        self.watch = watch
        if self.factory_id is not None:
            self.advancer.watch_entries(self.factory_id)
        handlers = {**self._rpc_handlers(), **watch.handlers()}
        self.control = RpcServer(handlers, port=0, cookie_dir=self.config.datadir)
        self.control.start()
        write_control_port(self.config.datadir, self.control.port)
        log.info("lsp listening on %s:%d", self.config.host, self.server.port)
        watch.start()
        ladder_task = asyncio.create_task(self.ladder.run())
        distribute = asyncio.create_task(
            distribute_loop(self.db, self.chain, "lsp", self.may_distribute, self._distributed)
        )
        enforce = asyncio.create_task(self.enforcer.loop())
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self.factory_id is None and len(self.queue) >= self.config.n_clients:
                    await self._ceremony(self.queue[: self.config.n_clients])
        finally:
            enforce.cancel()
            distribute.cancel()
            ladder_task.cancel()
            await watch.stop()
            self.control.stop()
            await self.server.close()
            self.db.close()

    def may_distribute(self, fid: bytes) -> bool:
        """The distribution tx pays factory `fid`'s clients their opening balances: right
        only if none of them moved to a later factory (a mover would be paid twice)."""
        row = self.db.execute(
            "SELECT 1 FROM factory_clients o JOIN factory_clients n ON n.pubkey = o.pubkey"
            " JOIN factories f ON f.factory_id = n.factory_id WHERE o.factory_id=?"
            " AND n.factory_id != o.factory_id AND f.role='lsp'"
            " AND f.state IN ('signed', 'funded', 'closed')"
            " AND f.rowid > (SELECT rowid FROM factories WHERE factory_id=?)",
            (fid.hex(), fid.hex()),
        ).fetchone()
        return row is None

    def distribution_pending(self, fid: bytes) -> bool:
        """A held distribution tx will pay out factory `fid` (so no timeout-path sweep)."""
        row = self.db.execute(
            "SELECT state FROM distributions WHERE factory_id=?", (fid.hex(),)
        ).fetchone()
        return row is not None and row["state"] != "unsigned" and self.may_distribute(fid)

    def _distributed(self, fid: bytes, tx: Transaction) -> None:
        """Clients gone at the distribution locktime: the factory is paid out by default."""
        with self.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='closed', close_tx=?, close_txid=?, updated=?"
                " WHERE factory_id=?",
                (tx.hex(), tx.txid_hex, now(), fid.hex()),
            )
        terms = stored_terms(self.db, fid)
        paid = 0 if terms is None else sum(p.amount_sat for p in terms.payouts)
        self.ladder._event(
            f"factory {fid.hex()[:16]} paid out by its distribution tx {tx.txid_hex}:"
            f" clients {paid} sat"
        )

    # -- peers --------------------------------------------------------------------------

    async def _handle(self, conn: PeerConnection) -> None:
        remote = conn.remote_pubkey
        await exchange_init(conn, Init(user_agent="superscalar-lsp"))
        join = await _expect(conn, JoinRequest)
        refusal = join_refusal(join, self.config.max_client_sat)
        if refusal is not None:
            await conn.fail(ProtocolViolationError(refusal), ErrorCode.PROTOCOL)
            return
        peer = Peer(conn, remote, join)
        if join.factory_id is not None:
            if not self._reattach(peer, bytes(join.factory_id)):
                await conn.fail(ProtocolViolationError("unknown factory"), ErrorCode.PROTOCOL)
                return
            await self._resend(peer, bytes(join.factory_id))
            if self._row(bytes(join.factory_id))["state"] == "funded":
                if bytes(join.factory_id) == self.factory_id:  # channels of the live factory
                    await self._reestablish(peer)
                self._start_reader(peer)
        elif self.factory_id is not None:
            await conn.fail(ProtocolViolationError("this LSP's factory is full"))
            return
        else:
            for old in [p for p in self.queue if p.key == remote]:
                old.done.set()  # a reconnect replaces the stale connection
            self.queue = [p for p in self.queue if p.key != remote]
            self.queue.append(peer)
            self._wake.set()
        await peer.done.wait()

    def _reattach(self, peer: Peer, factory_id: bytes) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM factory_clients WHERE factory_id=? AND pubkey=?",
            (factory_id.hex(), peer.key.hex()),
        ).fetchone()
        if row is None or (
            factory_id != self.factory_id and not self.ladder.can_reattach(factory_id)
        ):
            return False
        old = self.members.get(peer.key.data)
        if old is not None:
            old.done.set()
        self.members[peer.key.data] = peer
        return True

    async def _resend(self, peer: Peer, factory_id: bytes) -> None:
        """A reconnecting client gets what it may have missed: READY, FUNDED, CLOSE_DONE."""
        row = self._row(factory_id)
        if row["state"] not in ("signed", "funded", "closed"):
            return
        position = self._position(factory_id, peer.key)
        await peer.conn.send_message(self._ready_for(factory_id, position, row["attempt"]))
        if row["state"] == "funded" and factory_id == self.factory_id:
            # before FUNDED: the client must switch to a re-anchored channel before it
            # reestablishes it
            await self.advancer.resend_done(peer, factory_id, position)
        if row["funding_txid"] and row["state"] in ("funded", "closed"):
            txid = bytes.fromhex(row["funding_txid"])[::-1]
            await peer.conn.send_message(
                FactoryFunded(factory_id=Hex32(factory_id), txid=Hex32(txid))
            )
        if row["state"] == "closed" and row["close_txid"]:
            close_txid = Hex32(bytes.fromhex(row["close_txid"])[::-1])
            await peer.conn.send_message(CloseDone(factory_id=Hex32(factory_id), txid=close_txid))

    async def _drop(self, peer: Peer, reason: str) -> None:
        """Error + disconnect for a faulty peer; its handler then returns."""
        self.queue = [p for p in self.queue if p is not peer]
        if self.members.get(peer.key.data) is peer:
            del self.members[peer.key.data]
        await peer.conn.fail(ProtocolViolationError(reason))
        peer.done.set()

    # -- the ceremony -------------------------------------------------------------------

    def _row(self, factory_id: bytes) -> Any:
        return self.db.execute(
            "SELECT * FROM factories WHERE factory_id=?", (factory_id.hex(),)
        ).fetchone()

    def _position(self, factory_id: bytes, key: PublicKey) -> int:
        row = self.db.execute(
            "SELECT position FROM factory_clients WHERE factory_id=? AND pubkey=?",
            (factory_id.hex(), key.hex()),
        ).fetchone()
        return int(row["position"])

    def _built_for(self, fid: bytes) -> Built:
        """The factory's tree and plan, from memory or rebuilt once from its stored terms."""
        built = self._built.get(fid)
        if built is None:
            terms = decode_record(self._row(fid)["propose"], FactoryTerms)
            tree = tree_of(terms, self.key.public_key)
            dist = stored_terms(self.db, fid)
            extra = () if dist is None else (lsp_distribution(tree, dist).session,)
            built = Built(terms, tree, SigningPlan.for_tree(tree, extra=extra), dist)
            self._built[fid] = built
        return built

    def _propose_base(self, peers: list[Peer]) -> tuple[Built, Transaction, bytes]:
        """Build the terms and tree, fund the funding output with the wallet (unsigned).

        The terms must be ones our honest clients accept (`factory.safety` with the
        network's default client policy): the CLTV timeout is a whole ladder lifetime away,
        and the distribution locktime leaves the tree's exit window (worst-case exit delay +
        margin) before it. A ladder whose dying period cannot hold that window, or terms the
        default client policy refuses, are refused here (`LifeTooShort`, `TermsRefused`)
        before any coin is selected."""
        cfg = self.config
        height = self.chain.get_block_count()
        network = str(self.chain.get_blockchain_info().get("chain", "regtest"))
        ladder = self.ladder.params()
        policy = safety_for(network)
        margin = max(ladder.distribution_margin, policy.confirm_margin)
        step = cfg.step_blocks
        if step is None:
            step = REGTEST_STEP_BLOCKS if network == "regtest" else DEFAULT_STEP_BLOCKS
        cltv = height + ladder.lifetime
        if cfg.misbehave(LspMisbehaviour.SHORT_CLTV):  # dev-misbehave: a CLTV too near to exit
            cltv = height + SHORT_CLTV_BLOCKS
        clients = tuple(
            ClientSpec(client_factory_key(p.key, p.join), channel_capacity(p.join.amount_sat))
            for p in peers
        )
        n = len(peers)
        amount = sum(c.channel_amount for c in clients) + n * cfg.lstock_sat
        amount += 8 * n * cfg.anchor_value
        seed = os.urandom(32)
        terms = FactoryTerms(
            factory_id=Hex32(os.urandom(32)),
            clients=tuple(
                ProposedClient(key=PublicKeyHex.of(c.key), amount_sat=c.channel_amount)
                for c in clients
            ),
            funding_txid=Hex32(bytes(32)),
            funding_vout=0,
            funding_amount=amount,
            cltv_timeout=cltv,
            arity=cfg.arity,
            states_per_layer=cfg.states_per_layer,
            step_blocks=step,
            anchor_value=cfg.anchor_value,
            lstock_points=(),
        )
        cache = KeyAggCache()
        shape = build_shape(spec_of(terms, self.key.public_key))
        if cfg.misbehave(LspMisbehaviour.LONG_DW_STEP):
            # dev-misbehave: DW steps so long the tree's exit outlasts the factory's life
            per_step = (shape.max_depth + 1) * (cfg.states_per_layer - 1)
            long_step = (cltv - height) // per_step + 1
            terms = msgspec.structs.replace(terms, step_blocks=long_step)
            shape = build_shape(spec_of(terms, self.key.public_key))
        window = exit_window(shape.worst_case_exit_delay, margin)
        locktime = cltv - window
        if cfg.misbehave(LspMisbehaviour.SHORT_CLTV) or cfg.misbehave(
            LspMisbehaviour.LONG_DW_STEP
        ):  # dev-misbehave: skip our own checks, keep a locktime clients could sign
            locktime = max(height + 1, min(locktime, cltv - 1))
        else:
            ladder.check_fits(window)
            params = params_of(terms)
            check_params(policy, params, height)
            check_exit_window(policy, cltv, height, shape.worst_case_exit_delay, locktime)
        secrets = LStockSecrets(seed)
        points = tuple(XOnlyHex.of(secrets.point(leaf, 0)) for leaf in range(len(shape.leaves)))
        funding_out = FactoryScripts.build(shape, cache).funding.txout(amount)
        unsigned = self.chain.fund_transaction([funding_out])
        vout = next(
            i
            for i, o in enumerate(unsigned.outputs)
            if o.script_pubkey == funding_out.script_pubkey
        )
        terms = msgspec.structs.replace(
            terms, funding_txid=Hex32(unsigned.txid), funding_vout=vout, lstock_points=points
        )
        shape = build_shape(spec_of(terms, self.key.public_key))
        state = FactoryState.initial(shape, [p.to_key() for p in points])
        tree = FactoryTree.build(shape, state, FactoryScripts.build(shape, cache))
        dist = self._distribution_terms(peers, locktime)
        plan = SigningPlan.for_tree(tree, extra=(lsp_distribution(tree, dist).session,))
        return Built(terms, tree, plan, dist), unsigned, seed

    def _distribution_terms(self, peers: list[Peer], locktime: int) -> DistributionTerms:
        """Each client's opening balance to its payout script, the rest to a fresh LSP
        address; valid at `locktime`, the tree's exit window before the CLTV timeout (see
        `_propose_base` and `distribution`). A mover opens with nothing on its side (its
        balance arrives later by the move PTLC), so its default here is 0: a mover that never
        hands over its old key must not be paid its old balance by this factory's
        distribution tx as well."""
        opening = [(bytes(p.join.payout_script), self._opening_client_msat(p.join)) for p in peers]
        lsp_script = script_for_address(self.chain.get_new_address())
        return new_terms(opening, lsp_script, locktime)

    def _opening_client_msat(self, join: JoinRequest) -> int:
        """A mover opens with 0 (its balance comes as the move PTLC); a newcomer with the
        operator's credit (`LspConfig.client_credit_sat`), never with what it asked for."""
        if join.rotating_from is not None:
            return 0
        return opening_credit_msat(self.config.client_credit_sat, join)

    def _propose_for(self, built: Built, position: int) -> FactoryPropose:
        """Client `position`'s PROPOSE: the parameters and its path view only."""
        t = built.terms
        return FactoryPropose(
            factory_id=t.factory_id,
            attempt=1,
            cltv_timeout=t.cltv_timeout,
            arity=t.arity,
            states_per_layer=t.states_per_layer,
            step_blocks=t.step_blocks,
            anchor_value=t.anchor_value,
            view=Hex(extract_view(built.tree, position).to_bytes()),
            distribution=built.distribution,
        )

    async def _ceremony(self, peers: list[Peer]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            built, unsigned, seed = self._propose_base(peers)
        except Exception as exc:  # chain trouble: wait and let the next join retry
            log.error("cannot fund a factory: %s", exc)
            await asyncio.sleep(1)
            self._wake.set()
            return
        fid = bytes(built.terms.factory_id)
        self._built = {fid: built}
        plan = built.plan
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO factories (factory_id, role, attempt, state, propose, lstock_seed,"
                " funding_tx, funding_txid, created, updated)"
                " VALUES (?, 'lsp', 1, 'proposed', ?, ?, ?, ?, ?, ?)",
                (
                    fid.hex(),
                    encode_record(built.terms).decode(),
                    seed.hex(),
                    unsigned.hex(),
                    unsigned.txid_hex,
                    now(),
                    now(),
                ),
            )
            c.executemany(
                "INSERT INTO factory_clients VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        fid.hex(),
                        pos,
                        p.key.hex(),
                        p.join.amount_sat,
                        bytes(p.join.payout_script).hex(),
                    )
                    for pos, p in enumerate(peers)
                ],
            )
            record_opening_balances(c, fid, peers, self._opening_client_msat)
            if built.distribution is not None:
                record_terms(c, fid, built.distribution, None)
        seats = [Seat(p, pos + 1) for pos, p in enumerate(peers)]

        def record_nonce_use() -> None:
            with self.db.transaction() as c:
                c.execute("INSERT INTO nonce_use VALUES (?, 1, 'tree', ?)", (fid.hex(), now()))
                c.execute("UPDATE factories SET state='nonces' WHERE factory_id=?", (fid.hex(),))

        try:
            signatures = await musig_round(
                self.link,
                fid,
                plan,
                seats,
                {0: Signer(0, self.key, plan.sessions)},
                propose=lambda seat: self._propose_for(built, seat.index - 1),
                nonces=FactoryNonces,
                aggregate=lambda seat, agg: FactoryAggNonces(
                    factory_id=Hex32(fid), attempt=1, bundle=Hex(agg.to_bytes())
                ),
                psigs=FactoryPsigs,
                record_nonce_use=record_nonce_use,
            )
            self._signatures[fid] = dict(signatures)
            await self._ready_and_acks(fid, peers, built, signatures)
        except PeerFault as fault:
            await self._abort(fid, peers, fault)
            return
        signed_funding = self.chain.sign_with_wallet(unsigned)
        with self.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='signed', funding_tx=?, updated=? WHERE factory_id=?",
                (signed_funding.hex(), now(), fid.hex()),
            )
        if self.factory_id is not None and self.factory_id != fid:
            self.ladder.retire(self.factory_id, self.channels)  # rotation: the old one dies
            self.channels = {}
        self.factory_id = fid
        self.queue = [p for p in self.queue if p not in peers]
        self.members = {p.key.data: p for p in peers}
        txid = self._broadcast_funding(fid)
        self.ceremony_seconds = loop.time() - start
        for p in peers:
            with contextlib.suppress(WireError):
                await p.conn.send_message(FactoryFunded(factory_id=Hex32(fid), txid=Hex32(txid)))
            self._start_reader(p)
        log.info(
            "factory %s funded: %s (%.2fs)", fid.hex()[:16], txid[::-1].hex(), self.ceremony_seconds
        )

    async def _ready_and_acks(
        self, fid: bytes, peers: list[Peer], built: Built, signatures: dict[int, bytes]
    ) -> None:
        """Store the signatures and the signed distribution tx, send READY, and wait until
        every client stored them too: only then may the factory be funded."""
        with self.db.transaction() as c:
            c.executemany(
                "INSERT INTO tree_signatures VALUES (?, ?, ?)",
                [(fid.hex(), sid, sig.hex()) for sid, sig in signatures.items()],
            )
            if built.distribution is not None:
                spend = lsp_distribution(built.tree, built.distribution)
                record_signed(c, fid, spend.signed(signatures[DISTRIBUTION_SESSION]))
        for pos, p in enumerate(peers):
            await self.link.send(p, self._ready_for(fid, pos, 1))
        await self.link.gather(peers, FactoryReadyAck, fid)

    def _ready_for(self, fid: bytes, position: int, attempt: int) -> FactoryReady:
        """O(path) per client: the plan and the signatures are loaded once per factory."""
        plan = self._built_for(fid).plan
        sigs = self._signatures.get(fid)
        if sigs is None:
            sigs = {
                int(r["session_id"]): bytes.fromhex(r["signature"])
                for r in self.db.execute(
                    "SELECT session_id, signature FROM tree_signatures WHERE factory_id=?",
                    (fid.hex(),),
                )
            }
            self._signatures[fid] = sigs
        bundle = SignatureBundle(
            position + 1, tuple((sid, sigs[sid]) for sid in plan.sessions_for(position + 1))
        )
        return FactoryReady(factory_id=Hex32(fid), attempt=attempt, bundle=Hex(bundle.to_bytes()))

    def _broadcast_funding(self, fid: bytes) -> bytes:
        """Send the stored signed funding tx (idempotent: already-known is fine)."""
        row = self._row(fid)
        tx = Transaction.from_hex(row["funding_tx"])
        try:
            self.chain.send_raw_transaction(tx)
        except RpcError as exc:
            if "already" not in str(exc) and "known" not in str(exc):
                raise
        with self.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='funded', updated=?"
                " WHERE factory_id=? AND state='signed'",
                (now(), fid.hex()),
            )
        return tx.txid

    async def _abort(self, fid: bytes, peers: list[Peer], fault: PeerFault) -> None:
        log.warning("ceremony %s aborted: %s", fid.hex()[:16], fault)
        with self.db.transaction() as c:
            c.execute(
                "UPDATE factories SET state='aborted', updated=? WHERE factory_id=?",
                (now(), fid.hex()),
            )
            rotating_from = fault.peer.join.rotating_from
            if rotating_from is not None:  # a rotation: the others retry without this peer
                self.ladder.bar(c, bytes(rotating_from), fault.peer.key, fault.code, str(fault))
        await self._drop(fault.peer, str(fault))
        for p in peers:
            if p is not fault.peer:
                with contextlib.suppress(WireError):
                    await p.conn.send_message(
                        FactoryAbort(factory_id=Hex32(fid), attempt=1, reason=str(fault)[:500])
                    )
        self._wake.set()

    # -- leaf channels and forwarding -------------------------------------------------------

    def _start_reader(self, peer: Peer) -> None:
        """From funding on, one task reads the peer: channel messages are handled at once,
        the rest (the close flow) queue up for `_recv`."""
        if peer.reader is not None:
            return
        peer.inbox = asyncio.Queue()
        peer.reader = asyncio.create_task(self._read_loop(peer))

    async def _read_loop(self, peer: Peer) -> None:
        assert peer.inbox is not None
        try:
            while True:
                msg = await peer.conn.receive_message()
                if isinstance(msg, LiquidityRequest):
                    self.advancer.serve(peer, msg)
                    continue
                if not isinstance(msg, ChannelMsg):
                    peer.inbox.put_nowait(msg)
                    continue
                try:
                    await self._on_channel(peer, msg)
                except Exception as exc:  # refused or ill-typed: the state was not touched
                    log.warning("channel error from %s: %r", peer.key.hex()[:16], exc)
                    await self._drop(peer, f"channel error: {exc}")
                    return
        except WireError as exc:
            peer.inbox.put_nowait(exc)
        except Exception:  # a bug must not pass silently
            log.exception("reader for %s died", peer.key.hex()[:16])
            raise

    def _sender(self, position: int) -> Callable[[ChannelMsg], Awaitable[None]]:
        async def send(msg: ChannelMsg) -> None:
            fid = self.factory_id
            assert fid is not None
            row = self.db.execute(
                "SELECT pubkey FROM factory_clients WHERE factory_id=? AND position=?",
                (fid.hex(), position),
            ).fetchone()
            peer = self.members.get(bytes.fromhex(row["pubkey"]))
            if peer is None or peer.conn.closed:
                raise WireError(f"client {position} is not connected")
            if (fid, position) in self._withholding and isinstance(
                decode_message(msg.payload), CommitmentSigned | RevokeAndAck
            ):
                # dev-misbehave withhold-settle: the client's fulfilled HTLC stays in its
                # commitment (we recorded the secret as usual)
                log.warning("dev-misbehave: withholding the settle of channel %d", position)
                return
            await peer.conn.send_message(msg)

        return send

    async def _on_old_channel(self, peer: Peer, msg: ChannelMsg) -> bool:
        """A client still on an old, open factory (it stayed, or was offline during the
        rotation and came back while it is DYING) reestablishes its channel there: answer
        with ours, so the ladder can close that factory with it at its exact balance
        (`_close_with_stayers`). False: not such a factory. Old factories take no updates."""
        fid = bytes(msg.factory_id)
        if fid == self.factory_id or not self.ladder.can_reattach(fid):
            return False
        row = self.db.execute(
            "SELECT position FROM factory_clients WHERE factory_id=? AND pubkey=?",
            (fid.hex(), peer.key.hex()),
        ).fetchone()
        if row is None:
            return False
        pos = int(row["position"])
        cmsg = decode_message(msg.payload)
        if msg.position != pos or not isinstance(cmsg, ChannelReestablish):
            raise ValueError("only channel_reestablish of its own channel on an old factory")
        shell = self.ladder._old_channel(fid, pos)
        if shell is None or shell.state is None:
            raise ValueError("no channel of that client on the old factory")

        async def send(m: ChannelMsg) -> None:
            await peer.conn.send_message(m)

        notices = await shell.reestablish(send)
        notices += await shell.apply(cmsg, send)
        for n in notices:
            log.info("old factory %s channel %d: %s", fid.hex()[:16], pos, type(n).__name__)
        return True

    async def _on_channel(self, peer: Peer, msg: ChannelMsg) -> None:
        if await self._on_old_channel(peer, msg):
            return
        fid = self.factory_id
        if fid is None or bytes(msg.factory_id) != fid:
            raise ValueError("channel message for another factory")
        pos = self._position(fid, peer.key)
        if msg.position != pos:
            raise ValueError("channel message for another client's channel")
        cmsg = decode_message(msg.payload)
        if isinstance(cmsg, UpdateFulfillHtlc) and self.ladder.cancelled_move(fid, pos, cmsg.id):
            # the move was called off at its expiry and the client is paid its old balance
            # in the old factory's close: its key now would buy the balance a second time
            raise ValueError(f"move-cancelled: move PTLC {cmsg.id} expired unfulfilled")
        if self.config.misbehave(LspMisbehaviour.WITHHOLD_SETTLE) and isinstance(
            cmsg, UpdateFulfillHtlc
        ):
            self._withholding.add((fid, pos))  # dev-misbehave: take the secret, never settle
        send = self._sender(pos)
        shell = self.channels.get(pos)
        ready = shell is not None and shell.ready.is_set()
        if isinstance(cmsg, FundingSigned):
            if ready:
                return  # a client redoing its open after a crash: we already hold its signature
            crash_point("lsp-before-funding-signed")
        if isinstance(cmsg, ChannelReestablish) and shell is not None and not ready:
            # We died after accepting the open, before storing the client's funding_signed,
            # and the client is open: our (deterministic) open again asks it to re-sign our
            # commitment 0; its reestablish waits until that funding_signed makes us open.
            assert shell.state is not None
            shell.held_reestablish = cmsg
            _, ours = self._open_half(fid, pos, shell.state.local_close_script)
            await send(shell.wrap(ours))
            return
        if isinstance(cmsg, ChannelOpen):
            # a first open, or a client redoing one (a crash on either side mid-open):
            # the open is deterministic, so the same commitment 0 gets the same signature
            row = self._row(fid)
            if row["state"] != "funded":
                raise ValueError(f"factory is {row['state']}: no channel to open")
            if shell is not None and shell.state is not None:
                close_script = shell.state.local_close_script
            else:
                close_script = script_for_address(self.chain.get_new_address())
            client_msat, ours = self._open_half(fid, pos, close_script)
            if cmsg.balance_msat != client_msat or cmsg.is_initiator:
                raise ValueError("channel_open with the wrong balance or role")
            secrets = channel_secrets(self.key, fid, pos)
            funding = channel_funding(self._built_for(fid).tree, pos)
            t = accept_open(secrets, funding, ours, cmsg, chain_height=self.chain.get_block_count())
            if shell is not None and ready:
                # keep our (newer) state; just say again what the client needs to finish
                await send(shell.wrap(ours))
                for effect in t.effects:
                    if isinstance(effect, SendMessage):
                        await send(shell.wrap(effect.message))
                return
            shell = ChannelShell(
                self.db, secrets, fid, pos, journal=lsp_journal(fid, self.key.public_key)
            )
            self.channels[pos] = shell
            shell.state = t.state
            await send(shell.wrap(ours))
            notices = await shell.run_effects(t.effects, send)
        elif shell is None or shell.state is None:
            raise ValueError("expected channel_open")
        else:
            notices = await shell.apply(cmsg, send)
        resumed = isinstance(cmsg, ChannelReestablish)
        if shell.ready.is_set() and shell.held_reestablish is not None:
            held, shell.held_reestablish = shell.held_reestablish, None
            notices += await shell.reestablish(send)
            notices += await shell.apply(held, send)
            resumed = True
        for n in notices:
            await self._on_notice(pos, n, resumed=resumed)
        if resumed:
            await self._forwarder().resume_payee(pos)

    def _open_half(self, fid: bytes, pos: int, close_script: bytes) -> tuple[int, ChannelOpen]:
        """(the client's opening msat, our channel_open): deterministic, so a redone open
        is the same open and signs the same commitment 0."""
        amount = int(
            self.db.execute(
                "SELECT amount_sat FROM factory_clients WHERE factory_id=? AND position=?",
                (fid.hex(), pos),
            ).fetchone()["amount_sat"]
        )
        client_msat, lsp_msat = opening_balances_of(self.db, fid, pos, amount)
        ours = open_message(
            channel_secrets(self.key, fid, pos),
            channel_funding(self._built_for(fid).tree, pos),
            CHANNEL_CONFIG,
            is_initiator=True,
            balance_msat=lsp_msat,
            close_script=close_script,
        )
        return client_msat, ours

    async def _on_notice(self, pos: int, notice: Effect, *, resumed: bool = False) -> None:
        if isinstance(notice, DataLossDetected):
            log.error("channel %d: %s", pos, notice.reason)
        elif self.factory_id is not None:
            await self._forwarder().on_notice(pos, notice, resumed=resumed)

    def _forwarder(self) -> Forwarder:
        fid = self.factory_id
        assert fid is not None

        def payee_position(key: bytes) -> int | None:
            row = self.db.execute(
                "SELECT position FROM factory_clients WHERE factory_id=? AND pubkey=?",
                (fid.hex(), key.hex()),
            ).fetchone()
            return None if row is None else int(row["position"])

        def connected(pos: int) -> bool:
            # by node key: a client's channel key is its per-factory key (see `ladder`)
            row = self.db.execute(
                "SELECT pubkey FROM factory_clients WHERE factory_id=? AND position=?",
                (fid.hex(), pos),
            ).fetchone()
            peer = None if row is None else self.members.get(bytes.fromhex(row["pubkey"]))
            return peer is not None and not peer.conn.closed

        def refusal(up: int, down: int) -> str | None:
            return self.ladder.htlc_refusal(fid, (up, down))

        def expiry_refusal(up: int, cltv_expiry: int) -> str | None:
            return self.htlc_expiry_refusal(fid, cltv_expiry, up)

        def cltv_delta(up: int, down: int) -> int:
            return self.htlc_cltv_delta(fid, up, down)

        return Forwarder(
            self.db,
            fid,
            self.channels,
            self._sender,
            payee_position,
            connected,
            refusal,
            expiry_refusal,
            cltv_delta,
        )

    def htlc_cltv_delta(self, fid: bytes, up: int, down: int) -> int:
        """Blocks between an HTLC from position `up` and its forward to `down`: both
        clients' exit paths with their confirmation margins, plus the channel's claim
        budget (`ladder.enforce.forward_cltv_delta`)."""
        tree = self._built_for(fid).tree
        return forward_cltv_delta(
            *payer_budget(tree, up), *payer_budget(tree, down), CHANNEL_CONFIG.min_cltv_delta
        )

    def _enforce_snapshot(self) -> dict[str, Any]:
        """For `status` (on an RPC thread, so on a connection of its own): the on-chain
        enforcements and the live factory's largest forwarding delta (any payer, any
        payee), what a client's payment expiry must leave room for."""
        fid = self.factory_id
        with open_db(self.config.datadir) as db:
            delta = None
            row = (
                None
                if fid is None
                else db.execute(
                    "SELECT propose FROM factories WHERE factory_id=?", (fid.hex(),)
                ).fetchone()
            )
            if row is not None and row["propose"] is not None:
                tree = tree_of(decode_record(row["propose"], FactoryTerms), self.key.public_key)
                budgets = [sum(payer_budget(tree, p)) for p in range(len(tree.shape.client_leaf))]
                delta = 2 * max(budgets) + CHANNEL_CONFIG.min_cltv_delta
            return {"enforcements": enforce_status(db), "htlc_cltv_delta": delta}

    def htlc_expiry_refusal(
        self, fid: bytes, cltv_expiry: int, up: int | None = None
    ) -> str | None:
        """Why an HTLC (the incoming one: the later expiry) is past what factory `fid` can
        enforce: our enforcement (`enforce`) must start before the distribution tx can
        replace the tree, so it expires before the distribution locktime + the payer's
        exit path and margin (`ladder.enforce.htlc_expiry_limit`; the locktime itself
        for an unknown payer), and before the CLTV timeout path opens."""
        terms = self._built_for(fid).terms
        dist = stored_terms(self.db, fid)
        if dist is None:
            limit = terms.cltv_timeout
        elif up is None:
            limit = dist.locktime
        else:
            budget = payer_budget(self._built_for(fid).tree, up)
            limit = min(terms.cltv_timeout, htlc_expiry_limit(dist.locktime, *budget))
        if cltv_expiry >= limit:
            what = "its CLTV timeout" if dist is None else "its distribution locktime + exit"
            return (
                f"{HTLC_EXPIRY_TOO_LATE}: HTLC expiry {cltv_expiry} is not before {what} {limit}"
                f" (factory {fid.hex()[:16]}): it could not be enforced on chain"
            )
        return None

    async def _reestablish(self, peer: Peer) -> None:
        """A funded client is back: send our channel_reestablish before anything else."""
        fid = self.factory_id
        assert fid is not None
        pos = self._position(fid, peer.key)
        shell = self.channels.get(pos)
        if shell is None or not shell.ready.is_set() or shell.state is None:
            return
        try:
            notices = await shell.reestablish(self._sender(pos))
        except ChannelError as exc:
            log.error("channel %d cannot reestablish: %s", pos, exc)
            return
        for n in notices:
            await self._on_notice(pos, n)

    # -- cooperative close ----------------------------------------------------------------

    async def close_factory(self) -> str:
        """Sign a cooperative close with every client over the wire and broadcast it."""
        async with self._lock:
            fid = self.factory_id
            if fid is None:
                raise RuntimeError("no factory to close")
            row = self._row(fid)
            if row["state"] != "funded":
                raise RuntimeError(f"factory is {row['state']}, not funded")
            terms = self._built_for(fid).terms
            clients = list(
                self.db.execute(
                    "SELECT * FROM factory_clients WHERE factory_id=? ORDER BY position",
                    (fid.hex(),),
                )
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while loop.time() < deadline and not all(
                (shell := self.channels.get(int(c["position"]))) is not None
                and shell.ready.is_set()
                for c in clients
            ):
                await asyncio.sleep(0.1)  # channels still opening: give them a moment
            peers = []
            for c in clients:
                p = self.members.get(bytes.fromhex(c["pubkey"]))
                if p is None or p.conn.closed:
                    raise RuntimeError(f"client {c['position']} is not connected")
                peers.append(p)
            if self.config.misbehave(LspMisbehaviour.FAKE_CLOSE_DONE):
                # dev-misbehave: announce a close that was never signed nor broadcast
                fake = os.urandom(32)
                for p in peers:
                    with contextlib.suppress(WireError):
                        await p.conn.send_message(
                            CloseDone(factory_id=Hex32(fid), txid=Hex32(fake))
                        )
                return fake[::-1].hex()
            payouts = tuple(
                Payout(
                    script=Hex(bytes.fromhex(c["payout_script"])),
                    amount_sat=self._client_close_amount(int(c["position"]), int(c["amount_sat"])),
                )
                for c in clients
            )
            lsp_script = script_for_address(self.chain.get_new_address())
            feerate = self.config.close_feerate
            spend = cooperative_close(
                self._built_for(fid).tree.scripts,
                [TxOut(p.amount_sat, bytes(p.script)) for p in payouts],
                lsp_script,
                Feerate(feerate),
            )
            plan = SigningPlan([spend.session])
            msg = ClosePropose(
                factory_id=Hex32(fid),
                payouts=payouts,
                lsp_script=Hex(lsp_script),
                feerate_sat_per_kvb=feerate,
            )
            with self.db.transaction() as c:
                c.execute(
                    "UPDATE factories SET close_tx=?, updated=? WHERE factory_id=?",
                    (spend.tx.hex(), now(), fid.hex()),
                )

            def record_nonce_use() -> None:
                with self.db.transaction() as c:
                    record_close_nonce_use(c, fid)

            try:
                sig = (
                    await musig_round(
                        self.link.named("close"),
                        fid,
                        plan,
                        [Seat(p, pos + 1) for pos, p in enumerate(peers)],
                        {0: Signer(0, self.key, plan.sessions)},
                        propose=lambda _: msg,
                        nonces=CloseNonce,
                        aggregate=lambda _, agg: CloseAggNonce(
                            factory_id=Hex32(fid), bundle=Hex(agg.to_bytes())
                        ),
                        psigs=ClosePsig,
                        record_nonce_use=record_nonce_use,
                    )
                )[spend.session.id]
            except PeerFault as fault:
                await self._drop(fault.peer, str(fault))
                raise RuntimeError(f"close failed: {fault}") from fault
            tx = spend.signed(sig)
            if self.config.misbehave(LspMisbehaviour.WITHHOLD_CLOSE_DONE):
                # dev-misbehave: keep the fully signed close, tell no one, stay funded (the
                # channels keep forwarding), broadcast nothing
                log.warning("dev-misbehave: withholding close %s", tx.txid_hex)
                return tx.txid_hex
            remainders = sum(
                int(shell.balances()["remote_msat"]) % 1000
                for shell in self.channels.values()
                if shell.ready.is_set()
            )
            log.info(
                "close %s: clients %s sat, LSP %d sat (incl. %d msat of client rounding),"
                " fee %d sat, in %d sat",
                tx.txid_hex[:16],
                [p.amount_sat for p in payouts],
                sum(o.value for o in tx.outputs) - sum(p.amount_sat for p in payouts),
                remainders,
                terms.funding_amount - sum(o.value for o in tx.outputs),
                terms.funding_amount,
            )
            with self.db.transaction() as c:
                c.execute(
                    "UPDATE factories SET state='closed', close_tx=?, close_txid=?, updated=?"
                    " WHERE factory_id=?",
                    (tx.hex(), tx.txid_hex, now(), fid.hex()),
                )
            self.chain.send_raw_transaction(tx)
            for p in peers:
                with contextlib.suppress(WireError):
                    await p.conn.send_message(CloseDone(factory_id=Hex32(fid), txid=Hex32(tx.txid)))
            return tx.txid_hex

    def _client_close_amount(self, pos: int, amount_sat: int) -> int:
        """The client's current channel balance, msat rounded down (the remainder stays with
        the LSP's change output); the factory amount if the channel never opened."""
        shell = self.channels.get(pos)
        if shell is None or shell.state is None or shell.state.local_commit is None:
            return amount_sat
        b = shell.balances()
        if not b["quiescent"]:
            raise RuntimeError(f"channel {pos} has updates in flight; retry the close")
        return int(b["remote_msat"]) // 1000

    # -- control RPC (runs on the RPC server's threads) -------------------------------------

    def _rpc_handlers(self) -> dict[str, Callable[..., Any]]:
        datadir = self.config.datadir

        def status() -> dict[str, Any]:
            return status_snapshot(
                datadir,
                "lsp",
                self.key.public_key,
                extra={
                    "listen": f"{self.config.host}:{self.server.port if self.server else 0}",
                    "queued_clients": len(self.queue),
                    "connected_members": len(self.members),
                    "ladder": self.ladder.snapshot(),
                    **self._enforce_snapshot(),
                    "ceremony_ms": (
                        None
                        if self.ceremony_seconds is None
                        else round(self.ceremony_seconds * 1000)
                    ),
                },
            )

        def close() -> dict[str, Any]:
            return {"txid": self._call_in_loop(self.close_factory)}

        def liquidity(amount_sat: int, position: int | None = None) -> dict[str, Any]:
            if position is None:
                raise RpcError(-8, "the LSP needs --client POSITION: whose channel gets it")
            assert self.loop is not None
            future = asyncio.run_coroutine_threadsafe(
                self.advancer.advance(int(position), int(amount_sat)), self.loop
            )
            try:
                return future.result(timeout=180)
            except RuntimeError as exc:
                raise RpcError(-1, str(exc)) from exc

        def force_close(position: int) -> dict[str, Any]:
            assert self.loop is not None
            future = asyncio.run_coroutine_threadsafe(
                self.enforcer.enforce(int(position), "operator"), self.loop
            )
            try:
                return future.result(timeout=60)
            except EnforceRefused as exc:
                raise RpcError(-1, str(exc)) from exc

        return {
            "status": status,
            "report": status,
            "close": close,
            "liquidity": liquidity,
            "force_close": force_close,
        }

    def _call_in_loop(self, fn: Callable[[], Awaitable[str]]) -> str:
        assert self.loop is not None

        async def run() -> str:
            return await fn()

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        try:
            return future.result(timeout=120)
        except RuntimeError as exc:
            raise RpcError(-1, str(exc)) from exc


def status_snapshot(
    datadir: Path, role: str, key: PublicKey, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What `status`/`report` show, read from the database on the calling thread."""
    db = open_db(datadir)
    try:
        factories = []
        for row in db.execute("SELECT * FROM factories ORDER BY created"):
            fid = row["factory_id"]
            clients = [
                dict(r)
                for r in db.execute(
                    "SELECT position, pubkey, amount_sat, payout_script FROM factory_clients"
                    " WHERE factory_id=? ORDER BY position",
                    (fid,),
                )
            ]
            live = row["state"] != "aborted"
            if role == "client":
                factories.append(
                    {**_client_factory_status(db, row, live), "distribution": status_of(db, fid)}
                )
                continue
            terms = decode_record(row["propose"], FactoryTerms)
            nodes = []
            leaves = []
            if live:
                tree = replay_advances(db, bytes.fromhex(fid), tree_of(terms, key))
                for tx in tree.txs:
                    nodes.append(_node_status(tx.index, str(tx.kind), tx.tx))
                leaves = _leaf_status(tree)
            factories.append(
                {
                    "factory_id": fid,
                    "state": row["state"],
                    "position": row["position"],
                    "funding_txid": row["funding_txid"],
                    "funding_amount": terms.funding_amount,
                    "cltv_timeout": terms.cltv_timeout,
                    "close_txid": row["close_txid"],
                    "clients": clients,
                    "signatures": _count_signatures(db, fid),
                    "lsp_balance_sat": terms.funding_amount
                    - sum(int(c["amount_sat"]) for c in clients),
                    "nodes": nodes,
                    "distribution": status_of(db, fid),
                    "leaves": leaves,
                }
            )
        nonce_uses = db.execute("SELECT COUNT(*) FROM nonce_use").fetchone()[0]
        channels = stored_balances(db)
        payments = [
            dict(r)
            for r in db.execute(
                "SELECT payment_hash, payee, amount_msat, state, created FROM payments"
                " ORDER BY created"
            )
        ]
        invoices = [
            dict(r)
            for r in db.execute(
                "SELECT payment_hash, amount_msat, state, created FROM invoices ORDER BY created"
            )
        ]
        forwards = [  # the LSP's latest (the table only grows), the newest last
            dict(r)
            for r in db.execute(
                "SELECT up_position, up_htlc_id, down_position, payment_hash, amount_msat,"
                " cltv_expiry, state, updated FROM forwards ORDER BY rowid DESC LIMIT ?",
                (STATUS_FORWARDS,),
            )
        ][::-1]
        forward_counts = {
            str(r["state"]): int(r["n"])
            for r in db.execute("SELECT state, COUNT(*) AS n FROM forwards GROUP BY state")
        }
        return {
            "role": role,
            "pubkey": key.hex(),
            "schema_version": db.schema_version,
            "nonce_uses": nonce_uses,
            "invoices": invoices,
            "channels": channels,
            "payments": payments,
            "forwards": forwards,
            "forward_counts": forward_counts,
            "factories": factories,
            **(extra or {}),
        }
    finally:
        db.close()


def _node_status(index: int, kind: str, tx: Transaction) -> dict[str, Any]:
    return {
        "index": index,
        "kind": kind,
        "txid": tx.txid_hex,
        "sequence": tx.inputs[0].sequence,
        "outputs": [o.value for o in tx.outputs],
    }


def _leaf_status(tree: FactoryTree) -> list[dict[str, Any]]:
    """Each leaf's DW state, nSequence, L-stock generation and allocation."""
    shape, state = tree.shape, tree.state
    out = []
    for leaf, node in enumerate(shape.leaves):
        alloc = state.allocations[leaf]
        out.append(
            {
                "leaf": leaf,
                "dw_state": state.odometer.states[node],
                "sequence": state.odometer.sequence(shape, node),
                "lstock_generation": state.odometer.generations[leaf],
                "channels_sat": list(alloc.channels),
                "lstock_sat": alloc.lstock,
            }
        )
    return out


def _count_signatures(db: Database, fid: str) -> int:
    return int(
        db.execute("SELECT COUNT(*) FROM tree_signatures WHERE factory_id=?", (fid,)).fetchone()[0]
    )


def _client_factory_status(db: Database, row: Any, live: bool) -> dict[str, Any]:
    """A client's factory as it knows it: its own path (the tree's other txs and the other
    clients' amounts are not its business and never reached it)."""
    propose = decode(row["propose"])
    assert isinstance(propose, FactoryPropose)
    lsp_key = PublicKey.from_hex(_kv(db, "lsp_pubkey") or "")
    view = view_of(propose, lsp_key)
    me = view.client
    own = view.steps[-1].tx.outputs[me - view.steps[-1].signers[0]].value
    return {
        "factory_id": row["factory_id"],
        "state": row["state"],
        "position": row["position"],
        "funding_txid": row["funding_txid"],
        "funding_amount": view.funding_amount,
        "cltv_timeout": propose.cltv_timeout,
        "close_txid": row["close_txid"],
        "clients": [{"position": me, "pubkey": view.participants[me].hex(), "amount_sat": own}],
        "signatures": _count_signatures(db, row["factory_id"]),
        "lsp_balance_sat": None,
        "nodes": [_node_status(s.tx_index, str(s.kind), s.tx) for s in view.steps] if live else [],
        "leaves": _client_leaf_status(db, row["factory_id"], view) if live else [],
    }


def _client_leaf_status(db: Database, fid: str, view: Any) -> list[dict[str, Any]]:
    """Our leaf as of its last finished advance (or as proposed)."""
    last = db.execute(
        "SELECT generation, new_tx FROM leaf_advances WHERE factory_id=? AND stage='done'"
        " ORDER BY generation DESC LIMIT 1",
        (fid,),
    ).fetchone()
    tx = view.steps[-1].tx if last is None else Transaction.from_hex(last["new_tx"])
    seq = tx.inputs[0].sequence
    outs = [o.value for o in tx.outputs]
    return [
        {
            "leaf": None,
            "dw_state": view.params.dw.state_of_sequence(seq),
            "sequence": seq,
            "lstock_generation": 0 if last is None else int(last["generation"]),
            "channels_sat": outs[:-2],
            "lstock_sat": outs[-2],
        }
    ]


def _kv(db: Database, key: str) -> str | None:
    row = db.execute("SELECT value FROM node_kv WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row["value"])


async def _expect(conn: PeerConnection, kind: type[M], timeout: float = STEP_TIMEOUT) -> M:
    """The next message must be `kind`: anything else gets an Error and a disconnect."""
    msg = await conn.receive_message(timeout)
    if not isinstance(msg, kind):
        exc = ProtocolViolationError(f"expected {kind.__name__}, got {msg.type_tag}")
        await conn.fail(exc, ErrorCode.UNEXPECTED_MESSAGE)
        raise exc
    return msg
