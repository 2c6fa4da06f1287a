"""A payer that never settles an HTLC the LSP already paid downstream loses it on chain
(issue 14, attack 10).

The payer (`--dev-misbehave hold-htlc`) pays an honest payee on the other leaf of a
two-level tree through the unmodified LSP. The payee fulfils, so the LSP has paid it;
the payer drops the LSP's fulfil and everything after, keeping the HTLC on its
commitment to take it back by timeout at its expiry. The LSP goes on chain by itself
when the payer's exit path + margin is all that is left before the expiry: it
publishes the payer's path, its own latest commitment and the HTLC-success tx (all
confirmed before the expiry), then sweeps the second-stage output after its CSV. The
LSP is killed (-9) and restarted right after it decided: the stored plan carries on.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import Transaction
from superscalar.ladder.enforce import confirmation_margin, enforce_height
from superscalar.node.channels import CHANNEL_CONFIG

from .support import NODE, Cluster, run_node, wait_for

AMOUNT = 100_000
PAY_MSAT = 5_000_000
EXIT_DELAY = 12
"""Four clients, leaf arity 2: two DW layers of (4 - 1) x 2 blocks (regtest DW step)."""
MARGIN = confirmation_margin(4)  # 4 path txs (two kickoffs, two states)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 4)
    try:
        yield c
    finally:
        c.stop()


def _lsp(cluster: Cluster) -> dict[str, Any]:
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None
    return snap


def _enforcement(cluster: Cluster) -> dict[str, Any] | None:
    found = _lsp(cluster).get("enforcements") or []
    return found[0] if found else None


def _step(e: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(s for s in e["steps"] if str(s["kind"]).startswith(prefix))


def _mine_until_confirmed(cluster: Cluster, prefix: str, limit: int) -> dict[str, Any]:
    """Mine a block whenever the LSP's enforcement waits for one (a step in the mempool or
    a relative lock to run out) until step `prefix` is confirmed; never past `limit`."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        e = _enforcement(cluster)
        assert e is not None
        s = _step(e, prefix)
        if s["state"] == "confirmed":
            return s
        tip = cluster.chain.get_block_count()
        waiting = [
            x
            for x in e["steps"]
            if x["state"] == "broadcast"
            or (x["state"] == "waiting" and x["wait_height"] is not None and x["wait_height"] > tip)
            or (x["state"] == "waiting" and x["last_error"])  # e.g. a lock one block short
        ]
        if waiting:
            assert tip + 1 < limit, e
            cluster.mine_until(tip + 1)
        time.sleep(0.4)
    raise AssertionError(f"step {prefix} never confirmed: {_enforcement(cluster)}")


