"""A malicious LSP at the move (issue 14, attacks 3 and 4) against unmodified clients.

- `skip-move-ptlc`: the LSP rotates its clients into factory 1 but never offers the move
  PTLC, then waits for factory 0's CLTV to sweep it. The clients keep factory 0 armed (no
  key was handed over) and, its deadline near and their balances off the distribution
  payouts (a payment moved them), exit it on their own: each ends on chain with its
  factory-0 balance less the sweep fee.
- `short-ptlc-expiry`: the PTLC comes with an expiry ~20 blocks away, far too near to
  exit factory 1 and claim it. The clients fail it without revealing their key (the LSP
  recovers none) and keep their factory-0 balance, its distribution tx still armed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.node.exit import SWEEP_FEERATE

from .support import Cluster, wait_for
from .test_distribution import _payout_script
from .test_payments import _pay

ACTIVE, DYING = 70, 40
AMOUNTS = [100_000, 120_000]
PAID_MSAT = 7_000_123
"""Client 0 pays client 1 before the rotation: neither balance is its distribution payout."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, len(AMOUNTS))
    try:
        yield c
    finally:
        c.stop()


def _snap(cluster: Cluster, datadir: Path) -> dict[str, Any]:
    snap = cluster.status(datadir)
    assert snap
    return dict(snap)


def _channel(cluster: Cluster, i: int, fid: str) -> dict[str, Any] | None:
    chans = _snap(cluster, cluster.client_dir(i))["channels"]
    return next((c for c in chans if c["factory_id"] == fid), None)


def _rotate(cluster: Cluster, switch: str) -> tuple[str, str, dict[int, int]]:
    """Factory 0 with a payment in it, then the LSP's rotation into factory 1: (fid0, fid1,
    each client's factory-0 balance in msat)."""
    cluster.start_lsp(
        "--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING),
        "--dev-tools", "--dev-misbehave", switch,
    )  # fmt: skip
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for("channels open", lambda: cluster.channels_open(cluster.lsp_dir, 2), 120)
    f0 = cluster.factory(cluster.lsp_dir)
    assert f0 is not None
    fid0 = str(f0["factory_id"])
    _pay(cluster, 0, 1, PAID_MSAT)
    expected = {0: AMOUNTS[0] * 1000 - PAID_MSAT, 1: AMOUNTS[1] * 1000 + PAID_MSAT}

    def settled() -> bool:
        chans = [_channel(cluster, i, fid0) for i in (0, 1)]
        return (
            all(c is not None and c["htlcs"] == 0 for c in chans)
            and {i: int(c["local_msat"]) for i, c in enumerate(chans) if c is not None} == expected
        )

    wait_for("payment settles", settled, 60)
    cluster.chain.generate_to_address(ACTIVE, cluster.mine_to)  # factory 0 is DYING
    for i in (0, 1):
        wait_for(
            f"client {i} joined factory 1",
            lambda i=i: (
                (cluster.factory(cluster.client_dir(i)) or {}).get("factory_id") not in (None, fid0)
                and (cluster.factory(cluster.client_dir(i)) or {}).get("state") == "funded"
            ),
            120,
        )
    f1 = cluster.factory(cluster.client_dir(0))
    assert f1 is not None
    return fid0, str(f1["factory_id"]), expected


def _exit_of(cluster: Cluster, i: int, fid: str) -> dict[str, Any] | None:
    exits = _snap(cluster, cluster.client_dir(i))["exits"]
    return next((e for e in exits if e["factory_id"] == fid), None)


def _lsp_factory(cluster: Cluster, fid: str) -> dict[str, Any]:
    return next(f for f in _snap(cluster, cluster.lsp_dir)["ladder"]["factories"]
                if f["factory_id"] == fid)  # fmt: skip


