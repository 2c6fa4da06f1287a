"""The distribution tx with real processes: signed in the factory ceremony, broadcast at its
locktime by the clients when the LSP is gone and by the LSP when the clients are gone, each
client paid its opening balance to the sat; HTLCs the factory could not enforce are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.script import P2A_SCRIPT
from superscalar.bitcoin.tx import Transaction
from superscalar.chain.bitcoind import ChainResponseError
from superscalar.chain.rpc import RpcError
from superscalar.ladder.enforce import confirmation_margin, htlc_expiry_limit
from superscalar.node.common import CRASH_ENV, open_db

from .support import Cluster, run_node, wait_for
from .test_payments import _lsp_balances, _pay, _pubkey

AMOUNTS = [100_000, 120_000]
ACTIVE, DYING = 20, 12
"""A short life (32 blocks: the regtest client's minimum is 30): the distribution tx is valid
the tree's exit window before the CLTV timeout, i.e. 22 blocks after the factory was created,
once it is DYING."""
EXIT_WINDOW = 6 + 4
"""Two clients share one leaf: one DW layer of 3 × 2 blocks (regtest DW step), + the margin
max(DYING // 3, the regtest client's confirmation margin of 4)."""
ANCHOR = 240  # the LSP's default anchor value


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, len(AMOUNTS))
    try:
        yield c
    finally:
        c.stop()


def _start(cluster: Cluster, active: int = ACTIVE, dying: int = DYING) -> dict[str, Any]:
    """LSP + clients with open channels; the LSP's view of the funded factory."""
    cluster.start_lsp("--active-blocks", str(active), "--dying-blocks", str(dying))
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for("channels open", lambda: cluster.channels_open(cluster.lsp_dir, len(AMOUNTS)), 120)
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None and f["state"] == "funded"
    return f


def _distribution(cluster: Cluster, datadir: Path) -> dict[str, Any]:
    f = cluster.factory(datadir)
    assert f is not None and f["distribution"] is not None
    return dict(f["distribution"])


def _payout_script(cluster: Cluster, i: int) -> bytes:
    db = open_db(cluster.client_dir(i))
    try:
        row = db.execute("SELECT value FROM node_kv WHERE key='payout_script'").fetchone()
        return bytes.fromhex(row["value"])
    finally:
        db.close()


def _check_payouts(cluster: Cluster, tx: Transaction, funding_amount: int) -> None:
    """Each client its opening amount to its own script, the anchor, the LSP the rest."""
    values = {o.script_pubkey: o.value for o in tx.outputs}
    for i, amount in enumerate(AMOUNTS):
        assert values[_payout_script(cluster, i)] == amount
    assert tx.outputs[-1].script_pubkey == P2A_SCRIPT and tx.outputs[-1].value == ANCHOR
    assert len(tx.outputs) == len(AMOUNTS) + 2
    lsp_out = tx.outputs[len(AMOUNTS)].value
    assert lsp_out == funding_amount - sum(AMOUNTS) - ANCHOR
    assert tx.total_out == funding_amount  # zero fee: the CPFP child pays


@pytest.mark.slow
def test_lsp_gone_clients_broadcast_the_distribution_tx_and_are_paid_exactly(
    cluster: Cluster,
) -> None:
    f = _start(cluster)
    lsp_dist = _distribution(cluster, cluster.lsp_dir)
    locktime = int(lsp_dist["locktime"])
    assert locktime == int(f["cltv_timeout"]) - EXIT_WINDOW
    for i, amount in enumerate(AMOUNTS):  # every client holds the signed tx, its payout known
        d = _distribution(cluster, cluster.client_dir(i))
        assert (d["state"], d["txid"], d["payout_sat"]) == ("held", lsp_dist["txid"], amount)
    assert cluster.lsp is not None
    cluster.lsp.kill()  # the LSP vanishes for good
    funding = str(f["funding_txid"])
    vout = next(
        i
        for i, o in enumerate(cluster.chain.get_raw_transaction(funding).outputs)
        if o.value == int(f["funding_amount"])
    )
    cluster.mine_until(locktime - 1)  # one block short: not final in the next block
    time.sleep(3)
    assert cluster.chain.get_tx_out(funding, vout) is not None
    assert all(_distribution(cluster, cluster.client_dir(i))["state"] == "held" for i in (0, 1))
    cluster.mine_until(locktime)  # nLockTime < next height: final
    for i in range(len(AMOUNTS)):
        wait_for(
            f"client {i} broadcast",
            lambda i=i: _distribution(cluster, cluster.client_dir(i))["state"] == "broadcast",
            60,
        )
    cluster.mine_until(locktime + 1)
    txid = str(lsp_dist["txid"])
    assert cluster.chain.get_raw_transaction_verbose(txid).confirmations == 1
    _check_payouts(cluster, cluster.chain.get_raw_transaction(txid), int(f["funding_amount"]))
    assert all(cluster.state_of(cluster.client_dir(i)) == "closed" for i in (0, 1))


@pytest.mark.slow
def test_clients_gone_the_lsp_pays_their_default_by_the_distribution_tx(cluster: Cluster) -> None:
    f = _start(cluster)
    dist = _distribution(cluster, cluster.lsp_dir)
    locktime = int(dist["locktime"])
    for p in cluster.clients.values():
        p.kill()  # both clients vanish (never return)
    cluster.mine_until(locktime)
    wait_for(
        "LSP broadcast",
        lambda: _distribution(cluster, cluster.lsp_dir)["state"] == "broadcast",
        60,
    )
    cluster.mine_until(int(f["cltv_timeout"]) + 2)  # past the timeout path: no sweep instead
    txid = str(dist["txid"])
    confirmations = cluster.chain.get_block_count() - locktime  # mined in block locktime + 1
    assert cluster.chain.get_raw_transaction_verbose(txid).confirmations == confirmations
    _check_payouts(cluster, cluster.chain.get_raw_transaction(txid), int(f["funding_amount"]))
    time.sleep(2)  # a few ladder ticks past the CLTV timeout
    after = cluster.factory(cluster.lsp_dir)
    assert after is not None and (after["state"], after["close_txid"]) == ("closed", txid)


@pytest.mark.slow
def test_htlc_expiring_past_the_distribution_locktime_is_refused_and_nothing_moves(
    cluster: Cluster,
) -> None:
    # a life long enough for a payment's exit budget and forwarding delta to fit
    _start(cluster, active=100, dying=30)
    locktime = int(_distribution(cluster, cluster.lsp_dir)["locktime"])
    # the LSP must be able to START enforcing it on chain before the locktime: the payer's
    # exit (one DW layer of 3 x 2 blocks) and its claim's margin (2 path txs)
    too_late = htlc_expiry_limit(locktime, 6, confirmation_margin(2))
    before = _lsp_balances(cluster)
    inv = run_node("invoice", "--datadir", str(cluster.client_dir(1)), "--amount-msat", "5000000")
    assert inv.returncode == 0, inv.stderr
    late = run_node(
        "pay",
        "--datadir",
        str(cluster.client_dir(0)),
        "--to-pubkey",
        _pubkey(cluster, 1),
        "--payment-hash",
        json.loads(inv.stdout)["payment_hash"],
        "--amount-msat",
        "5000000",
        "--cltv-expiry",
        str(too_late),
    )
    assert late.returncode != 0
    assert "htlc-expiry-too-late" in late.stderr, late.stderr
    wait_for("the failed HTLC is gone", lambda: _lsp_balances(cluster) == before)
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None and all(c["htlcs"] == 0 for c in snap["channels"])
    # the same payment with an expiry the factory can enforce goes through
    _pay(cluster, 0, 1, 5_000_000)


@pytest.mark.slow
def test_no_factory_is_funded_before_every_client_stored_its_distribution_tx(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client 1 dies on READY, before storing the signatures: the LSP never gets its ack,
    aborts the attempt and never signs its funding tx; a fresh attempt then funds."""
    cluster.start_lsp()
    cluster.start_client(0, AMOUNTS[0])
    monkeypatch.setenv(CRASH_ENV, "client-before-ready")
    cluster.start_client(1, AMOUNTS[1])
    monkeypatch.delenv(CRASH_ENV)

    def aborted() -> dict[str, Any] | None:
        snap = cluster.status(cluster.lsp_dir) or {"factories": []}
        return next((f for f in snap["factories"] if f["state"] == "aborted"), None)

    dead = wait_for("the attempt aborted", aborted, 90)
    with pytest.raises((RpcError, ChainResponseError)):
        cluster.chain.get_raw_transaction(str(dead["funding_txid"]))
    assert dead["distribution"]["state"] == "held"  # the LSP held it; client 1 did not
    cluster.clients[1].kill()
    cluster.start_client(1, AMOUNTS[1])
    wait_for("funded", lambda: cluster.state_of(cluster.lsp_dir) == "funded", 90)
    for i in range(2):
        wait_for(
            f"client {i} funded", lambda i=i: cluster.state_of(cluster.client_dir(i)) == "funded"
        )
        assert _distribution(cluster, cluster.client_dir(i))["state"] == "held"


@pytest.mark.slow
def test_a_client_offline_during_rotation_returns_while_dying_and_is_closed_out_exactly(
    cluster: Cluster,
) -> None:
    """Client 1 misses the rotation; client 0 moves and hands over its key. Back while
    factory 0 is DYING, client 1 reestablishes its old channel and the LSP closes factory 0
    with it: paid its exact balance on chain (nothing left for a timeout sweep)."""
    active, dying = 70, 40  # long enough for a payment's HTLC before the locktime
    f = _start(cluster, active, dying)
    fid0 = str(f["factory_id"])
    _pay(cluster, 0, 1, 7_000_123)
    wait_for(
        "payment settled",
        lambda: (
            _lsp_balances(cluster)
            and sorted(b[1] for b in _lsp_balances(cluster).values())
            == [100_000_000 - 7_000_123, 120_000_000 + 7_000_123]
        ),
    )
    cluster.clients[1].kill()  # offline during the rotation
    cluster.mine_until(cluster.chain.get_block_count() + active)

    def ladder_factory(fid: str) -> dict[str, Any] | None:
        snap = cluster.status(cluster.lsp_dir) or {"ladder": {}}
        return next(
            (x for x in snap["ladder"].get("factories", []) if x["factory_id"] == fid), None
        )

    wait_for(
        "client 0 moved", lambda: (ladder_factory(fid0) or {}).get("keys_handed_over") == 1, 120
    )
    assert (ladder_factory(fid0) or {})["state"] == "funded"  # client 1 away: no close yet
    cluster.start_client(1, AMOUNTS[1])  # back while factory 0 is DYING
    wait_for("factory 0 closed", lambda: (ladder_factory(fid0) or {}).get("state") == "closed", 120)
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None
    close_txid = next(x["close_txid"] for x in snap["factories"] if x["factory_id"] == fid0)
    cluster.mine_until(cluster.chain.get_block_count() + 1)
    tx = cluster.chain.get_raw_transaction(close_txid)
    paid = [o.value for o in tx.outputs if o.script_pubkey == _payout_script(cluster, 1)]
    assert paid == [(120_000_000 + 7_000_123) // 1000]
    wait_for("client 1 sees the close", lambda: cluster.state_of(cluster.client_dir(1)) == "closed")
