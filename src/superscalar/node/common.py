"""What both daemons share: node keys on disk, the factory terms and a client's view.

The LSP keeps the full factory terms (`FactoryTerms`: every client, the
L-stock points) and builds the tree once per factory. A client never sees the
tree: its PROPOSE carries only its path view (`factory.ClientView`), which it
checks with `verify_view`, so nothing it signs comes from the LSP unchecked and
its work stays O(log N) transactions plus the O(N) participant keys.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import is_p2a
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.factory import (
    ClientSpec,
    ClientView,
    DWParams,
    FactoryParams,
    FactorySpec,
    FactoryState,
    FactoryTree,
    FeePolicy,
    build_shape,
)
from superscalar.ladder.turnover import factory_key
from superscalar.store.db import Database
from superscalar.store.schema import DAEMON_MIGRATIONS
from superscalar.wire.codec import U32, Hex32, PublicKeyHex, Record, UInt, XOnlyHex
from superscalar.wire.messages import FactoryPropose

CRASH_ENV = "SUPERSCALAR_DEV_CRASH"


def crash_point(name: str) -> None:
    """Dev/test only: `SUPERSCALAR_DEV_CRASH=<name>` kills the daemon here like kill -9."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


__all__ = [
    "CRASH_ENV",
    "KEY_FILE",
    "FactoryTerms",
    "ProposedClient",
    "client_step_timeout",
    "crash_point",
    "default_step_timeout",
    "factory_signing_key",
    "load_or_create_key",
    "now",
    "open_db",
    "params_of",
    "record_close_nonce_use",
    "spec_of",
    "tree_of",
    "view_of",
    "wallet_cpfp",
]

KEY_FILE = "node_key"


def default_step_timeout(n_clients: int) -> float:
    """How long the LSP waits for every client's reply to one ceremony step. A client's
    check is O(N) key aggregation (~0.2 ms per key) and N clients may share a few cores,
    so the wait grows with N: 60 s up to a few dozen clients, ~10 min at N = 1024."""
    return 60.0 + 0.5 * n_clients


def client_step_timeout(n_clients: int) -> float:
    """How long a client mid-ceremony waits for the LSP's next message: the LSP may wait
    a whole step for the slowest client, then needs a moment itself; past that it is gone."""
    return 2 * default_step_timeout(n_clients) + 30.0


def now() -> int:
    return int(time.time())


