"""Misbehaving clients in the ladder rotation (issue 14, attacks 7–9), with real processes.

Each test runs one client patched to attack (`--dev-tools --dev-misbehave NAME`) among
unmodified clients and the unmodified LSP, and ends on the kernel chain with the LSP and
every honest client holding its balance (status balances and chain amounts, never logs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from superscalar.node.common import open_db
from superscalar.node.distribution import KICKOFF_LEAD

from .support import Cluster, run_node, wait_for
from .support import try_pay as _try_pay
from .test_payments import _pay, _pubkey

ACTIVE, DYING = 70, 40
LONG_DYING = 60
"""For a rotation whose moves go through: the move PTLC (expiring 6 blocks before the CLTV)
must leave each mover room for factory 1's exit + its claim margins (`ladder.move`)."""
"""As in test_rotation: a payment's HTLC fits before the distribution locktime."""
AMOUNTS = [100_000, 120_000]


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


def _ladder_factory(cluster: Cluster, fid: str) -> dict[str, Any]:
    found = [f for f in _ladder(cluster).get("factories", []) if f["factory_id"] == fid]
    return dict(found[0]) if found else {}


def _lsp_factory(cluster: Cluster, fid: str) -> dict[str, Any]:
    snap = cluster.status(cluster.lsp_dir) or {"factories": []}
    return dict(next(f for f in snap["factories"] if f["factory_id"] == fid))


def _client_msat(cluster: Cluster, fid: str) -> dict[int, int]:
    """LSP view: client position -> client balance (msat) in factory `fid`'s open channels."""
    snap = cluster.status(cluster.lsp_dir) or {"channels": []}
    return {
        int(c["position"]): int(c["remote_msat"])
        for c in snap["channels"]
        if c["factory_id"] == fid and c.get("status") == "open"
    }


def _position(cluster: Cluster, fid: str, i: int) -> int:
    key = _pubkey(cluster, i)
    clients = _lsp_factory(cluster, fid)["clients"]
    return int(next(c["position"] for c in clients if c["pubkey"] == key))


def _payout_script(cluster: Cluster, fid: str, i: int) -> bytes:
    key = _pubkey(cluster, i)
    clients = _lsp_factory(cluster, fid)["clients"]
    return bytes.fromhex(next(c["payout_script"] for c in clients if c["pubkey"] == key))


def _by_client(cluster: Cluster, fid: str) -> dict[int, int]:
    """LSP view: client index -> its balance (msat) in factory `fid`."""
    msat = _client_msat(cluster, fid)
    clients = {c["pubkey"]: int(c["position"]) for c in _lsp_factory(cluster, fid)["clients"]}
    out = {}
    for i in range(len(cluster.clients)):
        pos = clients.get(_pubkey(cluster, i))
        if pos in msat:
            out[i] = msat[pos]
    return out


def _start(cluster: Cluster, amounts: list[int], extra: dict[int, tuple[str, ...]]) -> str:
    cluster.start_lsp("--active-blocks", str(ACTIVE), "--dying-blocks", str(DYING))
    for i, amount in enumerate(amounts):
        cluster.start_client(i, amount, *extra.get(i, ()))
    wait_for("factory 0 channels", lambda: cluster.channels_open(cluster.lsp_dir, len(amounts)))
    f0 = cluster.factory(cluster.lsp_dir)
    assert f0 is not None
    return str(f0["factory_id"])


def _misbehave(name: str) -> tuple[str, ...]:
    return ("--dev-tools", "--dev-misbehave", name)


def _confirmed_close(cluster: Cluster, fid: str) -> Any:
    """Factory `fid`'s close tx from the LSP's status, mined and confirmed."""
    txid = _lsp_factory(cluster, fid)["close_txid"]
    cluster.chain.generate_to_address(1, cluster.mine_to)
    assert cluster.chain.get_raw_transaction_verbose(txid).confirmations >= 1
    return cluster.chain.get_raw_transaction(txid)


