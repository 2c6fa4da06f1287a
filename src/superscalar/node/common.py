"""What both daemons share: node keys on disk, the factory rebuilt from a PROPOSE.

Why the client rebuilds the tree from the spec instead of taking a path from
the LSP: the spec is small (keys, amounts, params, L-stock points), the build is
deterministic, and the client then runs `verify_view` on its own extraction, so
nothing it signs comes from the LSP unchecked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from superscalar.bitcoin.tx import OutPoint
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.factory import (
    ClientSpec,
    DWParams,
    FactoryParams,
    FactorySpec,
    FactoryState,
    FactoryTree,
    FeePolicy,
    build_shape,
)
from superscalar.store.db import Database
from superscalar.store.schema import DAEMON_MIGRATIONS
from superscalar.wire.messages import FactoryPropose

CRASH_ENV = "SUPERSCALAR_DEV_CRASH"


def crash_point(name: str) -> None:
    """Dev/test only: `SUPERSCALAR_DEV_CRASH=<name>` kills the daemon here like kill -9."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


__all__ = [
    "CRASH_ENV",
    "KEY_FILE",
    "crash_point",
    "load_or_create_key",
    "now",
    "open_db",
    "params_of",
    "spec_of",
    "tree_of",
]

KEY_FILE = "node_key"


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


def params_of(msg: FactoryPropose) -> FactoryParams:
    return FactoryParams(
        cltv_timeout=msg.cltv_timeout,
        arity=tuple(msg.arity),
        dw=DWParams(msg.states_per_layer, msg.step_blocks),
        fees=FeePolicy(anchor_value=msg.anchor_value),
    )


def spec_of(msg: FactoryPropose, lsp: PublicKey) -> FactorySpec:
    clients = tuple(ClientSpec(c.key.to_key(), c.amount_sat) for c in msg.clients)
    outpoint = OutPoint(bytes(msg.funding_txid), msg.funding_vout)
    return FactorySpec(lsp, clients, outpoint, msg.funding_amount, params_of(msg))


def tree_of(msg: FactoryPropose, lsp: PublicKey) -> FactoryTree:
    """Deterministic: the LSP and every client build the same tree from the same PROPOSE."""
    shape = build_shape(spec_of(msg, lsp))
    state = FactoryState.initial(shape, [p.to_key() for p in msg.lstock_points])
    return FactoryTree.build(shape, state)