def load_or_create_key(datadir: Path) -> tuple[SecretKey, bool]:
    """The node key in `datadir/node_key` (hex, mode 0600), created on first start."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / KEY_FILE
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        return SecretKey.from_hex(path.read_text().strip()), False
    key = SecretKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key, True


def open_db(datadir: Path) -> Database:
    return Database.open(datadir / "node.sqlite3", DAEMON_MIGRATIONS)


class ProposedClient(Record):
    """One client of a factory, in position order."""

    key: PublicKeyHex
    amount_sat: UInt


class FactoryTerms(Record):
    """The LSP's record of a factory: everything the tree is built from (never sent whole:
    each client gets its own `ClientView` cut from the tree)."""

    factory_id: Hex32
    clients: tuple[ProposedClient, ...]
    funding_txid: Hex32
    funding_vout: U32
    funding_amount: UInt
    cltv_timeout: U32
    arity: tuple[U32, ...]
    states_per_layer: U32
    step_blocks: U32
    anchor_value: UInt
    lstock_points: tuple[XOnlyHex, ...]


def params_of(msg: FactoryTerms | FactoryPropose) -> FactoryParams:
    """The factory parameters a message states. For a PROPOSE they are the LSP's claim, not
    something a client may check the same message against: a client bounds them with its
    own policy first (`factory.safety.check_params`, its config and the chain height)."""
    return FactoryParams(
        cltv_timeout=msg.cltv_timeout,
        arity=tuple(msg.arity),
        dw=DWParams(msg.states_per_layer, msg.step_blocks),
        fees=FeePolicy(anchor_value=msg.anchor_value),
    )


def spec_of(msg: FactoryTerms, lsp: PublicKey) -> FactorySpec:
    clients = tuple(ClientSpec(c.key.to_key(), c.amount_sat) for c in msg.clients)
    outpoint = OutPoint(bytes(msg.funding_txid), msg.funding_vout)
    return FactorySpec(lsp, clients, outpoint, msg.funding_amount, params_of(msg))


def tree_of(msg: FactoryTerms, lsp: PublicKey) -> FactoryTree:
    """Deterministic: the same terms always give the same tree (the LSP rebuilds it after
    a restart)."""
    shape = build_shape(spec_of(msg, lsp))
    state = FactoryState.initial(shape, [p.to_key() for p in msg.lstock_points])
    return FactoryTree.build(shape, state)


def view_of(msg: FactoryPropose, lsp: PublicKey) -> ClientView:
    """The client's view out of PROPOSE (strict decode; `ViewError` if malformed). The
    parameters travel beside it and are not trusted either: the client bounds them with its
    own `factory.safety` policy before it checks the view against them."""
    return ClientView.from_bytes(bytes(msg.view), params_of(msg), lsp)


def factory_signing_key(db: Any, node_key: SecretKey, factory_id: bytes) -> SecretKey:
    """The key this node holds factory `factory_id` (and derives its channel) with.

    The LSP signs every factory with its node key. A client uses one key per
    factory (`ladder.factory_key(node key, rung)`), because key turnover hands
    that key to the LSP; factories from before the ladder have no rung and use
    the node key. Watchers and towers need the same answer as the daemon.
    """
    row = db.execute(
        "SELECT b.rung FROM factories f JOIN factory_balances b ON b.factory_id = f.factory_id"
        " WHERE f.factory_id=? AND f.role='client'",
        (factory_id.hex(),),
    ).fetchone()
    return node_key if row is None else factory_key(node_key, int(row["rung"]))


def record_close_nonce_use(c: Any, factory_id: bytes, close_tx: Transaction | None = None) -> None:
    """Inside the caller's transaction: one more close signing attempt of `factory_id` uses
    fresh secret nonces (so a crash can never make us sign a second close with them), and
    the close tx being signed is stored with it."""
    n = int(
        c.execute(
            "SELECT COUNT(*) FROM nonce_use WHERE factory_id=? AND purpose LIKE 'close%'",
            (factory_id.hex(),),
        ).fetchone()[0]
    )
    c.execute(
        "INSERT INTO nonce_use VALUES (?, ?, ?, ?)",
        (factory_id.hex(), n + 1, f"close{n + 1}", now()),
    )
    if close_tx is not None:
        c.execute(
            "UPDATE factories SET close_tx=?, updated=? WHERE factory_id=?",
            (close_tx.hex(), now(), factory_id.hex()),
        )


def wallet_cpfp(chain: BitcoindClient, parent: Transaction, feerate: Feerate) -> Transaction:
    """A child spending `parent`'s P2A anchor plus the wallet's largest coin, wallet-signed."""
    anchor_vout = next(i for i, o in enumerate(parent.outputs) if is_p2a(o.script_pubkey))
    anchor = parent.outputs[anchor_vout]
    coin = max(chain.list_unspent(1), key=lambda u: u.amount_sat)
    inputs = (TxIn(parent.outpoint(anchor_vout)), TxIn(coin.outpoint))
    draft = Transaction(parent.version, inputs, (TxOut(0, coin.script_pubkey),))
    vsize = draft.with_witnesses([(), (bytes(64),)]).vsize
    fee = feerate.fee_for_vsize(parent.vsize + vsize)
    child = Transaction(
        parent.version, inputs, (TxOut(coin.amount_sat + anchor.value - fee, coin.script_pubkey),)
    )
    return chain.sign_with_wallet(child, {parent.outpoint(anchor_vout): anchor})