@pytest.mark.slow
def test_a_client_stalling_the_rotation_is_barred_and_closed_out_at_its_balance(
    cluster: Cluster,
) -> None:
    """Attack 9: client 1 accepts every invite and wrecks every ceremony. It pays client 0
    first, so a payout at opening balances (the distribution tx) would hand it back.
    The LSP bars it after its first failure; client 0 moves; the staller is closed out
    of factory 0 at its current balance, and client 0 is whole in factory 1 and on chain."""
    fid0 = _start(cluster, AMOUNTS, {1: _misbehave("stall-rotation")})
    _pay(cluster, 1, 0, 9_000_000)
    wait_for("payment settles", lambda: _by_client(cluster, fid0).get(0) == 109_000_000)
    before = _by_client(cluster, fid0)
    cluster.chain.generate_to_address(ACTIVE, cluster.mine_to)  # factory 0 is DYING
    closed = wait_for(
        "factory 0 closed with the barred staller",
        lambda: _ladder_factory(cluster, fid0).get("state") == "closed",
        150,
    )
    assert closed
    barred = _ladder(cluster)["barred"]
    assert [(b["factory_id"], b["pubkey"]) for b in barred] == [(fid0, _pubkey(cluster, 1))]
    assert barred[0]["code"] == "ceremony-bad-nonces"
    assert _ladder_factory(cluster, fid0)["keys_handed_over"] == 1
    # the staller: paid its current balance (not its opening one) by factory 0's close
    tx = _confirmed_close(cluster, fid0)
    staller = _payout_script(cluster, fid0, 1)
    assert [o.value for o in tx.outputs if o.script_pubkey == staller] == [before[1] // 1000]
    # the honest mover: its whole balance in factory 1, then on chain by factory 1's close
    fid1 = next(f["factory_id"] for f in _ladder(cluster)["factories"] if f["factory_id"] != fid0)
    wait_for("client 0's move", lambda: _by_client(cluster, fid1).get(0) == before[0])
    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    tx1 = _confirmed_close(cluster, fid1)
    mover = _payout_script(cluster, fid1, 0)
    assert [o.value for o in tx1.outputs if o.script_pubkey == mover] == [before[0] // 1000]


def _exit_steps(cluster: Cluster, i: int) -> list[dict[str, Any]]:
    """Client i's exit steps, straight from its SQLite store (the daemon keeps running)."""
    with open_db(cluster.client_dir(i)) as db:
        return [dict(r) for r in db.execute("SELECT * FROM exit_steps ORDER BY idx")]


@pytest.mark.slow
def test_a_client_exiting_before_it_fulfils_its_move_is_paid_once(cluster: Cluster) -> None:
    """Attack 7: at its move PTLC, client 1 kicks off a unilateral exit of factory 0, then
    fulfils. The LSP keeps its moved balance locked, still moves the honest client 0 (the
    funding is spent but the root kickoff's output is not), and closes factory 0 from the
    kickoff's output with both keys before the exit's next step can confirm: the exit is
    dead, each client holds its balance once, in factory 1, and then on chain."""
    fid0 = _start(cluster, AMOUNTS, {1: _misbehave("exit-then-fulfil")})
    before = _by_client(cluster, fid0)
    cluster.chain.generate_to_address(ACTIVE, cluster.mine_to)  # factory 0 is DYING
    steps = wait_for("client 1's exit began", lambda: _exit_steps(cluster, 1), 120)
    kickoff_txid = steps[0]["txid"]
    wait_for("client 1's key", lambda: _ladder_factory(cluster, fid0)["keys_handed_over"] >= 1)
    fid1 = next(f["factory_id"] for f in _ladder(cluster)["factories"] if f["factory_id"] != fid0)
    # the key is in, but the old factory can still pay client 1: its balance is locked
    wait_for("client 1's move", lambda: _by_client(cluster, fid1).get(1) == before[1])
    refused = _try_pay(cluster, 1, 0, 1_000_000)
    assert refused.returncode != 0, refused.stdout
    cluster.chain.generate_to_address(1, cluster.mine_to)  # the exit's kickoff confirms
    assert cluster.chain.get_raw_transaction_verbose(kickoff_txid).confirmations == 1
    wait_for("factory 0 closed from its kickoff", lambda: _closed(cluster, fid0), 120)
    assert _ladder_factory(cluster, fid0)["keys_handed_over"] == 2
    tx = _confirmed_close(cluster, fid0)
    assert [i.prevout.txid_hex for i in tx.inputs] == [kickoff_txid]
    assert cluster.chain.get_tx_out(kickoff_txid, 0) is None  # the exit cannot go on
    assert len(tx.outputs) == 1  # everything to the LSP: both clients moved
    # each client's balance is in factory 1, exactly once
    wait_for("both moves", lambda: _by_client(cluster, fid1) == before)
    _pay(cluster, 1, 0, 1_000_000)  # factory 0's close is in a block: unlocked
    close = run_node("close", "--datadir", str(cluster.lsp_dir))
    assert close.returncode == 0, close.stderr + close.stdout
    tx1 = _confirmed_close(cluster, fid1)
    for i, delta in ((0, 1000), (1, -1000)):
        script = _payout_script(cluster, fid1, i)
        paid = [o.value for o in tx1.outputs if o.script_pubkey == script]
        assert paid == [before[i] // 1000 + delta]


def _closed(cluster: Cluster, fid: str) -> bool:
    return _ladder_factory(cluster, fid).get("state") == "closed"


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3)
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.slow
def test_a_mover_keeping_its_key_is_closed_out_without_hurting_the_stayer(
    cluster3: Cluster,
) -> None:
    """Attack 8: client 1 moves into factory 1 but never fulfils its move PTLC; client 2
    refuses to move (an honest stayer); client 0 moves honestly. Factory 0 has a mover's
    key, so the LSP kicks it off before its distribution locktime; at the withheld PTLC's
    expiry the move is cancelled and the LSP closes factory 0 from the kickoff's output
    with clients 1 and 2, each paid its balance there — not the CLTV sweep taking both."""
    cluster = cluster3
    amounts = [100_000, 120_000, 90_000]
    cluster.start_lsp("--active-blocks", str(ACTIVE), "--dying-blocks", str(LONG_DYING))
    extra = {1: _misbehave("withhold-key"), 2: ("--refuse-turnover",)}
    for i, amount in enumerate(amounts):
        cluster.start_client(i, amount, *extra.get(i, ()))
    wait_for("factory 0 channels", lambda: cluster.channels_open(cluster.lsp_dir, 3))
    f0 = cluster.factory(cluster.lsp_dir)
    assert f0 is not None
    fid0, cltv = str(f0["factory_id"]), int(f0["cltv_timeout"])
    before = _by_client(cluster, fid0)
    cluster.mine_until(cltv - LONG_DYING)  # DYING: 0 and 1 move, 2 stays
    wait_for("client 0's key", lambda: _ladder_factory(cluster, fid0).get("keys_handed_over") == 1)
    fid1 = next(f["factory_id"] for f in _ladder(cluster)["factories"] if f["factory_id"] != fid0)
    wait_for("client 0's move", lambda: _by_client(cluster, fid1).get(0) == before[0])
    # the kickoff defense (a mover's key is in), then the withheld PTLC's expiry
    locktime = int(f0["distribution"]["locktime"])
    cluster.mine_until(locktime - KICKOFF_LEAD)
    kick = wait_for("kickoff out", lambda: _ladder_factory(cluster, fid0).get("kickoff"))
    cluster.mine_until(locktime - KICKOFF_LEAD + 1)
    kickoff_txid = str(kick["txid"])
    assert cluster.chain.get_raw_transaction_verbose(kickoff_txid).confirmations >= 1
    cluster.mine_until(cltv - 6)  # MOVE_MARGIN_BLOCKS: the move PTLC's expiry
    wait_for("factory 0 closed with its stayers", lambda: _closed(cluster, fid0), 30)
    tx = _confirmed_close(cluster, fid0)
    assert [i.prevout.txid_hex for i in tx.inputs] == [kickoff_txid]
    for i in (1, 2):
        script = _payout_script(cluster, fid0, i)
        assert [o.value for o in tx.outputs if o.script_pubkey == script] == [before[i] // 1000]
    assert cluster.chain.get_block_count() < cltv  # before the timeout sweep could run
    # the honest mover keeps its balance in factory 1; the withholder has nothing there
    assert _by_client(cluster, fid1).get(0) == before[0]
    assert _by_client(cluster, fid1).get(1, 0) == 0


@pytest.mark.slow
def test_nobody_moving_the_lsp_closes_at_current_balances_not_opening_ones(
    cluster: Cluster,
) -> None:
    """Attack 9, its second half: client 1 stalls every rotation and client 0 declines to
    move, so nobody leaves factory 0. Client 1 paid client 0 first; factory 0's
    distribution tx would pay both their opening balances (handing the payment back), so
    before its locktime the LSP closes factory 0 cooperatively at the current balances."""
    fid0 = _start(cluster, AMOUNTS, {0: ("--refuse-turnover",), 1: _misbehave("stall-rotation")})
    _pay(cluster, 1, 0, 9_000_000)
    wait_for("payment settles", lambda: _by_client(cluster, fid0).get(0) == 109_000_000)
    before = _by_client(cluster, fid0)
    f0 = _lsp_factory(cluster, fid0)
    locktime = int(f0["distribution"]["locktime"])
    cluster.mine_until(int(f0["cltv_timeout"]) - DYING)  # DYING: invites, 1 fails, 0 declines
    wait_for("client 1 barred", lambda: _ladder(cluster).get("barred"), 60)
    cluster.mine_until(locktime - KICKOFF_LEAD)
    wait_for("factory 0 closed fairly", lambda: _closed(cluster, fid0), 60)
    tx = _confirmed_close(cluster, fid0)
    assert cluster.chain.get_block_count() <= locktime  # before the distribution tx could
    for i in range(2):
        script = _payout_script(cluster, fid0, i)
        assert [o.value for o in tx.outputs if o.script_pubkey == script] == [before[i] // 1000]
