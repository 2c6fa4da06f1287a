"""The watcher shell on the kernel chain: real blocks, real RPC, real penalties, burns and states.

Each test serves an embedded regtest node over JSON-RPC, runs `ChainWatcher`
against it with a real SQLite database, lets a cheater's transaction confirm,
and checks what the watcher put on chain to the satoshi.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from superscalar.bitcoin.script import is_p2a
from superscalar.bitcoin.tx import OutPoint, Transaction
from superscalar.chain.bitcoind import BitcoindClient
from superscalar.chain.node import RegtestNode
from superscalar.channel import AddHtlc, FulfillHtlc, Funding, LoopbackChannel
from superscalar.channel.htlc import Direction
from superscalar.channel.onchain import htlc_second_stage
from superscalar.channel.state import signed_local_commitment
from superscalar.factory import lstock_burn_tx, lstock_output_ref, verify_burn_secret
from superscalar.factory.lstock import LStockSecrets
from superscalar.node.watcher import ChainWatcher, breach_report
from superscalar.store.db import Database
from superscalar.store.schema import DAEMON_MIGRATIONS
from superscalar.watch import WatchEntry
from superscalar.watch.responses import (
    PENALTY_LADDER,
    lstock_burn_entry,
    newer_state_entry,
    penalty_after_spends,
    penalty_entry,
)

from ..chain.chain_support import MINER, fund
from ..channel.support import (
    add_committed,
    funding_script,
    make_pair,
    payment_hash,
    preimage,
)
from ..channel.test_onchain import _revoked_scene
from ..factory.helpers import LSTOCK_SEED
from ..factory.test_chain_exit import _advanced_leaf, open_factory

AMOUNT = 1_000_000


def _watcher(tmp_path: Path, rpc: BitcoindClient, node: RegtestNode) -> ChainWatcher:
    db = Database.open(tmp_path / "watch.sqlite3", DAEMON_MIGRATIONS)
    w = ChainWatcher(db, rpc, name="test")
    w.load(start_height=node.height)
    return w


def _confirmed_height(node: RegtestNode, tx: Transaction) -> int | None:
    status = node.transaction(tx.txid)
    return None if status is None else status.height


def _revoked_channel(node: RegtestNode) -> tuple[LoopbackChannel, Transaction]:
    """alice and bob on a funded channel; alice's signed commitment #k, since revoked."""
    outpoint, _ = fund(node, funding_script(), AMOUNT)
    pair = make_pair(funding=Funding(outpoint, AMOUNT), height=node.height)
    expiry = node.height + 30
    to_alice = add_committed(pair, pair.b, 25_000_000, 2, expiry)
    _, cheat = signed_local_commitment(pair.a.secrets, pair.a.state)
    pair.apply(pair.a, FulfillHtlc(to_alice, preimage(2)))
    pair.apply(pair.a, AddHtlc(1_000_000, payment_hash(4), expiry))
    pair.settle()
    return pair, cheat


def _penalty_watch(node: RegtestNode, pair: LoopbackChannel, cheat: Transaction) -> WatchEntry:
    bob = pair.b
    number = next(n for n, r in bob.revoked.items() if r.txid == cheat.txid)
    return penalty_entry(bob.secrets, bob.state, bob.revoked[number], node.wallet.new_script())


