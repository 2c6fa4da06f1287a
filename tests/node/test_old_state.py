"""A superseded factory state on chain, with real processes (after a leaf advance).

The LSP (`--dev-tools --no-watch`: the cheater does not answer its own cheat)
sells client 0 inbound liquidity, which advances the shared leaf to DW state 1
and L-stock generation 1, then broadcasts the factory path as first signed
(`dev old-state`): the kickoff, then the OLD leaf state once its CSV allows.

- Clients watching: their watchers put the newer leaf state (shorter lock) on
  chain first; the kernel refuses the old one; the newer state's outputs are
  exactly the new allocation.
- Clients away while the old state confirms: a client started late finds the
  old leaf state on chain and burns its L-stock (the revealed generation-0
  secret) long before the LSP's CSV sweep could take it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.factory.shape import FactoryParams
from superscalar.node.control import call_control

from .support import Cluster, run_node, wait_for
from .test_advance import _leaf, _liquidity
from .test_payments import _open, _pubkey

AMOUNTS = [100_000, 120_000]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 2)
    try:
        c.start_lsp("--dev-tools", "--no-watch")
        for i, amount in enumerate(AMOUNTS):
            c.start_client(i, amount)
        wait_for("lsp channels open", lambda: _open(c, c.lsp_dir, 2), timeout=90)
        for i in range(2):
            wait_for(f"client {i} open", lambda i=i: _open(c, c.client_dir(i), 1))
        yield c
    finally:
        c.stop()


def _advance(cluster: Cluster) -> tuple[dict[str, Any], dict[str, Any]]:
    """Client 0 buys 20,000 sat of inbound: (leaf before, leaf after) as the LSP reports."""
    before = _leaf(cluster, cluster.lsp_dir)
    r = _liquidity(cluster.client_dir(0), 20_000)
    assert r.returncode == 0, r.stderr + r.stdout
    return before, _leaf(cluster, cluster.lsp_dir)


def _position(cluster: Cluster, i: int) -> int:
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None
    return {c["pubkey"]: int(c["position"]) for c in f["clients"]}[_pubkey(cluster, i)]


def _old_state(cluster: Cluster, pos: int) -> dict[str, Any]:
    r = run_node(
        "dev", "old-state", "--datadir", str(cluster.lsp_dir), "--position", str(pos),
        "--pause", "0.7", *cluster.chain_args(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def _breach(datadir: Path, txid: str) -> dict[str, Any] | None:
    for b in call_control(datadir, "watch")["breaches"]:
        if b["txid"] == txid and b["spender"]:
            return dict(b)
    return None


def _confirmations(cluster: Cluster, txid: str) -> int:
    try:
        return cluster.chain.get_raw_transaction_verbose(txid).confirmations
    except Exception:
        return 0


@pytest.mark.slow
def test_watchers_put_the_newer_leaf_state_on_chain_before_the_old_one(cluster: Cluster) -> None:
    _, after = _advance(cluster)
    for i in range(2):  # each client's watcher holds the newer-state and burn entries
        assert call_control(cluster.client_dir(i), "watch")["entries"] >= 2
    cheat = _old_state(cluster, _position(cluster, 0))
    assert cheat["confirmed"] is False
    kickoff = cheat["path"][-1]
    won = wait_for("a client watcher to win", lambda: _breach(cluster.client_dir(0), kickoff))
    assert won["won"] is True and won["kind"] == "newer_state"
    newer = cluster.chain.get_raw_transaction(won["spender"])
    assert _confirmations(cluster, won["spender"]) >= 1
    assert _confirmations(cluster, cheat["old_state_txid"]) == 0
    assert newer.inputs[0].sequence == after["sequence"]
    anchor = newer.outputs[-1].value
    assert [o.value for o in newer.outputs] == [*after["channels_sat"], after["lstock_sat"], anchor]


@pytest.mark.slow
def test_a_late_client_burns_the_superseded_lstock_before_the_lsp_can_sweep(
    cluster: Cluster,
) -> None:
    before, _ = _advance(cluster)
    pos = _position(cluster, 0)
    for proc in cluster.clients.values():
        proc.kill(signal.SIGTERM)  # nobody home while the old state goes through
    cheat = _old_state(cluster, pos)
    assert cheat["confirmed"] is True
    old = cluster.chain.get_raw_transaction(cheat["old_state_txid"])
    assert [o.value for o in old.outputs[:-1]] == [*before["channels_sat"], before["lstock_sat"]]
    cluster.start_client(0, AMOUNTS[0])

    def burnt() -> dict[str, Any] | None:
        if cluster.chain.get_raw_mempool():
            cluster.chain.generate_to_address(1, cluster.mine_to)
        return _breach(cluster.client_dir(0), cheat["old_state_txid"])

    won = wait_for("the late client's burn", burnt, timeout=90)
    assert won["won"] is True and won["kind"] == "lstock_burn"
    burn = cluster.chain.get_raw_transaction(won["spender"])
    lstock_vout = len(before["channels_sat"])
    assert [(i.prevout.txid_hex, i.prevout.vout) for i in burn.inputs] == [
        (cheat["old_state_txid"], lstock_vout)
    ]
    assert [o.value for o in burn.outputs] == [0]  # all of the old L-stock went to fees
    assert old.outputs[lstock_vout].value == before["lstock_sat"]
    burn_height = cluster.chain.get_block_count() - _confirmations(cluster, burn.txid_hex) + 1
    csv = FactoryParams.__dataclass_fields__["lstock_csv_delay"].default
    assert 0 < burn_height - cheat["height"] < csv  # the LSP's sweep was never valid yet
