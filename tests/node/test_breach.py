"""Breach scenarios with real processes: the LSP broadcasts revoked commitments of five clients.

One cluster (chain, LSP with `--dev-tools`, five clients, two towers) plays it out once:
the LSP keeps signed copies of its commitments (`dev snapshot`), payments
revoke them, then it puts the factory path and every client's revoked commitment
on chain (`dev breach`). Client 0 watches and sweeps at once; client 2 was
not watching and is restarted with its watcher before the CSV deadline, which
catches up on the blocks it missed and sweeps; client 1 never watches, so
after `to_self_delay` blocks the LSP takes its to_local: the breach succeeds
against a client nobody watches. Client 3 runs no watcher but feeds a
standalone `superscalar watchtower` encrypted hints (client 4 has a tower
reading its database read-only instead); the tower is down while
the hints are made and client 3 restarts before it is back, so the hints go
out from the persisted outbox; the tower then sweeps for it. Each test checks
one outcome on chain.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from superscalar.bitcoin.script import is_p2a
from superscalar.bitcoin.tx import OutPoint, Transaction
from superscalar.node.channels import CHANNEL_CONFIG
from superscalar.node.control import call_control
from superscalar.watch.responses import PENALTY_LADDER

from .support import NODE, Cluster, Proc, free_port, run_node, wait_for
from .support import _pubkey as _node_pubkey
from .test_payments import _open, _pay, _pubkey

AMOUNTS = [100_000, 120_000, 90_000, 110_000, 95_000]
WATCHING, NOBODY_HOME, LATE, TOWER, READONLY = 0, 1, 2, 3, 4


@dataclass
class Scenario:
    cluster: Cluster
    position: dict[int, int]
    breach: dict[int, dict[str, Any]] = field(default_factory=dict)
    penalty: dict[int, Transaction] = field(default_factory=dict)
    penalty_latency: float = 0.0
    sweep: dict[str, Any] = field(default_factory=dict)
    tower_dir: Path | None = None
    ro_dir: Path | None = None


def _payout_script(cluster: Cluster, i: int) -> bytes:
    db = sqlite3.connect(f"file:{cluster.client_dir(i) / 'node.sqlite3'}?mode=ro", uri=True)
    try:
        (hexed,) = db.execute("SELECT value FROM node_kv WHERE key='payout_script'").fetchone()
        return bytes.fromhex(hexed)
    finally:
        db.close()


def _won(cluster: Cluster, i: int, txid: str, watcher: Path | None = None) -> str | None:
    for b in call_control(watcher or cluster.client_dir(i), "watch")["breaches"]:
        if b["txid"] == txid and b["spender"]:
            return str(b["spender"])
    return None


def _penalty_in_mempool(cluster: Cluster, commitment: str) -> bool:
    for txid in cluster.chain.get_raw_mempool():
        tx = cluster.chain.get_raw_transaction(txid)
        if any(i.prevout.txid_hex == commitment and i.sequence != 0xFFFFFFFF for i in tx.inputs):
            return True
    return False


def _breach(cluster: Cluster, position: int) -> dict[str, Any]:
    r = run_node(
        "dev", "breach", "--datadir", str(cluster.lsp_dir), "--position", str(position),
        *cluster.chain_args(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def _sweep_penalty(scene: Scenario, i: int, watcher: Path | None = None) -> None:
    """Wait for client i's watcher (or tower) to answer the breach; mine its penalty; keep it."""
    cluster = scene.cluster
    txid = scene.breach[i]["commitment_txid"]

    def settled() -> str | None:
        if _penalty_in_mempool(cluster, txid):
            cluster.chain.generate_to_address(1, cluster.mine_to)
        return _won(cluster, i, txid, watcher)

    spender = wait_for(f"client {i}'s penalty to confirm", settled, timeout=90)
    scene.penalty[i] = cluster.chain.get_raw_transaction(spender)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    cluster = Cluster(tmp_path_factory.mktemp("breach"), 5)
    tower: Proc | None = None
    ro_tower: Proc | None = None
    try:
        tower_dir, tower_port = cluster.root / "tower", free_port()

        def start_tower() -> Proc:
            proc = Proc(
                [*NODE, "watchtower", "--datadir", str(tower_dir), "--port", str(tower_port),
                 *cluster.chain_args(), "-v"],
                tower_dir / "log.txt",
            )  # fmt: skip
            wait_for("tower control", lambda: call_control(tower_dir, "status"))
            return proc

        tower = start_tower()
        tower_key: str = wait_for("tower key", lambda: _node_pubkey(tower_dir / "log.txt"))
        tower_args = ("--no-watch", "--watchtower", f"{tower_key}@127.0.0.1:{tower_port}")
        cluster.start_lsp("--dev-tools")
        cluster.start_client(WATCHING, AMOUNTS[WATCHING])
        cluster.start_client(NOBODY_HOME, AMOUNTS[NOBODY_HOME], "--no-watch")
        cluster.start_client(LATE, AMOUNTS[LATE], "--no-watch")
        cluster.start_client(TOWER, AMOUNTS[TOWER], *tower_args)
        cluster.start_client(READONLY, AMOUNTS[READONLY], "--no-watch")
        wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 5), timeout=150)
        for i in range(5):
            wait_for(f"client {i} open", lambda i=i: _open(cluster, cluster.client_dir(i), 1))
        f = cluster.factory(cluster.lsp_dir)
        assert f is not None
        pos_of = {c["pubkey"]: int(c["position"]) for c in f["clients"]}
        scene = Scenario(cluster, {i: pos_of[_pubkey(cluster, i)] for i in range(5)})
        ro_dir = cluster.root / "ro-tower"
        ro_tower = Proc(
            [*NODE, "watchtower", "--datadir", str(ro_dir), "--port", str(free_port()),
             "--from-datadir", str(cluster.client_dir(READONLY)), *cluster.chain_args(), "-v"],
            ro_dir / "log.txt",
        )  # fmt: skip
        wait_for("read-only tower", lambda: call_control(ro_dir, "status"))
        scene.ro_dir = ro_dir
        scene.tower_dir = tower_dir
        tower.kill(signal.SIGTERM)  # the tower is down while client 3's hints are made
        snap = run_node("dev", "snapshot", "--datadir", str(cluster.lsp_dir))
        assert snap.returncode == 0, snap.stderr
        _pay(cluster, WATCHING, NOBODY_HOME, 7_000_000)  # revokes the LSP's commitments 0, 1
        _pay(cluster, LATE, TOWER, 3_000_000)  # ... and 2, 3
        _pay(cluster, READONLY, LATE, 1_000_000)  # ... and 4

        def tower_unreachable() -> bool:
            towers = call_control(cluster.client_dir(TOWER), "watch")["towers"]
            return all(t["last_error"] for t in towers.values())

        wait_for("client 3 to find its tower down", tower_unreachable)
        cluster.clients[TOWER].kill(signal.SIGTERM)  # client 3 restarts with hints unsent...
        cluster.start_client(TOWER, AMOUNTS[TOWER], *tower_args)
        tower = start_tower()  # ...and the tower comes back: the outbox is delivered

        def hints_sent() -> bool:
            towers = call_control(cluster.client_dir(TOWER), "watch")["towers"]
            return all(t["hints_sent"] >= 2 for t in towers.values())

        wait_for("client 3's hints at its tower", hints_sent)
        cluster.clients[LATE].kill(signal.SIGTERM)  # client 2 goes away for a while
        scene.breach[WATCHING] = _breach(cluster, scene.position[WATCHING])
        start = time.monotonic()
        txid = scene.breach[WATCHING]["commitment_txid"]
        wait_for("the penalty in the mempool", lambda: _penalty_in_mempool(cluster, txid))
        scene.penalty_latency = time.monotonic() - start
        _sweep_penalty(scene, WATCHING)
        for i in (NOBODY_HOME, LATE, TOWER, READONLY):
            scene.breach[i] = _breach(cluster, scene.position[i])
        _sweep_penalty(scene, TOWER, tower_dir)
        _sweep_penalty(scene, READONLY, ro_dir)
        cluster.chain.generate_to_address(5, cluster.mine_to)  # client 2 misses more blocks
        cluster.start_client(LATE, AMOUNTS[LATE])  # back, watching now
        _sweep_penalty(scene, LATE)
        # nobody watches client 1: the LSP waits out its CSV and takes its to_local
        gone = cluster.chain.get_block_count() - scene.breach[NOBODY_HOME]["height"]
        cluster.chain.generate_to_address(CHANNEL_CONFIG.to_self_delay - 1 - gone, cluster.mine_to)
        r = run_node(
            "dev", "sweep", "--datadir", str(cluster.lsp_dir),
            "--position", str(scene.position[NOBODY_HOME]),
            "--txid", scene.breach[NOBODY_HOME]["commitment_txid"], *cluster.chain_args(),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr + r.stdout
        scene.sweep = json.loads(r.stdout)
        cluster.chain.generate_to_address(1, cluster.mine_to)
        print(f"breach block → penalty in mempool: {scene.penalty_latency:.2f} s")
        yield scene
    finally:
        for proc in (tower, ro_tower):
            if proc is not None:
                proc.kill(signal.SIGTERM)
        cluster.stop()


def _assert_penalty_took_everything(scene: Scenario, i: int) -> None:
    chain = scene.cluster.chain
    cheat = chain.get_raw_transaction(scene.breach[i]["commitment_txid"])
    penalty = scene.penalty[i]
    assert chain.get_raw_transaction_verbose(penalty.txid_hex).confirmations >= 1
    capacity = 2 * AMOUNTS[i]
    assert cheat.total_out == capacity  # a zero-fee commitment: the whole channel
    taken = {OutPoint(cheat.txid, v) for v, o in enumerate(cheat.outputs) if o.value > 0}
    taken -= {
        OutPoint(cheat.txid, v) for v, o in enumerate(cheat.outputs) if is_p2a(o.script_pubkey)
    }
    assert {txin.prevout for txin in penalty.inputs} == taken
    value_in = sum(cheat.outputs[p.vout].value for p in taken)
    (out,) = penalty.outputs
    assert out.script_pubkey == _payout_script(scene.cluster, i)
    fee = value_in - out.value
    assert fee in {rate.fee_for_vsize(penalty.vsize) for rate in PENALTY_LADDER}
    anchor = sum(o.value for o in cheat.outputs if is_p2a(o.script_pubkey))
    assert out.value == capacity - anchor - fee


@pytest.mark.slow
def test_a_watching_client_sweeps_the_whole_channel_with_the_penalty(scene: Scenario) -> None:
    _assert_penalty_took_everything(scene, WATCHING)
    shown = run_node("watch", "--datadir", str(scene.cluster.client_dir(WATCHING)))
    assert shown.returncode == 0, shown.stderr
    assert scene.breach[WATCHING]["commitment_txid"] in shown.stdout
    assert "punished" in shown.stdout


@pytest.mark.slow
def test_a_client_back_after_the_breach_catches_up_and_sweeps_before_the_deadline(
    scene: Scenario,
) -> None:
    _assert_penalty_took_everything(scene, LATE)
    watch = call_control(scene.cluster.client_dir(LATE), "watch")
    assert watch["blocks_scanned"] > 6  # everything since the factory's funding
    print(f"late watcher: {watch['blocks_scanned']} blocks at {watch['blocks_per_second']} /s")


@pytest.mark.slow
def test_nobody_home_the_breach_succeeds_and_the_cheater_keeps_its_old_balance(
    scene: Scenario,
) -> None:
    chain = scene.cluster.chain
    cheat = chain.get_raw_transaction(scene.breach[NOBODY_HOME]["commitment_txid"])
    sweep = chain.get_raw_transaction_verbose(scene.sweep["sweep_txid"])
    assert sweep.confirmations == 1
    (spent,) = sweep.tx.inputs
    assert spent.prevout.txid == cheat.txid
    to_local = cheat.outputs[spent.prevout.vout].value
    # the LSP's balance at the snapshot, before the client was paid 7,000 sat: stolen back
    assert to_local == (2 * AMOUNTS[NOBODY_HOME] - AMOUNTS[NOBODY_HOME])
    assert sweep.tx.outputs[0].value == scene.sweep["value"] < to_local
    assert call_control(scene.cluster.client_dir(NOBODY_HOME), "watch") == {
        "enabled": False,
        "breaches": [],
    }
    shown = run_node("watch", "--datadir", str(scene.cluster.client_dir(NOBODY_HOME)))
    assert "no watcher running" in shown.stdout


@pytest.mark.slow
def test_a_watchtower_with_only_encrypted_hints_sweeps_for_an_offline_client(
    scene: Scenario,
) -> None:
    _assert_penalty_took_everything(scene, TOWER)
    assert scene.tower_dir is not None
    status = call_control(scene.tower_dir, "status")
    assert status["hints"] >= 2
    (breach,) = status["watch"]["breaches"]
    assert breach["txid"] == scene.breach[TOWER]["commitment_txid"] and breach["won"] is True


@pytest.mark.slow
def test_a_tower_reading_the_clients_database_read_only_sweeps_for_it(scene: Scenario) -> None:
    _assert_penalty_took_everything(scene, READONLY)
    assert scene.ro_dir is not None
    status = call_control(scene.ro_dir, "status")
    assert status["hints"] == 0 and status["from_datadir"] == str(
        scene.cluster.client_dir(READONLY)
    )
