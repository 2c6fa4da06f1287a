"""Leaf advances against a misbehaving peer (issue 14, attacks 5, 6 and 12), real processes.

- `readvance-same-state` (LSP): after both leaf clients signed an advance it drops
  them, re-proposes the same tx and drops them again once they sent nonces for it
  (a naive client's signed row went back to 'nonces', then 'abandoned'), then
  proposes a different tx at the same DW state. The
  honest clients refuse (`signed-other-state`), keep the signed row and its
  re-anchored channel, stay frozen, and when DONE is overdue exit on chain with
  their balances less fees.
- `withhold-advance-done` (LSP): it takes the signatures, never sends DONE, keeps
  its old channels going and arms its watcher with the new leaf state. The honest
  clients refuse payments (`channel-frozen`), exit on chain when DONE is overdue,
  and their exits follow whichever leaf state confirms: each gets its balance
  less fees.
- `drain-liquidity` (client): it asks for liquidity again and again; the LSP
  refuses past the per-client limit (`liquidity-limit`) and the other leaf client
  can still buy.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.tx import Transaction
from superscalar.node.exit import SWEEP_FEERATE

from .support import Cluster, wait_for
from .support import try_pay as _try_pay
from .test_advance import _leaf, _liquidity
from .test_payments import _channels, _open, _pubkey

AMOUNTS = [100_000, 120_000]
DONE_BLOCKS = 3


def _start(cluster: Cluster, lsp: tuple[str, ...], client: dict[int, tuple[str, ...]]) -> None:
    cluster.start_lsp(*lsp)
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount, *client.get(i, ()))
    wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 2), timeout=90)
    for i in range(2):
        wait_for(f"client {i} open", lambda i=i: _open(cluster, cluster.client_dir(i), 1))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 2)
    try:
        yield c
    finally:
        c.stop()


def _position(cluster: Cluster, i: int) -> int:
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None
    return {c["pubkey"]: int(c["position"]) for c in f["clients"]}[_pubkey(cluster, i)]


def _local_msat(cluster: Cluster, i: int) -> int:
    (c,) = _channels(cluster, cluster.client_dir(i))
    return int(c["local_msat"])


def _db(datadir: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{datadir / 'node.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    return db


def _rows(datadir: Path, sql: str) -> list[Any]:
    db = _db(datadir)
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


def _payout_script(datadir: Path) -> bytes:
    (row,) = _rows(datadir, "SELECT value FROM node_kv WHERE key='payout_script'")
    return bytes.fromhex(row["value"])


def _exit(cluster: Cluster, i: int) -> dict[str, Any] | None:
    snap = cluster.status(cluster.client_dir(i))
    exits = [] if snap is None else snap["exits"]
    return dict(exits[-1]) if exits else None


def _overdue_exits(cluster: Cluster) -> dict[int, dict[str, Any]]:
    """Mine past the DONE deadline: each frozen client starts its exit by itself; then mine
    (a block at a time through the DW locks, so either side's leaf state can go first;
    straight to the to_local CSV) until every exit is done."""
    start = cluster.chain.get_block_count()
    cluster.mine_until(start + DONE_BLOCKS)
    for i in range(2):
        wait_for(f"client {i} exits by itself", lambda i=i: _exit(cluster, i), timeout=60)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        exits = {i: _exit(cluster, i) for i in range(2)}
        if all(e is not None and e["state"] == "done" for e in exits.values()):
            return {i: e for i, e in exits.items() if e is not None}
        tip = cluster.chain.get_block_count()
        sweeps = [
            int(s["wait_height"])
            for e in exits.values()
            if e is not None and e["state"] != "done"
            for s in e["steps"]
            if s["kind"].endswith("sweep") and s["wait_height"] is not None
        ]
        if sweeps and max(sweeps) > tip:
            cluster.mine_until(max(sweeps))
        else:
            cluster.mine_until(tip + 1)
        time.sleep(0.5)
    raise AssertionError(f"exits not done: {[_exit(cluster, i) for i in range(2)]}")


def _paid_on_chain(cluster: Cluster, i: int, exit: dict[str, Any], local_msat: int) -> str:
    """Client i's exit swept its whole channel balance less the sweep's explicit fee to its
    own payout script; returns which commitment it used ('commitment' / 'alt-commitment')."""
    (sweep,) = [
        s for s in exit["steps"] if s["kind"].endswith("sweep") and s["state"] == "confirmed"
    ]
    tx = cluster.chain.get_raw_transaction(sweep["txid"])
    (inp,) = tx.inputs
    commitment: Transaction = cluster.chain.get_raw_transaction(inp.prevout.txid_hex)
    to_local = commitment.outputs[inp.prevout.vout].value
    assert to_local == local_msat // 1000  # the LSP opened the channel: it pays its fees
    (out,) = tx.outputs
    assert out.value == to_local - SWEEP_FEERATE.fee_for_vsize(tx.vsize)
    assert out.script_pubkey == _payout_script(cluster.client_dir(i))
    assert cluster.chain.get_raw_transaction_verbose(sweep["txid"]).confirmations >= 1
    return "alt-commitment" if sweep["kind"] == "alt-sweep" else "commitment"


@pytest.mark.slow
def test_a_different_tx_at_a_signed_dw_state_is_refused_and_the_clients_exit_whole(
    cluster: Cluster,
) -> None:
    done = ("--dev-tools", "--advance-done-blocks", str(DONE_BLOCKS))
    _start(cluster, ("--dev-tools", "--dev-misbehave", "readvance-same-state"),
           {0: done, 1: done})  # fmt: skip
    local = {i: _local_msat(cluster, i) for i in range(2)}
    r = _liquidity(cluster.client_dir(0), 10_000)  # signed, then the LSP drops us
    assert r.returncode != 0

    def refused(i: int) -> bool:
        snap = cluster.status(cluster.client_dir(i)) or {}
        return "signed-other-state" in str(snap.get("last_error"))

    for i in range(2):  # the LSP came back with 10,000 sat, then 10,001 at the same state
        wait_for(f"client {i} refuses the second tx", lambda i=i: refused(i), timeout=60)
    tried = _rows(cluster.lsp_dir, "SELECT amount_sat, stage FROM leaf_advances")
    assert [tuple(t) for t in tried] == [(10_001, "abandoned")]  # the second tx, refused
    for i in range(2):  # what each client signed stays: its row, its re-anchored channel
        rows = _rows(cluster.client_dir(i), "SELECT generation, stage, amount_sat FROM"
                     " leaf_advances WHERE stage != 'abandoned'")  # fmt: skip
        assert [tuple(r) for r in rows] == [(1, "psigs", 10_000)]
        anchors = _rows(cluster.client_dir(i), "SELECT generation FROM channel_anchors WHERE"
                        " stage='pending'")  # fmt: skip
        assert [a["generation"] for a in anchors] == [1]
        frozen = _try_pay(cluster, i, 1 - i, 1_000_000)
        assert frozen.returncode != 0 and "channel-frozen" in frozen.stderr, frozen.stderr
    exits = _overdue_exits(cluster)
    for i in range(2):
        _paid_on_chain(cluster, i, exits[i], local[i])


@pytest.mark.slow
def test_a_withheld_advance_done_freezes_the_channels_and_the_clients_exit_whole(
    cluster: Cluster,
) -> None:
    done = ("--advance-done-blocks", str(DONE_BLOCKS))
    _start(cluster, ("--dev-tools", "--dev-misbehave", "withhold-advance-done"),
           {0: done, 1: done})  # fmt: skip
    local = {i: _local_msat(cluster, i) for i in range(2)}
    r = _liquidity(cluster.lsp_dir, 10_000, "--client", str(_position(cluster, 0)))
    assert r.returncode == 0, r.stderr + r.stdout  # the LSP has the new leaf state signed
    for i in range(2):  # ... and would keep using the old channels: the clients refuse
        frozen = _try_pay(cluster, i, 1 - i, 1_000_000)
        assert frozen.returncode != 0 and "channel-frozen" in frozen.stderr, frozen.stderr
        assert _local_msat(cluster, i) == local[i]
    exits = _overdue_exits(cluster)
    used = {_paid_on_chain(cluster, i, exits[i], local[i]) for i in range(2)}
    # the LSP's watcher put the withheld (newer, shorter-lock) leaf state on chain first:
    # the clients' exits switched to their channels re-anchored on it
    assert used == {"alt-commitment"}


@pytest.mark.slow
def test_a_draining_client_is_refused_past_its_limit_and_the_other_can_still_buy(
    cluster: Cluster,
) -> None:
    _start(cluster, (), {0: ("--dev-tools", "--dev-misbehave", "drain-liquidity")})

    def limited() -> bool:
        snap = cluster.status(cluster.client_dir(0)) or {}
        return "liquidity-limit" in str(snap.get("last_error"))

    wait_for("the drainer hits its limit", limited, timeout=90)
    p0, p1 = _position(cluster, 0), _position(cluster, 1)
    leaf = _leaf(cluster, cluster.lsp_dir)
    assert leaf["lstock_generation"] == 1  # default: 4 DW states, 2 leaf clients → 1 each
    bought = _rows(cluster.lsp_dir, "SELECT buyer FROM leaf_advances WHERE stage='done'")
    assert [b["buyer"] for b in bought] == [p0]
    r = _liquidity(cluster.client_dir(1), 5_000)
    assert r.returncode == 0, r.stderr + r.stdout
    after = _leaf(cluster, cluster.lsp_dir)
    assert (after["lstock_generation"], after["lstock_sat"]) == (2, leaf["lstock_sat"] - 5_000)
    bought = _rows(cluster.lsp_dir, "SELECT buyer FROM leaf_advances WHERE stage='done'")
    assert [b["buyer"] for b in bought] == [p0, p1]
