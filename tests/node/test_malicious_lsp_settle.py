"""A malicious LSP that takes a client's secret and never settles (`withhold-settle`).

The LSP rotates two clients into factory 1 and offers each its move PTLC; each
(unmodified) client fulfils it with its old factory key. The LSP records the key — it
can now close factory 0 alone — but never sends the commitment_signed/revoke_and_ack
that would remove the PTLC from the client's commitment: the client's balance in the
new channel stays 0 and, at the PTLC's expiry, the LSP's timeout path would take the
moved balance back. Each client goes on chain by itself when its exit path + margin
is all that is left before the expiry (`ladder.enforce.claims_due`): it publishes its
path of factory 1, its commitment and the PTLC-success tx (the LSP's adaptor signature
completed with the scalar), all confirmed before the expiry, then sweeps the second
stage output after its CSV to its payout script: its moved balance less the fees its
exit status showed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import Cluster, wait_for
from .test_distribution import _payout_script
from .test_malicious_lsp_move import _channel, _snap
from .test_payments import _pay

ACTIVE, DYING = 70, 40
AMOUNTS = [100_000, 120_000]
PAY_MSAT = 7_000_123


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, len(AMOUNTS))
    try:
        yield c
    finally:
        c.stop()


def _exit_of(cluster: Cluster, i: int, fid: str) -> dict[str, Any] | None:
    exits = _snap(cluster, cluster.client_dir(i))["exits"]
    return next((e for e in exits if e["factory_id"] == fid), None)


def _step(e: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(s for s in e["steps"] if str(s["kind"]).startswith(prefix))


@pytest.mark.slow
def test_withheld_move_settle_the_client_claims_its_ptlc_on_chain_before_expiry(
    cluster: Cluster,
) -> None:
    start = time.monotonic()
    cluster.start_lsp(
        "--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING),
        "--dev-tools", "--dev-misbehave", "withhold-settle",
    )  # fmt: skip
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for("channels open", lambda: cluster.channels_open(cluster.lsp_dir, 2), 120)
    f0 = cluster.factory(cluster.lsp_dir)
    assert f0 is not None
    fid0 = str(f0["factory_id"])
    balances = {i: int(c["local_msat"]) for i in (0, 1) if (c := _channel(cluster, i, fid0))}
    assert balances == {i: a * 1000 for i, a in enumerate(AMOUNTS)}
    cluster.chain.generate_to_address(ACTIVE, cluster.mine_to)  # factory 0 is DYING
    for i in (0, 1):  # each fulfils its move PTLC: the key is out
        wait_for(
            f"client {i} fulfils its move PTLC",
            lambda i=i: (
                [m["stage"] for m in _snap(cluster, cluster.client_dir(i))["moves"]]
                == ["fulfilled"]
            ),
            120,
        )
    moves = {i: _snap(cluster, cluster.client_dir(i))["moves"][0] for i in (0, 1)}
    fid1 = str(moves[0]["new_factory"])
    assert str(moves[1]["new_factory"]) == fid1
    time.sleep(3)  # the LSP has the keys, and withholds the settle
    lsp_f0 = next(f for f in _snap(cluster, cluster.lsp_dir)["ladder"]["factories"]
                  if f["factory_id"] == fid0)  # fmt: skip
    assert lsp_f0["keys_handed_over"] == 2
    for i in (0, 1):
        chan = _channel(cluster, i, fid1)
        assert chan is not None and int(chan["local_msat"]) == 0 and chan["htlcs"] == 1
        assert _exit_of(cluster, i, fid1) is None  # the claim is not due yet
    # mine block by block: each client starts factory 1's exit on its own before the expiry
    expiry = {i: int(moves[i]["cltv_expiry"]) for i in (0, 1)}
    deadline = time.monotonic() + 180
    while any(_exit_of(cluster, i, fid1) is None for i in (0, 1)):
        assert time.monotonic() < deadline, "no exit started"
        assert cluster.chain.get_block_count() < min(expiry.values()) - 1, "expiry came"
        cluster.chain.generate_to_address(1, cluster.mine_to)
        time.sleep(1.5)
    # drive both exits to the end (the PTLC-success txs, then their sweeps after the CSV)
    deadline = time.monotonic() + 400
    while True:
        entries = [_exit_of(cluster, i, fid1) for i in (0, 1)]
        if all(e is not None and e["state"] == "done" for e in entries):
            break
        assert time.monotonic() < deadline, f"exits not done: {entries}"
        tip = cluster.chain.get_block_count()
        current = [
            next(s for s in e["steps"] if s["state"] != "confirmed")
            for e in entries
            if e is not None and e["state"] != "done"
        ]
        waits = [s["wait_height"] for s in current]
        if all(w is not None and w > tip for w in waits):  # relative locks: jump to the first
            cluster.chain.generate_to_address(min(waits) - tip, cluster.mine_to)
        else:  # in the mempool, or its parent is
            cluster.chain.generate_to_address(1, cluster.mine_to)
        time.sleep(0.7)
    for i in (0, 1):
        entry = _exit_of(cluster, i, fid1)
        assert entry is not None
        success, sweep_step = _step(entry, "htlc-success:"), _step(entry, "htlc-sweep:")
        # the claim is in a block before the LSP's timeout path opened
        assert int(success["confirmed_height"]) < expiry[i]
        assert not [s for s in entry["steps"] if s["kind"] == "sweep"]  # no to_local at 0
        sweep = cluster.chain.get_raw_transaction(sweep_step["txid"])
        (out,) = sweep.outputs
        assert out.script_pubkey == _payout_script(cluster, i)
        fees = int(success["fee_sat"]) + int(sweep_step["fee_sat"])
        assert out.value == balances[i] // 1000 - fees
        assert cluster.chain.get_raw_transaction_verbose(sweep.txid_hex).confirmations >= 1
    print(f"withhold-settle (move): both claims on chain in {time.monotonic() - start:.1f} s")


def _drive_exit(cluster: Cluster, i: int, fid: str) -> dict[str, Any]:
    """Mine whenever client `i`'s exit waits for a block (a step in the mempool, or a
    relative lock) until it is done."""
    deadline = time.monotonic() + 400
    while True:
        e = _exit_of(cluster, i, fid)
        assert e is not None
        if e["state"] == "done":
            return e
        assert time.monotonic() < deadline, f"exit not done: {e}"
        tip = cluster.chain.get_block_count()
        s = next(s for s in e["steps"] if s["state"] != "confirmed")
        w = s["wait_height"]
        cluster.chain.generate_to_address(w - tip if w is not None and w > tip else 1,
                                          cluster.mine_to)  # fmt: skip
        time.sleep(0.7)


@pytest.mark.slow
def test_withheld_payee_settle_the_payee_claims_its_htlc_on_chain_before_expiry(
    cluster: Cluster,
) -> None:
    start = time.monotonic()
    cluster.start_lsp("--dev-tools", "--dev-misbehave", "withhold-settle")
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for("channels open", lambda: cluster.channels_open(cluster.lsp_dir, 2), 120)
    for i in (0, 1):
        wait_for(f"client {i} open", lambda i=i: cluster.channels_open(cluster.client_dir(i), 1))
    fid = str(_snap(cluster, cluster.client_dir(1))["channels"][0]["factory_id"])
    before = _channel(cluster, 1, fid)
    assert before is not None
    paid = _pay(cluster, 0, 1, PAY_MSAT)  # the payer is settled: the LSP has the preimage
    fwd = next(r for r in _snap(cluster, cluster.lsp_dir)["forwards"]
               if r["payment_hash"] == paid["payment_hash"])  # fmt: skip
    assert fwd["state"] == "fulfilled"
    time.sleep(3)  # the payee's fulfil is never settled: the HTLC stays in its commitment
    chan = _channel(cluster, 1, fid)
    assert chan is not None and chan["htlcs"] == 1
    assert int(chan["local_msat"]) == int(before["local_msat"])
    expiry = int(fwd["cltv_expiry"]) - int(_snap(cluster, cluster.lsp_dir)["htlc_cltv_delta"])
    cluster.mine_until(expiry - 50)  # the client's exit path + margin is far less than 50
    time.sleep(2)
    assert _exit_of(cluster, 1, fid) is None  # not due yet
    deadline = time.monotonic() + 180
    while _exit_of(cluster, 1, fid) is None:
        assert time.monotonic() < deadline, "no exit started"
        assert cluster.chain.get_block_count() < expiry - 1, "the expiry came"
        cluster.chain.generate_to_address(1, cluster.mine_to)
        time.sleep(1.5)
    entry = _drive_exit(cluster, 1, fid)
    success, sweep_step = _step(entry, "htlc-success:"), _step(entry, "htlc-sweep:")
    assert int(success["confirmed_height"]) < expiry  # before the LSP's timeout path
    sweep = cluster.chain.get_raw_transaction(sweep_step["txid"])
    (out,) = sweep.outputs
    assert out.script_pubkey == _payout_script(cluster, 1)
    fees = int(success["fee_sat"]) + int(sweep_step["fee_sat"])
    assert out.value == PAY_MSAT // 1000 - fees
    # and its balance beside the HTLC comes out too, less the fee shown
    to_local = _step(entry, "sweep")
    tx = cluster.chain.get_raw_transaction(to_local["txid"])
    assert tx.outputs[0].value == int(before["local_msat"]) // 1000 - int(to_local["fee_sat"])
    print(f"withhold-settle (payee): the HTLC claimed on chain in {time.monotonic() - start:.1f} s")