def test_revoked_commitment_is_swept_by_the_penalty_in_the_next_block(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    pair, cheat = _revoked_channel(node)
    entry = _penalty_watch(node, pair, cheat)
    w = _watcher(tmp_path, rpc, node)
    w.add_entries([entry])
    node.mine_transactions([cheat], MINER)
    asyncio.run(w.catch_up())
    penalty = entry.responses[0]
    assert penalty.txid in node.mempool
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    assert _confirmed_height(node, penalty) == node.height
    # every output but the anchor, minus the 2 sat/vB fee, to bob's wallet script
    anchor = min(cheat.outputs, key=lambda o: o.value)
    taken = sum(o.value for o in cheat.outputs) - anchor.value
    assert {i.prevout for i in penalty.inputs} == {
        OutPoint(cheat.txid, v) for v, o in enumerate(cheat.outputs) if o is not anchor
    }
    assert penalty.outputs[0].value == taken - PENALTY_LADDER[0].fee_for_vsize(penalty.vsize)
    (report,) = breach_report(w.db)
    assert report["won"] is True and report["spender"] == penalty.txid_hex


def test_a_watcher_down_during_the_breach_catches_up_and_sweeps_before_the_deadline(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    pair, cheat = _revoked_channel(node)
    entry = _penalty_watch(node, pair, cheat)
    w = _watcher(tmp_path, rpc, node)
    w.add_entries([entry])
    asyncio.run(w.catch_up())
    w.db.close()  # the watcher goes down...
    node.mine_transactions([cheat], MINER)
    node.mine(3, MINER)  # ...and misses the breach and three more blocks
    late = _watcher(tmp_path, rpc, node)
    scanned = asyncio.run(late.catch_up())
    assert scanned == 4
    sent = [t for t in entry.responses if t.txid in node.mempool]
    assert len(sent) == 1
    node.mine(1, MINER)
    assert _confirmed_height(node, sent[0]) == node.height


def test_an_unresolved_breach_is_answered_again_after_a_restart(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    pair, cheat = _revoked_channel(node)
    entry = _penalty_watch(node, pair, cheat)
    w = _watcher(tmp_path, rpc, node)
    w.add_entries([entry])
    node.mine_transactions([cheat], MINER)
    asyncio.run(w.catch_up())
    w.db.close()
    node.mempool.remove(entry.responses[0].txid)
    again = _watcher(tmp_path, rpc, node)
    assert again.state.scan_height == node.height - 1  # rewound to the open breach
    asyncio.run(again.catch_up())
    assert entry.responses[0].txid in node.mempool


def test_old_kickoff_is_answered_with_the_newer_state_which_confirms_first(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    old = open_factory(node, 2)  # kickoff, then the leaf state (nSequence 30 → 20 after advance)
    new = _advanced_leaf(old)
    kickoff, old_state, new_state = old.signed_tx(0), old.signed_tx(1), new.signed_tx(1)
    entry = newer_state_entry(kickoff.txid, new_state, 20, 30)
    w = _watcher(tmp_path, rpc, node)
    w.add_entries([entry])
    assert node.submit_with_cpfp(kickoff).ok  # someone starts an exit...
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    assert new_state.txid not in node.mempool
    node.mine(18, MINER)
    asyncio.run(w.catch_up())
    assert new_state.txid not in node.mempool  # its 20-block lock has not passed
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    assert new_state.txid in node.mempool  # final for the next block: sent with a CPFP child
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    assert _confirmed_height(node, new_state) == node.height
    assert node.utxo(old_state.inputs[0].prevout) is None  # the old state can never confirm
    (report,) = breach_report(w.db)
    assert report["won"] is True


def test_superseded_lstock_on_chain_is_burnt_before_the_lsp_can_sweep_it(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    old = open_factory(node, 2)
    _advanced_leaf(old)
    revealed = LStockSecrets(LSTOCK_SEED).secret(0, 0)
    ref = lstock_output_ref(old.tree, 0)
    burn = lstock_burn_tx(ref, verify_burn_secret(old.tree.state.lstock_points[0], revealed))
    old_state = old.signed_tx(1)
    entry = lstock_burn_entry(old_state.txid, burn, old.tree.shape.params.lstock_csv_delay)
    w = _watcher(tmp_path, rpc, node)
    w.add_entries([entry])
    assert node.submit_with_cpfp(old.signed_tx(0)).ok
    node.mine(30, MINER)
    assert node.submit_with_cpfp(old_state).ok  # the LSP publishes the superseded state anyway
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    assert burn.txid in node.mempool
    node.mine(1, MINER)
    assert _confirmed_height(node, burn) == node.height
    assert node.utxo(ref.outpoint) is None
    assert burn.outputs[0].value == 0  # all of the L-stock went to fees


def _mempool_spender(node: RegtestNode, outpoint: OutPoint) -> Transaction | None:
    for entry in node.mempool:
        if any(i.prevout == outpoint for i in entry.tx.inputs):
            return entry.tx
    return None


def test_an_unmined_penalty_is_replaced_by_higher_feerate_rungs_as_the_deadline_nears(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    pair, cheat = _revoked_channel(node)  # to_self_delay 6: five blocks to get the penalty in
    entry = _penalty_watch(node, pair, cheat)
    w = _watcher(tmp_path, rpc, node)
    w.add_entries([entry])
    node.mine_transactions([cheat], MINER)
    contested = entry.responses[0].inputs[0].prevout
    seen = []
    for _ in range(entry.deadline):
        asyncio.run(w.catch_up())
        spender = _mempool_spender(node, contested)
        assert spender is not None
        seen.append(entry.responses.index(spender))
        node.mine_transactions([], MINER)  # miners ignore it: a congested mempool
    assert seen[0] == 0 and seen[-1] == len(entry.responses) - 1
    assert seen == sorted(seen) and len(set(seen)) > 2  # each rung RBF'd the one before
    node.mine(1, MINER)
    top = entry.responses[-1]
    assert _confirmed_height(node, top) == node.height
    rate = PENALTY_LADDER[-1]
    assert sum(o.value for o in cheat.outputs) - top.outputs[0].value >= rate.fee_for_vsize(
        top.vsize
    )


def test_the_cpfp_child_of_a_newer_state_is_rbfd_at_a_rising_feerate(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    old = open_factory(node, 2)
    new = _advanced_leaf(old)
    kickoff, new_state = old.signed_tx(0), new.signed_tx(1)
    entry = newer_state_entry(kickoff.txid, new_state, 20, 30)
    w = _watcher(tmp_path, rpc, node)
    w.add_entries([entry])
    assert node.submit_with_cpfp(kickoff).ok
    node.mine(20, MINER)  # the newer state is final for the next block
    fees = []
    for _ in range(4):
        asyncio.run(w.catch_up())
        assert new_state.txid in node.mempool
        child = _mempool_spender(node, new_state.outpoint(len(new_state.outputs) - 1))
        assert child is not None
        fees.append(node.mempool.entries[child.txid].fee)
        node.mine_transactions([], MINER)
    assert fees == sorted(fees) and fees[0] < fees[-1]
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    assert _confirmed_height(node, new_state) == node.height


def test_an_htlc_taken_into_its_second_stage_is_still_punished_with_the_rest(
    tmp_path: Path, node: RegtestNode, rpc: BitcoindClient
) -> None:
    scene, old = _revoked_scene(node)  # alice's old commitment has HTLCs both ways
    alice, bob = scene.pair.a, scene.pair.b
    old_commitment, cheat = signed_local_commitment(alice.secrets, old)
    record = bob.revoked[next(n for n, r in bob.revoked.items() if r.txid == cheat.txid)]
    dest = node.wallet.new_script()
    entry = penalty_entry(bob.secrets, bob.state, record, dest)
    db = Database.open(tmp_path / "watch.sqlite3", DAEMON_MIGRATIONS)
    w = ChainWatcher(
        db,
        rpc,
        name="test",
        rebuild=lambda e, spent: penalty_after_spends(
            bob.secrets, bob.state, record, dest, e, spent
        ),
    )
    w.load(start_height=node.height)
    w.add_entries([entry])
    node.mine_transactions([cheat], MINER)
    asyncio.run(w.catch_up())
    assert entry.responses[0].txid in node.mempool
    assert old.local_commit is not None
    stolen = htlc_second_stage(
        alice.secrets,
        old_commitment,
        old.local_commit.htlc_signatures,
        Direction.RECEIVED,
        scene.to_alice,
        preimage(2),
    )
    # a miner takes the cheater's HTLC-success package instead of our penalty
    node.mine_transactions(node.cpfp_package(stolen), MINER)
    assert entry.responses[0].txid not in node.mempool
    asyncio.run(w.catch_up())
    (rebuilt,) = [e.tx for e in node.mempool if e.tx.outputs[0].script_pubkey == dest]
    assert OutPoint(stolen.txid, 0) in {i.prevout for i in rebuilt.inputs}
    node.mine(1, MINER)
    asyncio.run(w.catch_up())
    assert _confirmed_height(node, rebuilt) == node.height
    anchors = sum(o.value for o in (*cheat.outputs, *stolen.outputs) if is_p2a(o.script_pubkey))
    taken = sum(
        (stolen if i.prevout.txid == stolen.txid else cheat).outputs[i.prevout.vout].value
        for i in rebuilt.inputs
    )
    assert taken == AMOUNT - anchors  # every satoshi of the channel but the anchors
    (report,) = breach_report(db)
    assert report["won"] is True and report["spender"] == rebuilt.txid_hex
