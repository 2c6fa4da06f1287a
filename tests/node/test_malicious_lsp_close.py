"""A malicious LSP's close against unmodified clients (issue 14, attacks 1 and 6).

- `fake-close-done`: the LSP announces a close nobody signed (a made-up txid) and
  broadcasts nothing. Before the fix the clients marked the factory closed, never
  broadcast their distribution tx and refused `exit`; the LSP swept all at the CLTV.
- `withhold-close-done`: the LSP collects every close signature, then sends no DONE
  and broadcasts nothing, keeping the channels live. Before the fix the clients kept
  paying, so the LSP chose which balances (old close or newer commitments) reach the chain.

Each run ends on chain: the clients' own exits pay each its channel balance to its
payout script, less the sweep's explicit fee.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.chain.bitcoind import ChainResponseError
from superscalar.chain.rpc import RpcError
from superscalar.node.closing import CLOSE_EXIT_BLOCKS_REGTEST
from superscalar.node.common import open_db
from superscalar.node.exit import SWEEP_FEERATE

from .support import Cluster, run_node, wait_for
from .test_payments import _channels, _open, _pay, _pubkey

AMOUNTS = [100_000, 120_000]
PAID_MSAT = 7_000_123
BALANCES_MSAT = [AMOUNTS[0] * 1000 - PAID_MSAT, AMOUNTS[1] * 1000 + PAID_MSAT]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, len(AMOUNTS))
    try:
        yield c
    finally:
        c.stop()


def _start(cluster: Cluster, switch: str) -> None:
    """A misbehaving LSP, two honest clients, a payment 0 → 1 settled."""
    cluster.start_lsp("--dev-tools", "--dev-misbehave", switch)
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 2), timeout=90)
    for i in range(2):
        wait_for(f"client {i} open", lambda i=i: _open(cluster, cluster.client_dir(i), 1))
    cluster.mine_until(cluster.chain.get_block_count() + 1)  # the funding confirms
    _pay(cluster, 0, 1, PAID_MSAT)
    for i in range(2):

        def settled(i: int = i) -> bool:
            (c,) = _channels(cluster, cluster.client_dir(i))
            return c["local_msat"] == BALANCES_MSAT[i] and c["quiescent"]

        wait_for(f"client {i} balance settles", settled)


def _status(cluster: Cluster, i: int) -> dict[str, Any]:
    snap = cluster.status(cluster.client_dir(i))
    assert snap is not None
    return snap


def _exit_of(cluster: Cluster, i: int) -> dict[str, Any] | None:
    exits = _status(cluster, i)["exits"]
    return dict(exits[0]) if exits else None


def _mine_until_exits_done(cluster: Cluster, timeout: float = 240) -> list[dict[str, Any]]:
    """Mine what the clients' exits wait for until both are done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = [_exit_of(cluster, i) for i in range(2)]
        if all(e is not None and e["state"] == "done" for e in entries):
            return [e for e in entries if e is not None]
        tip = cluster.chain.get_block_count()
        waits = [
            s["wait_height"]
            for e in entries
            if e is not None and e["state"] != "done"
            for s in e["steps"]
            if s["state"] != "confirmed" and s["wait_height"] is not None
        ]
        target = min(waits) if waits and min(waits) > tip else tip + 1
        cluster.mine_until(target)
        time.sleep(0.5)
    raise AssertionError(f"exits not done: {[_exit_of(cluster, i) for i in range(2)]}")


def _payout_script(cluster: Cluster, i: int) -> bytes:
    db = open_db(cluster.client_dir(i))
    try:
        row = db.execute("SELECT value FROM node_kv WHERE key='payout_script'").fetchone()
        return bytes.fromhex(row["value"])
    finally:
        db.close()


