"""The ladder with real processes: factory 0 dies, its clients move to factory 1, the LSP
closes factory 0 alone with the keys they handed over; money exact on chain.

The LSP runs with a short life (`--active-blocks`, `--dying-blocks`) and the
test mines the blocks; everything else (invite, new ceremony, channel opens at
the old balances, turnover, lone close) is the daemons' own doing.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.node.common import CRASH_ENV, open_db

from .support import Cluster, run_node, wait_for
from .test_payments import _pay, _pubkey

ACTIVE, DYING = 70, 64
"""Long enough that a payment's HTLC (exit budget + the LSP's forwarding delta) expires
before the distribution tx's locktime, which is the exit window (the tree's worst-case exit
+ max(DYING // 3, the clients' confirmation margin)) before the CLTV timeout (the LSP refuses
HTLCs it could not enforce within the factory's life). DYING leaves the move PTLC's expiry
(6 blocks before the CLTV) room for factory 1's whole exit + 6 + min_cltv_delta, which the
clients require (`ladder.move.claim_lead`)."""
AMOUNTS = [100_000, 120_000]
CLOSE_FEERATE = Feerate(2000)  # the LSP's default close feerate (sat/kvB)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, len(AMOUNTS))
    try:
        yield c
    finally:
        c.stop()


def _ladder(cluster: Cluster) -> dict[str, Any]:
    snap = cluster.status(cluster.lsp_dir)
    return dict(snap["ladder"]) if snap else {}


def _factories(cluster: Cluster) -> list[dict[str, Any]]:
    return list(_ladder(cluster).get("factories", []))


def _channels_of(cluster: Cluster, datadir: Path, fid: str) -> list[dict[str, Any]]:
    snap = cluster.status(datadir) or {"channels": []}
    return [c for c in snap["channels"] if c["factory_id"] == fid]


def _client_msat(cluster: Cluster, fid: str) -> dict[int, int]:
    """LSP view: client position -> client balance (msat) in factory `fid`'s channels."""
    return {
        int(c["position"]): int(c["remote_msat"])
        for c in _channels_of(cluster, cluster.lsp_dir, fid)
        if c.get("status") == "open"
    }


def _start(cluster: Cluster, *client_extra: tuple[str, ...]) -> str:
    cluster.start_lsp("--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING))
    for i, amount in enumerate(AMOUNTS):
        extra = client_extra[i] if i < len(client_extra) else ()
        cluster.start_client(i, amount, *extra)
    wait_for("factory 0 channels", lambda: len(_client_msat(cluster, _fid0(cluster))) == 2, 120)
    return _fid0(cluster)


def _fid0(cluster: Cluster) -> str:
    f = cluster.factory(cluster.lsp_dir)
    return str(f["factory_id"]) if f else ""


def _mine(cluster: Cluster, n: int) -> None:
    cluster.chain.generate_to_address(n, cluster.mine_to)


@pytest.mark.slow
def test_dying_factory_rotates_and_the_lsp_closes_it_alone(cluster: Cluster) -> None:
    fid0 = _start(cluster)
    _pay(cluster, 0, 1, 7_000_123)
    wait_for("payment settles", lambda: sum(_client_msat(cluster, fid0).values()) == 220_000_000)
    before = _client_msat(cluster, fid0)
    assert sorted(before.values()) != sorted(a * 1000 for a in AMOUNTS)
    keys = {p: _pubkey(cluster, i) for i, p in enumerate(range(2))}
    start = time.monotonic()
    _mine(cluster, ACTIVE)  # factory 0 is now DYING
    closed = wait_for(
        "factory 0 closed alone",
        lambda: next(
            (f for f in _factories(cluster) if f["factory_id"] == fid0 and f["state"] == "closed"),
            None,
        ),
        120,
    )
    wall = time.monotonic() - start
    assert closed["keys_handed_over"] == 2
    # each key came with the move itself: a PTLC locked to it, fulfilled by the client
    events = " ".join(_ladder(cluster)["events"])
    assert events.count("locked to its old factory key") == 2, events
    fid1 = next(f["factory_id"] for f in _factories(cluster) if f["factory_id"] != fid0)
    lsp_snap = cluster.status(cluster.lsp_dir)
    assert lsp_snap is not None
    f0 = next(f for f in lsp_snap["factories"] if f["factory_id"] == fid0)
    f1 = next(f for f in lsp_snap["factories"] if f["factory_id"] == fid1)
    # each client's new channel holds exactly its old balance (the move PTLC), by node key
    pos0 = {c["pubkey"]: int(c["position"]) for c in f0["clients"]}
    pos1 = {c["pubkey"]: int(c["position"]) for c in f1["clients"]}
    after = _client_msat(cluster, fid1)
    for key in keys.values():
        assert after[pos1[key]] == before[pos0[key]]
    # the lone close pays everything but an exact fee to the LSP, and confirms
    close_txid = f0["close_txid"]
    _mine(cluster, 1)
    assert cluster.chain.get_raw_transaction_verbose(close_txid).confirmations == 1
    tx = cluster.chain.get_raw_transaction(close_txid)
    fee = int(f0["funding_amount"]) - tx.total_out
    assert len(tx.outputs) == 1 and fee == CLOSE_FEERATE.fee_for_vsize(tx.vsize)
    # clients now live in factory 1: a payment there, then its close on balances
    for i in range(2):
        wait_for(
            f"client {i} on factory 1",
            lambda i=i: len(_channels_of(cluster, cluster.client_dir(i), fid1)) == 1,
        )
    _pay(cluster, 1, 0, 2_000_000)
    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    _mine(cluster, 1)
    txid1 = close.stdout.strip().splitlines()[-1]
    assert cluster.chain.get_raw_transaction_verbose(txid1).confirmations == 1
    table = run_node("status", "--datadir", str(cluster.lsp_dir))
    assert table.returncode == 0 and "keys handed over" in table.stdout, table.stderr
    rot = _ladder(cluster)["rotation"]
    print(
        f"rotation of 2 clients: {wall:.1f} s from dying block to lone close; "
        f"daemon: {rot}; lone close {tx.vsize} vB, fee {fee} sat"
    )


@pytest.mark.slow
def test_a_client_refusing_turnover_stays_and_is_paid_out_of_the_old_factory(
    cluster: Cluster,
) -> None:
    fid0 = _start(cluster, (), ("--refuse-turnover",))
    refuser_msat = next(c["local_msat"] for c in _channels_of(cluster, cluster.client_dir(1), fid0))
    _mine(cluster, ACTIVE)
    closed = wait_for(
        "factory 0 closed with the client that stayed",
        lambda: next(
            (f for f in _factories(cluster) if f["factory_id"] == fid0 and f["state"] == "closed"),
            None,
        ),
        120,
    )
    assert closed["keys_handed_over"] == 1
    moved = next(f for f in _factories(cluster) if f["factory_id"] != fid0)
    assert moved["clients"] == 1
    events = " ".join(_ladder(cluster)["events"])
    assert "declined to move" in events and "client(s) that stayed" in events
    refuser = cluster.factory(cluster.client_dir(1))
    assert refuser is not None and refuser["factory_id"] == fid0
    snap = cluster.status(cluster.lsp_dir)
    assert snap is not None
    close_txid = next(f["close_txid"] for f in snap["factories"] if f["factory_id"] == fid0)
    _mine(cluster, 1)
    tx = cluster.chain.get_raw_transaction(close_txid)
    payout = bytes.fromhex(
        next(c for c in next(f for f in snap["factories"] if f["factory_id"] == fid0)["clients"]
             if c["pubkey"] == _pubkey(cluster, 1))["payout_script"]
    )  # fmt: skip
    assert [o.value for o in tx.outputs if o.script_pubkey == payout] == [refuser_msat // 1000]
    wait_for(
        "the refuser sees the close",
        lambda: (cluster.factory(cluster.client_dir(1)) or {}).get("state") == "closed",
    )


@pytest.mark.slow
def test_lsp_killed_mid_rotation_rotates_after_restart(cluster: Cluster) -> None:
    """kill -9 while the invites are out (one client frozen, so the LSP is waiting for it)."""
    fid0 = _start(cluster)
    frozen = cluster.clients[1].proc
    frozen.send_signal(signal.SIGSTOP)
    try:
        _mine(cluster, ACTIVE)
        wait_for("rotation invites out", lambda: "inviting" in _lsp_log(cluster), 60)
        assert cluster.lsp is not None
        cluster.lsp.kill(signal.SIGKILL)
    finally:
        frozen.send_signal(signal.SIGCONT)
    assert len(_factories_in_db(cluster)) == 1  # nothing of factory 1 was signed
    cluster.start_lsp("--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING))
    closed = wait_for(
        "factory 0 closed alone after restart",
        lambda: next(
            (f for f in _factories(cluster) if f["factory_id"] == fid0 and f["state"] == "closed"),
            None,
        ),
        120,
    )
    assert closed["keys_handed_over"] == 2


@pytest.mark.slow
def test_a_client_gone_for_good_leaves_the_lsp_the_timeout_path(cluster: Cluster) -> None:
    fid0 = _start(cluster)
    cluster.clients[1].kill(signal.SIGTERM)
    _mine(cluster, ACTIVE)
    new = wait_for(
        "factory 1 without the offline client",
        lambda: next((f for f in _factories(cluster) if f["factory_id"] != fid0), None),
        120,
    )
    assert new["clients"] == 1
    assert "stays on the old factory: offline" in " ".join(_ladder(cluster)["events"])
    wait_for(
        "the mover's key",
        lambda: (
            next(f for f in _factories(cluster) if f["factory_id"] == fid0)["keys_handed_over"] == 1
        ),
        60,
    )
    f0 = next(f for f in _factories(cluster) if f["factory_id"] == fid0)
    assert f0["state"] == "funded"  # one key missing, nobody to co-sign: no close yet
    _mine(cluster, DYING)  # the CLTV timeout: the LSP sweeps the funding output
    wait_for(
        "timeout recovery",
        lambda: (
            next(f for f in _factories(cluster) if f["factory_id"] == fid0)["state"] == "closed"
        ),
        60,
    )
    assert "CLTV timeout path" in " ".join(_ladder(cluster)["events"])


def _lsp_log(cluster: Cluster) -> str:
    return (cluster.lsp_dir / "log.txt").read_text(errors="replace")


def _factories_in_db(cluster: Cluster) -> list[str]:
    """Read the (stopped) LSP's database directly: factories not aborted."""
    with open_db(cluster.lsp_dir) as db:
        return [
            r["factory_id"]
            for r in db.execute("SELECT factory_id FROM factories WHERE state != 'aborted'")
        ]


@pytest.mark.slow
def test_a_client_killed_before_its_move_fulfil_finishes_the_move_after_restart(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 (dev crash point) after the client recorded its handover, before the fulfil
    that carries its key went out: restarted, it fulfils, and factory 0 closes alone."""
    cluster.start_lsp("--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING))
    monkeypatch.setenv(CRASH_ENV, "client-before-move-fulfil")
    try:
        cluster.start_client(0, AMOUNTS[0])
    finally:
        monkeypatch.delenv(CRASH_ENV, raising=False)
    cluster.start_client(1, AMOUNTS[1])
    wait_for("factory 0 channels", lambda: len(_client_msat(cluster, _fid0(cluster))) == 2, 120)
    fid0 = _fid0(cluster)
    before = _client_msat(cluster, fid0)
    _mine(cluster, ACTIVE)
    wait_for("client 0 dies at its move fulfil", lambda: cluster.clients[0].proc.poll() == 137, 120)
    cluster.start_client(0, AMOUNTS[0])
    closed = wait_for(
        "factory 0 closed alone after the restart",
        lambda: next(
            (f for f in _factories(cluster) if f["factory_id"] == fid0 and f["state"] == "closed"),
            None,
        ),
        120,
    )
    assert closed["keys_handed_over"] == 2
    fid1 = next(f["factory_id"] for f in _factories(cluster) if f["factory_id"] != fid0)
    assert sorted(_client_msat(cluster, fid1).values()) == sorted(before.values())
