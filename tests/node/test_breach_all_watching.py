"""Everyone watching: the LSP cheats on all of its channels at once and loses all of them;
a client cheats on the LSP and loses its channel to the LSP's watcher."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from superscalar.node.chancodec import decode_state
from superscalar.node.control import call_control

from .support import Cluster, run_node, wait_for
from .test_breach import _breach, _open, _pay, _penalty_in_mempool, _won

AMOUNTS = [100_000, 80_000]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 2)
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.slow
def test_every_watching_client_takes_back_its_whole_channel(cluster: Cluster) -> None:
    cluster.start_lsp("--dev-tools")
    for i, amount in enumerate(AMOUNTS):
        cluster.start_client(i, amount)
    wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 2), timeout=120)
    for i in range(2):
        wait_for(f"client {i} open", lambda i=i: _open(cluster, cluster.client_dir(i), 1))
    assert run_node("dev", "snapshot", "--datadir", str(cluster.lsp_dir)).returncode == 0
    _pay(cluster, 0, 1, 5_000_000)
    breaches = {p: _breach(cluster, p) for p in range(2)}  # by LSP position
    by_client = {}
    for i in range(2):
        pubkey = call_control(cluster.client_dir(i), "status")["pubkey"]
        f = cluster.factory(cluster.lsp_dir)
        assert f is not None
        position = next(int(c["position"]) for c in f["clients"] if c["pubkey"] == pubkey)
        by_client[i] = breaches[position]["commitment_txid"]

    def all_swept() -> bool:
        if any(_penalty_in_mempool(cluster, t) for t in by_client.values()):
            cluster.chain.generate_to_address(1, cluster.mine_to)
        return all(_won(cluster, i, t) for i, t in by_client.items())

    wait_for("both penalties confirmed", all_swept, timeout=90)
    for i, txid in by_client.items():
        cheat = cluster.chain.get_raw_transaction(txid)
        penalty = cluster.chain.get_raw_transaction(str(_won(cluster, i, txid)))
        assert cheat.total_out == 2 * AMOUNTS[i]  # the whole channel was at stake...
        fee = sum(cheat.outputs[t.prevout.vout].value for t in penalty.inputs) - penalty.total_out
        anchor = cheat.total_out - sum(cheat.outputs[t.prevout.vout].value for t in penalty.inputs)
        assert penalty.total_out == 2 * AMOUNTS[i] - anchor - fee  # ...and all went to the client
        assert 0 < fee < 2_000 and anchor == 0
    # the LSP's own watcher saw its commitments go by and did nothing (none was the clients')
    assert call_control(cluster.lsp_dir, "watch")["breaches"] == []


@pytest.mark.slow
def test_a_cheating_client_loses_its_whole_channel_to_the_lsps_watcher(cluster: Cluster) -> None:
    cluster.start_lsp()
    cluster.start_client(0, AMOUNTS[0], "--dev-tools")
    cluster.start_client(1, AMOUNTS[1])
    wait_for("lsp channels open", lambda: _open(cluster, cluster.lsp_dir, 2), timeout=120)
    wait_for("client 0 open", lambda: _open(cluster, cluster.client_dir(0), 1))
    snap = run_node("dev", "snapshot", "--datadir", str(cluster.client_dir(0)))
    assert snap.returncode == 0, snap.stderr
    _pay(cluster, 0, 1, 30_000_000)  # client 0 spends 30,000 sat; its old state had them
    f = cluster.factory(cluster.lsp_dir)
    assert f is not None
    me = call_control(cluster.client_dir(0), "status")["pubkey"]
    position = next(int(c["position"]) for c in f["clients"] if c["pubkey"] == me)
    r = run_node(
        "dev", "breach", "--datadir", str(cluster.client_dir(0)), "--position", str(position),
        *cluster.chain_args(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    txid = json.loads(r.stdout)["commitment_txid"]

    def punished() -> str | None:
        if _penalty_in_mempool(cluster, txid):
            cluster.chain.generate_to_address(1, cluster.mine_to)
        return _won(cluster, 0, txid, cluster.lsp_dir)

    spender = wait_for("the LSP's penalty to confirm", punished, timeout=90)
    cheat = cluster.chain.get_raw_transaction(txid)
    penalty = cluster.chain.get_raw_transaction(str(spender))
    taken = sum(cheat.outputs[i.prevout.vout].value for i in penalty.inputs)
    assert taken == cheat.total_out == 2 * AMOUNTS[0]  # the whole channel (zero anchors)
    (out,) = penalty.outputs
    assert 0 < taken - out.value < 2_000
    db = sqlite3.connect(f"file:{cluster.lsp_dir / 'node.sqlite3'}?mode=ro", uri=True)
    try:
        (state_text,) = db.execute(
            "SELECT state FROM channels WHERE position=?", (position,)
        ).fetchone()
    finally:
        db.close()
    assert out.script_pubkey == decode_state(state_text).local_close_script