def _check_paid_on_chain(cluster: Cluster, exits: list[dict[str, Any]]) -> None:
    """Each client's sweep pays its channel balance (whole sat) less the sweep fee."""
    for i, entry in enumerate(exits):
        sweep = cluster.chain.get_raw_transaction(entry["steps"][-1]["txid"])
        assert cluster.chain.get_raw_transaction_verbose(sweep.txid_hex).confirmations > 0
        commitment = cluster.chain.get_raw_transaction(entry["steps"][-2]["txid"])
        (inp,) = sweep.inputs
        to_local = commitment.outputs[inp.prevout.vout].value
        assert to_local == BALANCES_MSAT[i] // 1000
        (out,) = sweep.outputs
        assert out.script_pubkey == _payout_script(cluster, i)
        assert out.value == to_local - SWEEP_FEERATE.fee_for_vsize(sweep.vsize)


def _unknown_to_chain(cluster: Cluster, txid: str) -> bool:
    try:
        cluster.chain.get_raw_transaction(txid)
    except (RpcError, ChainResponseError):
        return True
    return False


@pytest.mark.slow
def test_fake_close_done_is_refused_and_exit_pays_each_client(cluster: Cluster) -> None:
    _start(cluster, "fake-close-done")
    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    fake = close.stdout.strip().splitlines()[-1]
    for i in range(2):
        wait_for(
            f"client {i} refuses the unsigned close",
            lambda i=i: "close-not-signed" in (_status(cluster, i)["last_error"] or ""),
        )
    assert _unknown_to_chain(cluster, fake)
    for i in range(2):
        f = cluster.factory(cluster.client_dir(i))
        assert f is not None and (f["state"], f["close_txid"]) == ("funded", None)
        assert _status(cluster, i)["closing"] is None
    # the safety net is still armed: each client exits alone
    for i in range(2):
        r = run_node("exit", "--datadir", str(cluster.client_dir(i)))
        assert r.returncode == 0, r.stderr + r.stdout
    _check_paid_on_chain(cluster, _mine_until_exits_done(cluster))


@pytest.mark.slow
def test_withheld_close_freezes_the_channel_and_clients_exit_alone(cluster: Cluster) -> None:
    _start(cluster, "withhold-close-done")
    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    withheld = close.stdout.strip().splitlines()[-1]
    for i in range(2):
        f = cluster.factory(cluster.client_dir(i))
        assert f is not None and f["state"] == "closing"
        closing = _status(cluster, i)["closing"]
        assert closing["signed_txids"] == [withheld]
    lsp = cluster.factory(cluster.lsp_dir)
    assert lsp is not None and lsp["state"] == "funded"  # it keeps the channels going
    # frozen from the signature on: a payment would move balances the close does not pay
    inv = run_node("invoice", "--datadir", str(cluster.client_dir(1)), "--amount-msat", "5000")
    assert inv.returncode == 0, inv.stderr
    payment_hash = json.loads(inv.stdout)["payment_hash"]
    pay = run_node(
        "pay", "--datadir", str(cluster.client_dir(0)), "--to-pubkey", _pubkey(cluster, 1),
        "--payment-hash", payment_hash, "--amount-msat", "5000",
    )  # fmt: skip
    assert pay.returncode != 0
    assert "channel-frozen" in pay.stderr + pay.stdout
    for i in range(2):
        (c,) = _channels(cluster, cluster.client_dir(i))
        assert c["local_msat"] == BALANCES_MSAT[i] and c["quiescent"]
    # the LSP sits on the close: past the deadline each client goes on chain by itself
    signed_at = int(_status(cluster, 0)["closing"]["signed_height"])
    assert _exit_of(cluster, 0) is None
    cluster.mine_until(max(cluster.chain.get_block_count(), signed_at + CLOSE_EXIT_BLOCKS_REGTEST))
    for i in range(2):
        wait_for(f"client {i} exits alone", lambda i=i: _exit_of(cluster, i) is not None, 30)
    exits = _mine_until_exits_done(cluster)
    assert _unknown_to_chain(cluster, withheld) or (
        cluster.chain.get_raw_transaction_verbose(withheld).confirmations <= 0
    )
    _check_paid_on_chain(cluster, exits)
    for i in range(2):
        f = cluster.factory(cluster.client_dir(i))
        assert f is not None and f["state"] != "closed"  # abandoned: its input is spent
