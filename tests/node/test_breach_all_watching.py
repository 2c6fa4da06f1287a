"""Every client watching: the LSP cheats on all of its channels at once and loses all of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
