"""Leaf channels over the wire: open after funding, pay client → LSP → client, close on balances."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.tx import Transaction

from .support import Cluster, run_node, wait_for

AMOUNTS = [100_000, 120_000, 90_000]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3)
    try:
        yield c
    finally:
        c.stop()


def _channels(cluster: Cluster, datadir: Path) -> list[dict[str, Any]]:
    snap = cluster.status(datadir)
    assert snap is not None
    return list(snap["channels"])


def _open(cluster: Cluster, datadir: Path, count: int) -> bool:
    chans = _channels(cluster, datadir)
    return len(chans) == count and all(c.get("status") == "open" for c in chans)


def _pubkey(cluster: Cluster, i: int) -> str:
    snap = cluster.status(cluster.client_dir(i))
    assert snap is not None
    return str(snap["pubkey"])


def _pay(cluster: Cluster, payer: int, payee: int, amount_msat: int) -> dict[str, Any]:
    inv = run_node(
        "invoice", "--datadir", str(cluster.client_dir(payee)), "--amount-msat", str(amount_msat)
    )
    assert inv.returncode == 0, inv.stderr
    h = json.loads(inv.stdout)["payment_hash"]
    r = run_node(
        "pay",
        "--datadir",
        str(cluster.client_dir(payer)),
        "--to-pubkey",
        _pubkey(cluster, payee),
        "--payment-hash",
        h,
        "--amount-msat",
        str(amount_msat),
    )
    assert r.returncode == 0, r.stderr + r.stdout
    result: dict[str, Any] = json.loads(r.stdout)
    assert len(bytes.fromhex(result["preimage"])) == 32
    return result


def _lsp_balances(cluster: Cluster) -> dict[int, tuple[int, int]]:
    return {
        int(c["position"]): (int(c["local_msat"]), int(c["remote_msat"]))
        for c in _channels(cluster, cluster.lsp_dir)
    }


@pytest.mark.slow
def test_pay_between_clients_then_close_on_balances(cluster: Cluster) -> None:
    cluster.start_lsp()
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 3), timeout=90)
    for i in range(3):
        wait_for(f"client {i} channel open", lambda i=i: _open(cluster, cluster.client_dir(i), 1))
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None
    pos_of = {c["pubkey"]: int(c["position"]) for c in f["clients"]}
    position = [pos_of[_pubkey(cluster, i)] for i in range(3)]
    start = {position[i]: AMOUNTS[i] * 1000 for i in range(3)}  # + as much LSP inbound
    assert _lsp_balances(cluster) == {p: (start[p], start[p]) for p in start}

    p1 = _pay(cluster, 0, 1, 7_000_123)
    p2 = _pay(cluster, 2, 0, 1_500_500)
    print(f"payment latency over the wire: {p1['ms']} ms, {p2['ms']} ms")
    # a hash the payee has no invoice for: failed back payee → LSP → payer, nothing moves
    unknown = run_node(
        "pay",
        "--datadir",
        str(cluster.client_dir(2)),
        "--to-pubkey",
        _pubkey(cluster, 1),
        "--payment-hash",
        "ab" * 32,
        "--amount-msat",
        "5000",
    )
    assert unknown.returncode != 0 and "payment failed" in unknown.stderr, unknown.stderr

    client = {
        0: start[position[0]] - 7_000_123 + 1_500_500,
        1: start[position[1]] + 7_000_123,
        2: start[position[2]] - 1_500_500,
    }
    capacity = {i: 2 * AMOUNTS[i] * 1000 for i in range(3)}
    expect_lsp = {position[i]: (capacity[i] - client[i], client[i]) for i in range(3)}
    wait_for("lsp balances settle", lambda: _lsp_balances(cluster) == expect_lsp)
    for i in range(3):

        def settled(i: int = i) -> bool:
            (c,) = _channels(cluster, cluster.client_dir(i))
            return (c["local_msat"], c["remote_msat"], c["htlcs"]) == (
                client[i],
                capacity[i] - client[i],
                0,
            )

        wait_for(f"client {i} balance", settled)
    snap0, snap2 = cluster.status(cluster.client_dir(0)), cluster.status(cluster.client_dir(2))
    assert snap0 is not None and snap2 is not None
    assert [p["state"] for p in snap0["payments"]] == ["complete"]
    assert {p["payment_hash"]: p["state"] for p in snap2["payments"]}["ab" * 32] == "failed"
    lsp_snap = cluster.status(cluster.lsp_dir)
    assert lsp_snap is not None
    assert [
        (f["up_position"], f["down_position"], f["amount_msat"], f["state"])
        for f in lsp_snap["forwards"]
    ] == [
        (position[0], position[1], 7_000_123, "fulfilled"),
        (position[2], position[0], 1_500_500, "fulfilled"),
        (position[2], position[1], 5_000, "failed"),
    ]
    table = run_node("status", "--datadir", str(cluster.lsp_dir))
    assert table.returncode == 0 and "2 fulfilled" in table.stdout, table.stderr

    # the LSP restarts on the same database: same balances
    assert cluster.lsp is not None
    cluster.lsp.kill(signal.SIGTERM)
    cluster.start_lsp()
    assert _lsp_balances(cluster) == expect_lsp
    for i in range(3):
        wait_for(
            f"client {i} reconnects",
            lambda i=i: (cluster.status(cluster.client_dir(i)) or {}).get("connected"),
        )

    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    close_txid = close.stdout.strip().splitlines()[-1]
    cluster.chain.generate_to_address(1, cluster.mine_to)
    assert cluster.chain.get_raw_transaction_verbose(close_txid).confirmations == 1
    tx: Transaction = cluster.chain.get_raw_transaction(close_txid)
    by_position = [0] * 3
    for i in range(3):
        by_position[position[i]] = client[i] // 1000
    assert [o.value for o in tx.outputs[:3]] == by_position
    funding_amount = int(f["funding_amount"])
    lsp_out = tx.outputs[3].value
    fee = funding_amount - tx.total_out
    remainders = sum(c % 1000 for c in client.values())
    assert tx.total_out + fee == funding_amount
    assert tx.total_out == sum(by_position) + lsp_out
    assert 0 < fee < 2_000
    print(f"close: clients {by_position}, lsp {lsp_out}, fee {fee}, msat remainders {remainders}")
