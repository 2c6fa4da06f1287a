"""LSP and clients as separate processes on loopback, over BOLT-8, on the embedded chain."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from superscalar.bitcoin.tx import Transaction
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.wire.codec import Hex, Init
from superscalar.wire.connection import exchange_init, open_connection
from superscalar.wire.messages import JoinRequest

from .support import Cluster, run_node, wait_for


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path, getattr(request, "param", 2))
    try:
        yield c
    finally:
        c.stop()


def _funded(cluster: Cluster) -> dict[str, object]:
    def all_funded() -> bool:
        dirs = [cluster.lsp_dir, *(cluster.client_dir(i) for i in cluster.clients)]
        return all(cluster.state_of(d) == "funded" for d in dirs)

    wait_for("factory funded everywhere", all_funded, timeout=90)
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None
    return f


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [4], indirect=True, ids=["N=4"])
def test_ceremony_funds_confirms_and_closes_with_exact_amounts(cluster: Cluster) -> None:
    cluster.start_lsp()
    amounts = [100_000, 120_000, 90_000, 150_000]
    for i, amount in enumerate(amounts):
        cluster.start_client(i, amount)
    f = _funded(cluster)
    txid = str(f["funding_txid"])
    cluster.chain.generate_to_address(1, cluster.mine_to)
    info = cluster.chain.get_raw_transaction_verbose(txid)
    assert info.confirmations == 1
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None
    print(f"ceremony wall time N=4: {snap['ceremony_ms']} ms")
    for i in range(4):
        cf = cluster.factory(cluster.client_dir(i))
        assert cf is not None and cf["funding_txid"] == txid and cf["signatures"] > 0
    status = run_node("status", "--datadir", str(cluster.lsp_dir))
    assert status.returncode == 0, status.stderr
    assert "funded" in status.stdout and "tree nodes" in status.stdout

    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    close_txid = close.stdout.strip().splitlines()[-1]
    cluster.chain.generate_to_address(1, cluster.mine_to)
    tx: Transaction = cluster.chain.get_raw_transaction(close_txid)
    funding = cluster.chain.get_raw_transaction(txid)
    amount = int(str(f["funding_amount"]))
    assert funding.outputs[tx.inputs[0].prevout.vout].value == amount
    by_position = [c["amount_sat"] for c in f["clients"]]  # type: ignore[attr-defined]
    assert sorted(by_position) == sorted(amounts)
    assert [o.value for o in tx.outputs[:4]] == by_position
    lsp_out = tx.outputs[4].value
    assert tx.total_out == sum(amounts) + lsp_out
    fee = amount - tx.total_out
    assert 0 < fee < 2_000
    wait_for(
        "clients see the close",
        lambda: all(cluster.state_of(cluster.client_dir(i)) == "closed" for i in range(4)),
    )


@pytest.mark.slow
def test_client_killed_mid_ceremony_restarts_cleanly(cluster: Cluster) -> None:
    cluster.start_lsp()
    cluster.start_client(0)
    time.sleep(1.0)
    cluster.clients[0].kill(signal.SIGKILL)  # joined, then gone before the ceremony ends
    cluster.start_client(1)
    time.sleep(2.0)
    cluster.start_client(0)
    f = _funded(cluster)
    cluster.chain.generate_to_address(1, cluster.mine_to)
    assert cluster.chain.get_raw_transaction_verbose(str(f["funding_txid"])).confirmations == 1


@pytest.mark.slow
def test_lsp_killed_after_ready_resumes(cluster: Cluster) -> None:
    cluster.start_lsp()
    for i in range(2):
        cluster.start_client(i)
    f = _funded(cluster)
    assert cluster.lsp is not None
    cluster.lsp.kill(signal.SIGKILL)
    cluster.start_lsp()
    # the clients reconnect with their factory id and are resent READY/FUNDED
    wait_for(
        "lsp sees both members again",
        lambda: (cluster.status(cluster.lsp_dir) or {}).get("connected_members") == 2,
    )
    assert cluster.factory(cluster.lsp_dir) == f
    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    # signed and announced, but only a confirmed close we signed makes the factory closed
    wait_for("client 0 closing", lambda: cluster.state_of(cluster.client_dir(0)) == "closing")
    # a client down when the close confirms learns it from the chain once back
    cluster.clients[0].kill(signal.SIGKILL)
    cluster.chain.generate_to_address(1, cluster.mine_to)
    db = sqlite3.connect(cluster.client_dir(0) / "node.sqlite3")
    (state,) = db.execute("SELECT state FROM factories WHERE role='client'").fetchone()
    db.close()
    assert state == "closing"
    cluster.start_client(0)
    closed = wait_for(
        "client 0 closed",
        lambda: (f := cluster.factory(cluster.client_dir(0))) and f["close_txid"] and f,
    )
    assert closed["state"] == "closed"
    assert closed["close_txid"] == close.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_client_invoice_keeps_the_preimage_of_its_hash(cluster: Cluster) -> None:
    cluster.start_lsp()
    cluster.start_client(0)
    wait_for("client control", lambda: cluster.status(cluster.client_dir(0)))
    r = run_node("invoice", "--datadir", str(cluster.client_dir(0)), "--amount-msat", "5000")
    assert r.returncode == 0, r.stderr
    inv = json.loads(r.stdout)
    assert hashlib.sha256(bytes.fromhex(inv["preimage"])).hexdigest() == inv["payment_hash"]
    snap = cluster.status(cluster.client_dir(0))
    assert snap is not None
    assert [i["payment_hash"] for i in snap["invoices"]] == [inv["payment_hash"]]
    bad = run_node("invoice", "--datadir", str(cluster.client_dir(0)), "--amount-msat", "0")
    assert bad.returncode == 2


async def _join_and_stall(cluster: Cluster, stalled: asyncio.Event, release: asyncio.Event) -> None:
    """A client that joins and never answers PROPOSE: the LSP waits in the nonce round."""
    conn = await open_connection(
        "127.0.0.1", cluster.lsp_port, SecretKey.generate(), PublicKey.from_hex(cluster.lsp_pubkey)
    )
    await exchange_init(conn, Init())
    await conn.send_message(JoinRequest(amount_sat=100_000, payout_script=Hex(bytes(22))))
    await conn.receive_message(30)  # PROPOSE
    stalled.set()
    await release.wait()
    await conn.close()


@pytest.mark.slow
def test_lsp_killed_mid_ceremony_restarts_a_fresh_attempt(cluster: Cluster) -> None:
    cluster.start_lsp()
    cluster.start_client(0)
    wait_for("client 0 queued", lambda: (cluster.status(cluster.lsp_dir) or {})["queued_clients"])

    async def scenario() -> None:
        stalled, release = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(_join_and_stall(cluster, stalled, release))
        await asyncio.wait_for(stalled.wait(), 30)
        await asyncio.to_thread(
            wait_for,
            "client 0 sent nonces",
            lambda: cluster.state_of(cluster.client_dir(0)) == "nonces_sent",
        )
        assert cluster.lsp is not None
        cluster.lsp.kill(signal.SIGKILL)  # mid-ceremony: PROPOSE out, nonces half in
        release.set()
        await task

    asyncio.run(scenario())
    cluster.start_lsp()
    cluster.start_client(1)
    wait_for("funded after restart", lambda: cluster.state_of(cluster.lsp_dir) == "funded", 60)
    wait_for("client 0 funded", lambda: cluster.state_of(cluster.client_dir(0)) == "funded")
    snap = cluster.status(cluster.client_dir(0))
    assert snap is not None
    assert sorted(f["state"] for f in snap["factories"]) == ["aborted", "funded"]
    lsp = cluster.status(cluster.lsp_dir)
    assert lsp is not None
    assert sorted(f["state"] for f in lsp["factories"]) == ["aborted", "funded"]
