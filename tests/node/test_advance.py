"""Leaf advances over the wire with real processes: buying inbound liquidity.

One cluster (chain, LSP, two clients sharing one leaf: a 3-of-3 leaf state)
plays it out: client 0 buys inbound liquidity (`superscalar liquidity`), the LSP
sells more to client 1 on its own initiative, payments still flow on the
re-anchored channels, a restarted LSP keeps all of it, and bad requests get a
clear refusal with nothing changed.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from superscalar.node.common import CRASH_ENV

from .support import Cluster, run_node, wait_for
from .test_payments import _channels, _open, _pay, _pubkey

AMOUNTS = [100_000, 120_000]


# room for every advance this module makes (client 0 asks for 34,000 sat, more than its
# default share of the leaf's 50,000 sat of L-stock)
LSP_ARGS = ("--states-per-layer", "8", "--max-liquidity-per-client", "50000")


@dataclass
class Scene:
    cluster: Cluster
    position: dict[int, int]
    """Client index → factory position."""


def _liquidity(datadir: Path, amount: int, *extra: str) -> Any:
    return run_node("liquidity", "--datadir", str(datadir), "--amount", str(amount), *extra)


def _leaf(cluster: Cluster, datadir: Path) -> dict[str, Any]:
    f = cluster.factory(datadir)
    assert f is not None
    (leaf,) = f["leaves"]
    return dict(leaf)


def _lsp_channel(cluster: Cluster, position: int) -> tuple[int, int]:
    for c in _channels(cluster, cluster.lsp_dir):
        if int(c["position"]) == position:
            return int(c["local_msat"]), int(c["remote_msat"])
    raise AssertionError(f"no channel {position}")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    cluster = Cluster(tmp_path_factory.mktemp("advance"), 2)
    try:
        cluster.start_lsp(*LSP_ARGS)
        for i, amount in enumerate(AMOUNTS):
            cluster.start_client(i, amount)
        wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 2), timeout=90)
        for i in range(2):
            wait_for(f"client {i} open", lambda i=i: _open(cluster, cluster.client_dir(i), 1))
        f = cluster.factory(cluster.lsp_dir)
        assert f is not None
        pos_of = {c["pubkey"]: int(c["position"]) for c in f["clients"]}
        yield Scene(cluster, {i: pos_of[_pubkey(cluster, i)] for i in range(2)})
    finally:
        cluster.stop()


@pytest.mark.slow
def test_a_client_buys_inbound_liquidity_from_its_leafs_lstock(scene: Scene) -> None:
    cluster, pos = scene.cluster, scene.position[0]
    before = _lsp_channel(cluster, pos)
    lstock = _leaf(cluster, cluster.lsp_dir)["lstock_sat"]
    r = _liquidity(cluster.client_dir(0), 20_000)
    assert r.returncode == 0, r.stderr + r.stdout
    result = json.loads(r.stdout)
    assert (result["generation"], result["amount_sat"]) == (1, 20_000)
    leaf = _leaf(cluster, cluster.lsp_dir)
    assert (leaf["dw_state"], leaf["lstock_generation"], leaf["lstock_sat"]) == (
        1,
        1,
        lstock - 20_000,
    )
    channels = {p: 2 * AMOUNTS[i] for i, p in scene.position.items()}
    channels[pos] += 20_000
    assert leaf["channels_sat"] == [channels[p] for p in sorted(channels)]
    assert _lsp_channel(cluster, pos) == (before[0] + 20_000_000, before[1])
    (mine,) = _channels(cluster, cluster.client_dir(0))
    assert (mine["local_msat"], mine["remote_msat"]) == (before[1], before[0] + 20_000_000)
    ours = _leaf(cluster, cluster.client_dir(1))  # the other leaf client signed it too
    assert (ours["sequence"], ours["lstock_generation"]) == (leaf["sequence"], 1)


@pytest.mark.slow
def test_payments_flow_on_the_re_anchored_channels(scene: Scene) -> None:
    cluster = scene.cluster
    p0, p1 = scene.position[0], scene.position[1]
    a0, a1 = _lsp_channel(cluster, p0), _lsp_channel(cluster, p1)
    _pay(cluster, 1, 0, 3_000_007)
    want0 = (a0[0] - 3_000_007, a0[1] + 3_000_007)
    want1 = (a1[0] + 3_000_007, a1[1] - 3_000_007)
    wait_for("balances settle", lambda: (_lsp_channel(cluster, p0), _lsp_channel(cluster, p1))
             == (want0, want1))  # fmt: skip


@pytest.mark.slow
def test_the_lsp_sells_liquidity_and_keeps_it_across_a_restart(scene: Scene) -> None:
    cluster, p1 = scene.cluster, scene.position[1]
    before = _lsp_channel(cluster, p1)
    lstock = _leaf(cluster, cluster.lsp_dir)["lstock_sat"]
    r = _liquidity(cluster.lsp_dir, 5_000, "--client", str(p1))
    assert r.returncode == 0, r.stderr + r.stdout
    result = json.loads(r.stdout)
    assert result["generation"] == 2
    print(f"leaf advance over the wire (3-of-3 leaf, 2 channels re-anchored): {result['ms']} ms")
    # generation 1's channels carried the earlier payment: its forward and revocations
    # are kept apart from the new channels, whose HTLC ids and commitment numbers restart
    db = sqlite3.connect(f"file:{cluster.lsp_dir / 'node.sqlite3'}?mode=ro", uri=True)
    try:
        retired = db.execute(
            "SELECT COUNT(*) FROM forwards_retired WHERE generation=1 AND state='fulfilled'"
        ).fetchone()[0]
        revoked = db.execute(
            "SELECT COUNT(*) FROM channel_revoked_retired WHERE generation=1"
        ).fetchone()[0]
    finally:
        db.close()
    assert retired == 1  # the payment's forward (one row: upstream and downstream)
    assert revoked > 0
    assert cluster.lsp is not None
    cluster.lsp.kill(signal.SIGTERM)
    cluster.start_lsp(*LSP_ARGS)
    leaf = _leaf(cluster, cluster.lsp_dir)
    assert (leaf["dw_state"], leaf["lstock_generation"], leaf["lstock_sat"]) == (
        2,
        2,
        lstock - 5_000,
    )
    assert _lsp_channel(cluster, p1) == (before[0] + 5_000_000, before[1])
    for i in range(2):
        wait_for(
            f"client {i} reconnects",
            lambda i=i: (cluster.status(cluster.client_dir(i)) or {}).get("connected"),
        )
    _pay(cluster, 0, 1, 1_000_000)  # the reestablished, re-anchored channels still pay


@pytest.mark.slow
def test_more_than_the_lstock_is_refused_and_nothing_moves(scene: Scene) -> None:
    cluster = scene.cluster
    before = _leaf(cluster, cluster.lsp_dir)
    r = _liquidity(cluster.client_dir(0), before["lstock_sat"] + 1)
    assert r.returncode != 0
    assert "L-stock" in r.stderr, r.stderr
    assert _leaf(cluster, cluster.lsp_dir) == before


def _try_pay(cluster: Cluster, payer: int, payee: int, amount_msat: int) -> Any:
    inv = run_node(
        "invoice", "--datadir", str(cluster.client_dir(payee)), "--amount-msat", str(amount_msat)
    )
    assert inv.returncode == 0, inv.stderr
    return run_node(
        "pay", "--datadir", str(cluster.client_dir(payer)), "--to-pubkey", _pubkey(cluster, payee),
        "--payment-hash", json.loads(inv.stdout)["payment_hash"], "--amount-msat", str(amount_msat),
    )  # fmt: skip


def _connected(cluster: Cluster, i: int) -> bool:
    return bool((cluster.status(cluster.client_dir(i)) or {}).get("connected"))


def _restart_lsp(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, crash: str | None) -> None:
    assert cluster.lsp is not None
    cluster.lsp.kill(signal.SIGTERM)
    for i in range(2):
        wait_for(f"client {i} sees the disconnect", lambda i=i: not _connected(cluster, i))
    if crash is not None:
        monkeypatch.setenv(CRASH_ENV, crash)
    try:
        cluster.start_lsp(*LSP_ARGS)
    finally:
        monkeypatch.delenv(CRASH_ENV, raising=False)
    for i in range(2):
        wait_for(f"client {i} reconnects", lambda i=i: _connected(cluster, i))


def _crash_mid_advance(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    """Client 0 asks for 7,000 sat; the LSP dies at `point`; it comes back without the crash."""
    _restart_lsp(cluster, monkeypatch, point)
    r = _liquidity(cluster.client_dir(0), 7_000)
    assert r.returncode != 0
    assert "disconnected from the LSP" in r.stderr, r.stderr
    assert cluster.lsp is not None
    assert cluster.lsp.proc.wait(60) == 137
    cluster.lsp.kill()
    cluster.start_lsp(*LSP_ARGS)
    for i in range(2):
        wait_for(f"client {i} reconnects", lambda i=i: _connected(cluster, i))


@pytest.mark.slow
def test_an_lsp_killed_before_it_signs_abandons_the_advance_and_a_retry_succeeds(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = scene.cluster
    before = _leaf(cluster, cluster.lsp_dir)
    _crash_mid_advance(cluster, monkeypatch, "lsp-advance-before-sign")
    assert _leaf(cluster, cluster.lsp_dir) == before  # the old state holds
    # but the clients signed it: their channels stay frozen until it finishes
    frozen = _try_pay(cluster, 1, 0, 2_000_000)
    assert frozen.returncode != 0 and "channel-frozen" in frozen.stderr, frozen.stderr
    r = _liquidity(cluster.client_dir(0), 7_000)  # the very tx the clients signed: resumed
    assert r.returncode == 0, r.stderr + r.stdout
    assert _leaf(cluster, cluster.lsp_dir)["lstock_sat"] == before["lstock_sat"] - 7_000
    _pay(cluster, 1, 0, 2_000_000)  # on the re-anchored channels


@pytest.mark.slow
def test_an_lsp_killed_after_storing_the_advance_finishes_it_with_each_client(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = scene.cluster
    before = _leaf(cluster, cluster.lsp_dir)
    _crash_mid_advance(cluster, monkeypatch, "lsp-advance-before-done-sent")
    after = _leaf(cluster, cluster.lsp_dir)
    assert after["lstock_generation"] == before["lstock_generation"] + 1
    for i in range(2):  # DONE went out again on reconnect: both switched to the new state
        wait_for(
            f"client {i} finished the advance",
            lambda i=i: _leaf(cluster, cluster.client_dir(i))["sequence"] == after["sequence"],
        )
    _pay(cluster, 0, 1, 1_500_000)  # the re-anchored channels reestablished and pay


@pytest.mark.slow
def test_a_client_killed_after_signing_finishes_the_advance_when_it_returns(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, p1 = scene.cluster, scene.position[1]
    cluster.clients[0].kill(signal.SIGTERM)
    monkeypatch.setenv(CRASH_ENV, "client-advance-after-psig")
    try:
        cluster.start_client(0, AMOUNTS[0])
    finally:
        monkeypatch.delenv(CRASH_ENV)
    wait_for("client 0 reconnects", lambda: _connected(cluster, 0))
    r = _liquidity(cluster.lsp_dir, 4_000, "--client", str(p1))  # the LSP has both psigs
    assert r.returncode == 0, r.stderr + r.stdout
    assert cluster.clients[0].proc.wait(60) == 137
    after = _leaf(cluster, cluster.lsp_dir)
    cluster.clients[0].kill()
    cluster.start_client(0, AMOUNTS[0])  # the LSP resends DONE before FUNDED
    wait_for(
        "client 0 finished the advance",
        lambda: _leaf(cluster, cluster.client_dir(0))["sequence"] == after["sequence"],
    )
    _pay(cluster, 1, 0, 1_250_000)