@pytest.mark.slow
def test_skipped_move_ptlc_the_clients_exit_the_old_factory_with_their_balance(
    cluster: Cluster,
) -> None:
    start = time.monotonic()
    fid0, _, balances = _rotate(cluster, "skip-move-ptlc")
    time.sleep(3)  # several ladder ticks: no PTLC comes
    for i in (0, 1):
        (move,) = _snap(cluster, cluster.client_dir(i))["moves"]
        assert move["stage"] == "awaiting"
        f0 = next(f for f in _snap(cluster, cluster.client_dir(i))["factories"]
                  if f["factory_id"] == fid0)  # fmt: skip
        # still armed: no key was handed over
        assert f0["state"] == "funded" and f0["distribution"]["state"] == "held"
        assert _exit_of(cluster, i, fid0) is None  # its deadline is not here yet
    cltv = int(_lsp_factory(cluster, fid0)["expires_at"])
    # mine block by block: each client starts factory 0's exit on its own before its CLTV
    deadline = time.monotonic() + 120
    while any(_exit_of(cluster, i, fid0) is None for i in (0, 1)):
        assert time.monotonic() < deadline, "no exit started"
        assert cluster.chain.get_block_count() < cltv - 1, "the clients let the CLTV come"
        cluster.chain.generate_to_address(1, cluster.mine_to)
        time.sleep(1.5)
    # drive both exits to the end; the LSP's timeout sweep at the CLTV finds nothing
    deadline = time.monotonic() + 300
    while True:
        entries = [_exit_of(cluster, i, fid0) for i in (0, 1)]
        assert all(e is not None for e in entries)
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
        entry = _exit_of(cluster, i, fid0)
        assert entry is not None
        sweep = cluster.chain.get_raw_transaction(entry["steps"][-1]["txid"])
        (out,) = sweep.outputs
        assert out.script_pubkey == _payout_script(cluster, i)
        # the LSP opened the channel and pays its fees: to_local is our whole balance
        assert out.value == balances[i] // 1000 - SWEEP_FEERATE.fee_for_vsize(sweep.vsize)
        assert cluster.chain.get_raw_transaction_verbose(sweep.txid_hex).confirmations >= 1
    print(f"skip-move-ptlc: both clients out of factory 0 in {time.monotonic() - start:.1f} s")


@pytest.mark.slow
def test_a_move_ptlc_expiring_too_soon_is_failed_and_no_key_is_revealed(
    cluster: Cluster,
) -> None:
    fid0, _, balances = _rotate(cluster, "short-ptlc-expiry")
    for i in (0, 1):
        wait_for(
            f"client {i} fails the PTLC",
            lambda i=i: (
                [m["stage"] for m in _snap(cluster, cluster.client_dir(i))["moves"]] == ["failed"]
            ),
            60,
        )
        (move,) = _snap(cluster, cluster.client_dir(i))["moves"]
        assert move["reason"].startswith("ptlc-expiry-too-soon:"), move
    time.sleep(2)  # a few LSP ticks
    assert _lsp_factory(cluster, fid0)["keys_handed_over"] == 0
    for i in (0, 1):
        chan = _channel(cluster, i, fid0)
        assert chan is not None and int(chan["local_msat"]) == balances[i]
        snap = _snap(cluster, cluster.client_dir(i))
        f0 = next(f for f in snap["factories"] if f["factory_id"] == fid0)
        # still ours: armed, or in a close with the stayers (the failed movers) not yet mined
        assert f0["state"] in ("funded", "closing") and f0["distribution"]["state"] == "held"
        f1 = next(f for f in snap["factories"] if f["factory_id"] != fid0)
        assert int(_channel(cluster, i, f1["factory_id"])["local_msat"]) == 0  # type: ignore[index]
    # it ends on chain: the failed movers are closed out of factory 0 as stayers, each paid
    # its exact balance there
    closes: set[str] = set()
    for i in (0, 1):

        def closed(i: int = i) -> str | None:
            cluster.chain.generate_to_address(1, cluster.mine_to)
            snap = _snap(cluster, cluster.client_dir(i))
            f0 = next(f for f in snap["factories"] if f["factory_id"] == fid0)
            return str(f0["close_txid"]) if f0["state"] == "closed" else None

        closes.add(wait_for(f"client {i} sees factory 0's close confirmed", closed, 90))
    (close_txid,) = closes
    tx = cluster.chain.get_raw_transaction_verbose(close_txid).tx
    for i in (0, 1):
        paid = [o.value for o in tx.outputs if o.script_pubkey == _payout_script(cluster, i)]
        assert paid == [balances[i] // 1000]
