"""A client's unilateral exit with real processes: the LSP is gone, `superscalar exit` gets
the client's money out on chain — its factory path, its latest commitment, its to_local.

One cluster (chain, LSP, two clients) plays it out once: a payment moves the
balances off the opening ones, the LSP is killed, client 0 runs `exit`, and the
test mines blocks until the daemon says the exit is done. Each test checks one
outcome on chain or at the command line.
"""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from superscalar.bitcoin.script import is_p2a
from superscalar.bitcoin.tx import Transaction
from superscalar.node.exit import SWEEP_FEERATE

from .support import Cluster, run_node, wait_for
from .test_payments import _channels, _open, _pay, _pubkey

AMOUNTS = [100_000, 120_000]
PAID_MSAT = 7_000_123
EXITER = 0


@dataclass
class Scene:
    cluster: Cluster
    local_msat: int
    exit: dict[str, Any]
    pay_after: Any
    restarted_after: int
    advance: dict[str, Any]
    """What `liquidity` answered: the leaf advanced once before the exit."""
    """Exit steps confirmed when the client daemon was killed and started again."""


def _exit_entry(cluster: Cluster) -> dict[str, Any]:
    snap = cluster.status(cluster.client_dir(EXITER))
    assert snap is not None
    (entry,) = snap["exits"]
    return dict(entry)


def _mine_until_done(
    cluster: Cluster, restart_after: int, timeout: float = 240
) -> tuple[dict[str, Any], int]:
    """Mine what the exit waits for (up to its height when it waits for a relative lock,
    else one block) until the daemon reports it done; kill and restart the client once
    `restart_after` steps confirmed."""
    deadline = time.monotonic() + timeout
    restarted = -1
    while time.monotonic() < deadline:
        entry = _exit_entry(cluster)
        if entry["state"] == "done":
            return entry, restarted
        if restarted < 0 and entry["confirmed_steps"] >= restart_after:
            restarted = entry["confirmed_steps"]
            cluster.clients[EXITER].kill(signal.SIGKILL)
            cluster.start_client(EXITER, AMOUNTS[EXITER])
            wait_for("client back", lambda: cluster.status(cluster.client_dir(EXITER)))
            continue
        current = next(s for s in entry["steps"] if s["state"] != "confirmed")
        tip = cluster.chain.get_block_count()
        if current["wait_height"] is not None and current["wait_height"] > tip:
            cluster.chain.generate_to_address(current["wait_height"] - tip, cluster.mine_to)
        else:  # in the mempool, or its parent is (the funding tx, say)
            cluster.chain.generate_to_address(1, cluster.mine_to)
        time.sleep(0.5)
    raise AssertionError(f"exit not done: {_exit_entry(cluster)}")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    cluster = Cluster(tmp_path_factory.mktemp("exit"), 2)
    try:
        cluster.start_lsp()
        for i, amount in enumerate(AMOUNTS):
            cluster.start_client(i, amount)
        wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 2), timeout=90)
        for i in range(2):
            wait_for(f"client {i} open", lambda i=i: _open(cluster, cluster.client_dir(i), 1))
        bought = run_node(
            "liquidity", "--datadir", str(cluster.client_dir(EXITER)), "--amount", "20000"
        )
        assert bought.returncode == 0, bought.stderr + bought.stdout
        _pay(cluster, EXITER, 1, PAID_MSAT)
        local = AMOUNTS[EXITER] * 1000 - PAID_MSAT

        def settled() -> bool:
            (c,) = _channels(cluster, cluster.client_dir(EXITER))
            return c["local_msat"] == local and c["htlcs"] == 0

        wait_for("payer balance settles", settled)
        assert cluster.lsp is not None
        cluster.lsp.kill(signal.SIGKILL)  # the LSP is gone
        r = run_node("exit", "--datadir", str(cluster.client_dir(EXITER)))
        assert r.returncode == 0, r.stderr + r.stdout
        pay_after = run_node(
            "pay", "--datadir", str(cluster.client_dir(EXITER)),
            "--to-pubkey", _pubkey(cluster, 1), "--payment-hash", "ab" * 32,
            "--amount-msat", "1000",
        )  # fmt: skip
        entry, restarted = _mine_until_done(cluster, restart_after=2)
        yield Scene(cluster, local, entry, pay_after, restarted, json.loads(bought.stdout))
    finally:
        cluster.stop()


def _tx(scene: Scene, txid: str) -> Transaction:
    return scene.cluster.chain.get_raw_transaction(txid)


def _input_value(scene: Scene, tx: Transaction) -> int:
    return sum(_tx(scene, i.prevout.txid_hex).outputs[i.prevout.vout].value for i in tx.inputs)


