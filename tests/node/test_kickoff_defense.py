"""The kickoff defense with real processes: an old factory whose movers' keys the LSP holds
but whose stayer never returns cannot be paid out twice by its distribution tx.

Client 2 is gone before the rotation and never comes back; clients 0 and 1 move to
factory 1 by their move PTLCs, handing the LSP their keys to factory 0. Factory 0's
distribution tx would pay 0 and 1 their opening balances a second time, so the LSP
broadcasts factory 0's root kickoff `KICKOFF_LEAD` blocks before its locktime; the
stayer's copy of the distribution tx then has no input, and after the CLTV timeout the
LSP sweeps the kickoff's node output through the timeout leaf, to the sat.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import ChainResponseError
from superscalar.chain.rpc import RpcError
from superscalar.node.common import CRASH_ENV, open_db
from superscalar.node.distribution import KICKOFF_LEAD

from .support import Cluster, wait_for

AMOUNTS = [100_000, 120_000, 90_000]
ACTIVE, DYING = 70, 60
"""Factory 0 rotates 70 blocks in; its distribution locktime is its exit window (2 DW layers
of 3 × 2 blocks + DYING // 3 = 20) = 32 blocks before its CLTV timeout; DYING leaves the move
PTLC (expiring 6 blocks before that timeout) room for factory 1's exit + its claim margins;
factory 1 (created at the rotation) stays ACTIVE to the end."""
CLOSE_FEERATE = Feerate(2000)  # the LSP's default close feerate (sat/kvB)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, len(AMOUNTS))
    try:
        yield c
    finally:
        c.stop()


def _ladder_factory(cluster: Cluster, fid: str) -> dict[str, Any]:
    snap = cluster.status(cluster.lsp_dir) or {"ladder": {}}
    found = [x for x in snap["ladder"].get("factories", []) if x["factory_id"] == fid]
    return dict(found[0]) if found else {}


def _stored_distribution(cluster: Cluster, i: int) -> Transaction:
    """Client i's signed distribution tx, straight from its SQLite store."""
    db = open_db(cluster.client_dir(i))
    try:
        row = db.execute("SELECT tx FROM distributions WHERE state='held'").fetchone()
        return Transaction.from_hex(row["tx"])
    finally:
        db.close()


def _start_and_move_without_the_stayer(cluster: Cluster) -> dict[str, Any]:
    """Factory 0 with 3 clients; client 2 leaves for good, 0 and 1 move to factory 1."""
    cluster.start_lsp("--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING))
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for(
        "factory 0 channels open",
        lambda: cluster.channels_open(cluster.lsp_dir, len(AMOUNTS)),
        120,
    )
    f0 = cluster.factory(cluster.lsp_dir)
    assert f0 is not None
    cluster.clients[2].kill()  # the stayer: gone before the rotation, never back
    cluster.mine_until(int(f0["cltv_timeout"]) - DYING)  # factory 0 is DYING: 0 and 1 move
    wait_for(
        "clients 0 and 1 moved",
        lambda: _ladder_factory(cluster, str(f0["factory_id"])).get("keys_handed_over") == 2,
        180,
    )
    return f0


def _kickoff_in_state(cluster: Cluster, fid: str, state: str) -> dict[str, Any] | None:
    kick = _ladder_factory(cluster, fid).get("kickoff")
    return kick if kick is not None and kick["state"] == state else None


@pytest.mark.slow
def test_lsp_kicks_off_a_factory_with_movers_before_its_stayer_can_pay_them_twice(
    cluster: Cluster,
) -> None:
    f0 = _start_and_move_without_the_stayer(cluster)
    fid0, cltv = str(f0["factory_id"]), int(f0["cltv_timeout"])
    locktime = int(f0["distribution"]["locktime"])
    stayer_tx = _stored_distribution(cluster, 2)
    cluster.mine_until(locktime - KICKOFF_LEAD - 1)
    time.sleep(3)  # a few ladder ticks: one block too early for the defense
    assert _ladder_factory(cluster, fid0)["kickoff"] is None
    cluster.mine_until(locktime - KICKOFF_LEAD)
    kick = wait_for("kickoff broadcast", lambda: _kickoff_in_state(cluster, fid0, "broadcast"))
    cluster.mine_until(locktime - KICKOFF_LEAD + 1)
    info = cluster.chain.get_raw_transaction_verbose(str(kick["txid"]))
    kicked_at = cluster.chain.get_block_count() - info.confirmations + 1
    assert info.confirmations == 1 and kicked_at < locktime
    kickoff = info.tx
    # tree tx 0: spends the funding output, its node output + the anchor, zero fee
    assert kickoff.inputs[0].prevout == stayer_tx.inputs[0].prevout
    assert kickoff.outputs[-1].script_pubkey == P2A_SCRIPT
    assert kickoff.total_out == int(f0["funding_amount"])
    wait_for(
        "kickoff recorded confirmed",
        lambda: _ladder_factory(cluster, fid0)["kickoff"]["confirmed_height"] == kicked_at,
    )
    # the stayer (or anyone with its copy) tries the distribution tx once it is final
    cluster.mine_until(locktime)
    with pytest.raises((RpcError, ChainResponseError), match="inputs-missingorspent"):
        cluster.chain.send_raw_transaction(stayer_tx)
    # after the CLTV timeout the LSP sweeps the kickoff's node output, exact fee
    cluster.mine_until(cltv)
    wait_for("factory 0 swept", lambda: _ladder_factory(cluster, fid0)["state"] == "closed", 60)
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None
    sweep_txid = next(f["close_txid"] for f in snap["factories"] if f["factory_id"] == fid0)
    cluster.mine_until(cltv + 1)
    assert cluster.chain.get_raw_transaction_verbose(sweep_txid).confirmations == 1
    sweep = cluster.chain.get_raw_transaction(sweep_txid)
    node_outputs = [kickoff.outpoint(v) for v in range(len(kickoff.outputs) - 1)]
    assert [i.prevout for i in sweep.inputs] == node_outputs
    total_in = sum(kickoff.outputs[o.vout].value for o in node_outputs)
    assert len(sweep.outputs) == 1
    assert sweep.outputs[0].value == total_in - CLOSE_FEERATE.fee_for_vsize(sweep.vsize)
    assert sweep.locktime == cltv


@pytest.mark.slow
def test_an_lsp_killed_after_deciding_the_kickoff_broadcasts_it_on_restart(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CRASH_ENV, "lsp-after-kickoff-decided")
    f0 = _start_and_move_without_the_stayer(cluster)
    monkeypatch.delenv(CRASH_ENV)
    fid0, locktime = str(f0["factory_id"]), int(f0["distribution"]["locktime"])
    cluster.mine_until(locktime - KICKOFF_LEAD)
    lsp = cluster.lsp
    assert lsp is not None
    wait_for("the LSP died after deciding", lambda: lsp.proc.poll() is not None, 60)
    lsp.kill()  # already dead: closes its log
    mempool = cluster.chain.get_raw_mempool()
    cluster.start_lsp("--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING))
    kick = wait_for("kickoff re-broadcast", lambda: _kickoff_in_state(cluster, fid0, "broadcast"))
    assert kick["txid"] not in mempool  # the crash came before the first broadcast
    assert kick["decided_height"] == locktime - KICKOFF_LEAD
    cluster.mine_until(locktime - KICKOFF_LEAD + 1)
    confirmed = wait_for("kickoff confirmed", lambda: _kickoff_in_state(cluster, fid0, "confirmed"))
    assert confirmed["confirmed_height"] == locktime - KICKOFF_LEAD + 1 < locktime


def _payout_script(cluster: Cluster, i: int) -> bytes:
    db = open_db(cluster.client_dir(i))
    try:
        row = db.execute("SELECT value FROM node_kv WHERE key='payout_script'").fetchone()
        return bytes.fromhex(row["value"])
    finally:
        db.close()


@pytest.mark.slow
def test_a_stayer_back_after_the_kickoff_is_closed_out_from_the_kickoff_output(
    cluster: Cluster,
) -> None:
    f0 = _start_and_move_without_the_stayer(cluster)
    fid0, locktime = str(f0["factory_id"]), int(f0["distribution"]["locktime"])
    cluster.mine_until(locktime - KICKOFF_LEAD)
    kick = wait_for("kickoff broadcast", lambda: _kickoff_in_state(cluster, fid0, "broadcast"))
    cluster.mine_until(locktime - KICKOFF_LEAD + 1)
    wait_for("kickoff confirmed", lambda: _kickoff_in_state(cluster, fid0, "confirmed"))
    cluster.start_client(2, AMOUNTS[2])  # the stayer is back before the CLTV timeout
    wait_for("factory 0 closed", lambda: _ladder_factory(cluster, fid0)["state"] == "closed", 120)
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None
    close_txid = next(f["close_txid"] for f in snap["factories"] if f["factory_id"] == fid0)
    cluster.mine_until(locktime - KICKOFF_LEAD + 2)
    assert cluster.chain.get_raw_transaction_verbose(close_txid).confirmations == 1
    kickoff = cluster.chain.get_raw_transaction(str(kick["txid"]))
    close = cluster.chain.get_raw_transaction(close_txid)
    assert [i.prevout for i in close.inputs] == [kickoff.outpoint(0)]
    paid = [o.value for o in close.outputs if o.script_pubkey == _payout_script(cluster, 2)]
    assert paid == [AMOUNTS[2]]  # its whole channel balance, to the sat
    fee = kickoff.outputs[0].value - close.total_out
    assert fee == CLOSE_FEERATE.fee_for_vsize(close.vsize)
    wait_for(
        "the stayer sees the close", lambda: cluster.state_of(cluster.client_dir(2)) == "closed"
    )