@pytest.mark.slow
def test_a_payer_sitting_on_a_fulfilled_htlc_loses_it_to_the_lsps_claim_before_expiry(
    cluster: Cluster,
) -> None:
    cluster.start_lsp()
    cluster.start_client(0, AMOUNT, "--dev-tools", "--dev-misbehave", "hold-htlc")
    for i in (1, 2, 3):
        cluster.start_client(i, AMOUNT)
    wait_for("channels open", lambda: cluster.channels_open(cluster.lsp_dir, 4), 180)
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None
    pos_of = {str(c["pubkey"]): int(c["position"]) for c in f["clients"]}
    keys = {}
    for i in range(4):
        snap = cluster.status(cluster.client_dir(i))
        assert snap is not None
        keys[i] = str(snap["pubkey"])
    payer_pos = pos_of[keys[0]]
    payee = next(i for i in (1, 2, 3) if pos_of[keys[i]] // 2 != payer_pos // 2)  # other leaf
    for i in range(4):
        wait_for(f"client {i} open", lambda i=i: cluster.channels_open(cluster.client_dir(i), 1))
    delta = int(_lsp(cluster)["htlc_cltv_delta"])
    assert delta == 2 * (EXIT_DELAY + MARGIN) + CHANNEL_CONFIG.min_cltv_delta > 40

    def payee_msat() -> int:
        snap = cluster.status(cluster.client_dir(payee))
        assert snap is not None
        (chan,) = snap["channels"]
        return int(chan["local_msat"])

    before = payee_msat()
    inv = run_node(
        "invoice", "--datadir", str(cluster.client_dir(payee)), "--amount-msat", str(PAY_MSAT)
    )
    assert inv.returncode == 0, inv.stderr
    payment_hash = json.loads(inv.stdout)["payment_hash"]
    pay = subprocess.Popen(
        [*NODE, "pay", "--datadir", str(cluster.client_dir(0)), "--to-pubkey", keys[payee],
         "--payment-hash", payment_hash, "--amount-msat", str(PAY_MSAT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def fulfilled() -> dict[str, Any] | None:
            rows = [r for r in _lsp(cluster)["forwards"] if r["payment_hash"] == payment_hash]
            return rows[0] if rows and rows[0]["state"] == "fulfilled" else None

        fwd = wait_for("the payee fulfilled downstream", fulfilled, 60)
        expiry = int(fwd["cltv_expiry"])

        wait_for("the payee holds the payment", lambda: payee_msat() == before + PAY_MSAT, 60)
        # the payer never settles: the HTLC stays in the LSP's channel with it
        time.sleep(2)
        chans = {int(c["position"]): c for c in _lsp(cluster)["channels"]}
        assert chans[payer_pos]["htlcs"] == 1

        start = enforce_height(expiry, EXIT_DELAY, MARGIN)
        cluster.mine_until(start - 1)
        time.sleep(3)
        assert _enforcement(cluster) is None  # one block early: the LSP still waits
        cluster.mine_until(start)
        e = wait_for("the LSP goes on chain by itself", lambda: _enforcement(cluster), 30)
        assert int(e["position"]) == payer_pos and e["state"] == "running"
        # the plan is stored before the first broadcast: a kill -9 and restart resumes it
        assert cluster.lsp is not None
        cluster.lsp.kill()
        cluster.start_lsp()

        success = _mine_until_confirmed(cluster, "htlc-success", expiry)
        assert int(success["confirmed_height"]) < expiry  # before the payer's timeout path
        assert int(success["amount_msat"]) == PAY_MSAT
        commitment = _step(e, "commitment")
        ctx = cluster.chain.get_raw_transaction(str(commitment["txid"]))
        stx: Transaction = cluster.chain.get_raw_transaction(str(success["txid"]))
        spent = stx.inputs[0].prevout
        assert spent.txid_hex == ctx.txid_hex
        assert ctx.outputs[spent.vout].value == PAY_MSAT // 1000  # the HTLC output itself
        # the payer's timeout claim of that output is impossible: it is spent, for good
        assert cluster.chain.get_tx_out(spent.txid_hex, spent.vout) is None
        assert stx.outputs[0].value == PAY_MSAT // 1000  # zero-fee second stage (CPFP'd)

        cluster.mine_until(int(success["confirmed_height"]) + CHANNEL_CONFIG.to_self_delay - 1)
        sweep = _mine_until_confirmed(cluster, "htlc-sweep", 10**9)
        sweep_tx: Transaction = cluster.chain.get_raw_transaction(str(sweep["txid"]))
        assert [i.prevout for i in sweep_tx.inputs] == [stx.outpoint(0)]
        (out,) = sweep_tx.outputs
        fee = Feerate.from_sat_per_vb(2).fee_for_vsize(sweep_tx.vsize)
        assert out.value == PAY_MSAT // 1000 - fee  # the HTLC amount less an explicit fee
        # to the LSP: a coin of its wallet (the chain's), not any client's payout
        payouts = {str(c["payout_script"]) for c in f["clients"] if "payout_script" in c}
        assert out.script_pubkey.hex() not in payouts
        coins = {u.outpoint: u for u in cluster.chain.list_unspent(1)}
        assert coins[sweep_tx.outpoint(0)].amount_sat == out.value
    finally:
        pay.kill()
        pay.communicate()