def _payout_script(scene: Scene) -> bytes:
    path = scene.cluster.client_dir(EXITER) / "node.sqlite3"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (hexed,) = db.execute("SELECT value FROM node_kv WHERE key='payout_script'").fetchone()
        return bytes.fromhex(hexed)
    finally:
        db.close()


@pytest.mark.slow
def test_every_exit_tx_confirms_in_order_each_spending_the_previous(scene: Scene) -> None:
    steps = scene.exit["steps"]
    assert [s["kind"] for s in steps][-2:] == ["commitment", "sweep"]
    assert {s["kind"] for s in steps[:-2]} == {"kickoff", "state"}
    heights = [s["confirmed_height"] for s in steps]
    assert all(h is not None for h in heights)
    assert heights == sorted(heights) and len(set(heights)) == len(heights)
    funding = scene.cluster.factory(scene.cluster.client_dir(EXITER))
    assert funding is not None
    first = _tx(scene, steps[0]["txid"])
    assert first.inputs[0].prevout.txid_hex == funding["funding_txid"]
    for prev, nxt in itertools.pairwise(steps):
        assert _tx(scene, nxt["txid"]).inputs[0].prevout.txid_hex == prev["txid"]


@pytest.mark.slow
def test_the_exit_uses_the_newest_leaf_state(scene: Scene) -> None:
    leaf = scene.exit["steps"][-3]
    assert leaf["kind"] == "state"
    assert leaf["txid"] == scene.advance["leaf_txid"]
    assert leaf["delay"] == scene.advance["sequence"] & 0xFFFF
    on_chain = _tx(scene, leaf["txid"]).inputs[0].sequence & 0xFFFF
    assert on_chain == leaf["delay"] and leaf["delay"] < 30  # newer waits less


@pytest.mark.slow
def test_relative_locks_are_respected_on_chain(scene: Scene) -> None:
    steps = scene.exit["steps"]
    for prev, nxt in itertools.pairwise(steps):
        assert nxt["confirmed_height"] - prev["confirmed_height"] >= nxt["delay"]
    assert steps[-1]["delay"] == 144  # to_self_delay of our to_local


@pytest.mark.slow
def test_tree_txs_and_commitment_pay_no_fee_and_carry_an_anchor(scene: Scene) -> None:
    for s in scene.exit["steps"][:-1]:
        tx = _tx(scene, s["txid"])
        assert _input_value(scene, tx) == sum(o.value for o in tx.outputs), s["kind"]
        assert any(is_p2a(o.script_pubkey) for o in tx.outputs), s["kind"]


@pytest.mark.slow
def test_sweep_pays_the_channel_balance_minus_its_explicit_fee(scene: Scene) -> None:
    sweep = _tx(scene, scene.exit["steps"][-1]["txid"])
    commitment = _tx(scene, scene.exit["steps"][-2]["txid"])
    (inp,) = sweep.inputs
    assert inp.prevout.txid_hex == commitment.txid_hex
    to_local = commitment.outputs[inp.prevout.vout].value
    assert to_local == scene.local_msat // 1000  # the LSP opened the channel: it pays fees
    (out,) = sweep.outputs
    fee = SWEEP_FEERATE.fee_for_vsize(sweep.vsize)
    assert out.value + fee == _input_value(scene, sweep)
    assert out.value == to_local - fee
    assert out.script_pubkey == _payout_script(scene)


@pytest.mark.slow
def test_exit_resumes_after_the_client_restarts(scene: Scene) -> None:
    assert 0 < scene.restarted_after < len(scene.exit["steps"])
    assert scene.exit["confirmed_steps"] == len(scene.exit["steps"])


@pytest.mark.slow
def test_no_payment_once_the_exit_is_requested(scene: Scene) -> None:
    assert scene.pay_after.returncode != 0
    assert "exiting this factory" in scene.pay_after.stderr


@pytest.mark.slow
def test_status_shows_the_exit_done(scene: Scene) -> None:
    r = run_node("status", "--datadir", str(scene.cluster.client_dir(EXITER)))
    assert r.returncode == 0, r.stderr
    assert "unilateral exit" in r.stdout and ": done" in r.stdout


@pytest.mark.slow
def test_exit_without_a_funded_factory_is_refused(scene: Scene) -> None:
    cluster = scene.cluster
    cluster.start_client(5, 50_000)  # its LSP is gone: it never joins a factory
    d = cluster.client_dir(5)
    wait_for("lonely client control", lambda: cluster.status(d))
    r = run_node("exit", "--datadir", str(d))
    assert r.returncode != 0
    assert "no funded factory to exit from" in r.stderr, r.stderr
