"""Channel transactions on the embedded regtest chain, judged by Bitcoin Core's kernel.

Every transaction is checked input by input with `verify_transaction`, then
goes through the mempool's policy (a zero-fee commitment or second-stage tx
with its CPFP child as a 1p1c package) and is mined. Where a lock applies
the spend is refused one block early by the mempool *and* by the kernel when
forced into a block, then accepted at the lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import OutPoint, Transaction
from superscalar.chain.consensus import verify_transaction
from superscalar.chain.kernel import BlockRejectedError
from superscalar.chain.mempool import TxRejectedError
from superscalar.chain.node import RegtestNode
from superscalar.channel import (
    AddHtlc,
    BroadcastTransaction,
    ChannelState,
    Commitment,
    Direction,
    ForceClose,
    FulfillHtlc,
    Funding,
    InitiateShutdown,
    LoopbackChannel,
    OutputKind,
    Side,
    local_commitment,
    signed_local_commitment,
)
from superscalar.channel.onchain import (
    build_sweep,
    claim_remote_htlc_success,
    claim_remote_htlc_timeout,
    htlc_second_stage,
    sweep_second_stage,
    sweep_to_local,
    sweep_to_remote,
)
from superscalar.channel.penalty import build_penalty, revoked_number, second_stage_penalty_input

from ..chain.chain_support import MINER, confirm_with_child, fund, spent_outputs
from .support import (
    CONFIG,
    add_committed,
    funding_script,
    make_pair,
    payment_hash,
    preimage,
)

FEERATE = Feerate.from_sat_per_vb(2)
AMOUNT = 1_000_000


def _check(node: RegtestNode, tx: Transaction) -> None:
    verify_transaction(tx, spent_outputs(node, tx))


def _confirm(node: RegtestNode, tx: Transaction) -> None:
    _check(node, tx)
    node.send(tx)
    node.mine(1, MINER)
    status = node.transaction(tx.txid)
    assert status is not None and status.height == node.height


def _kernel_refuses_early(node: RegtestNode, tx: Transaction) -> None:
    height = node.height
    with pytest.raises(BlockRejectedError) as info:
        node.mine_transactions([tx], MINER)
    assert info.value.reason == "bad-txns-nonfinal"
    assert node.height == height


def _wallet_script(node: RegtestNode) -> bytes:
    return node.wallet.new_script()


@dataclass
class Scene:
    """A funded channel with HTLCs in flight both ways (and one trimmed)."""

    pair: LoopbackChannel
    to_bob: int  # alice's offered HTLC id (preimage 1)
    to_alice: int  # bob's offered HTLC id (preimage 2)
    expiry: int


def _scene(node: RegtestNode) -> Scene:
    outpoint, _ = fund(node, funding_script(), AMOUNT)
    pair = make_pair(funding=Funding(outpoint, AMOUNT), height=node.height)
    expiry = node.height + 30
    to_bob = add_committed(pair, pair.a, 40_000_000, 1, expiry)
    to_alice = add_committed(pair, pair.b, 25_000_000, 2, expiry + 1)
    add_committed(pair, pair.a, 200_000, 3, expiry)  # 200 sat: trimmed into the anchor
    return Scene(pair, to_bob, to_alice, expiry)


def _force_close(node: RegtestNode, side: Side, pair: LoopbackChannel) -> Commitment:
    transition = pair.apply(side, ForceClose())
    broadcast = [e for e in transition.effects if isinstance(e, BroadcastTransaction)]
    assert len(broadcast) == 1 and broadcast[0].anchor_vout is not None
    confirm_with_child(node, broadcast[0].tx)
    return local_commitment(side.state)


def test_force_close_with_htlcs_in_flight_confirms_through_its_anchor(node: RegtestNode) -> None:
    scene = _scene(node)
    commitment = _force_close(node, scene.pair.a, scene.pair)
    kinds = sorted(o.kind.value for o in commitment.outputs)
    assert kinds == ["anchor", "offered_htlc", "received_htlc", "to_local", "to_remote"]
    assert commitment.tx.total_out == AMOUNT  # zero fee: the child paid
    anchor = commitment.outputs[commitment.vout(OutputKind.ANCHOR) or 0]
    assert anchor.txout.value == 200  # the trimmed HTLC went to the anchor
    assert scene.pair.a.state.status.value == "force_closed"


def test_htlc_success_with_the_preimage_then_its_delayed_sweep(node: RegtestNode) -> None:
    scene = _scene(node)
    alice = scene.pair.a
    commitment = _force_close(node, alice, scene.pair)
    lc = alice.state.local_commit
    assert lc is not None
    success = htlc_second_stage(
        alice.secrets,
        commitment,
        lc.htlc_signatures,
        Direction.RECEIVED,
        scene.to_alice,
        preimage(2),
    )
    confirm_with_child(node, success)
    confirmed = node.height
    sweep = build_sweep(
        [sweep_second_stage(alice.secrets, commitment, success)], _wallet_script(node), FEERATE
    )
    node.mine(CONFIG.to_self_delay - 2, MINER)
    assert node.height + 1 == confirmed + CONFIG.to_self_delay - 1
    _kernel_refuses_early(node, sweep)
    node.mine(1, MINER)
    _confirm(node, sweep)
    assert sweep.outputs[0].value == 25_000 - FEERATE.fee_for_vsize(sweep.vsize)


def test_htlc_timeout_is_refused_one_block_early_and_mined_after_expiry(
    node: RegtestNode,
) -> None:
    scene = _scene(node)
    alice = scene.pair.a
    commitment = _force_close(node, alice, scene.pair)
    lc = alice.state.local_commit
    assert lc is not None
    timeout = htlc_second_stage(
        alice.secrets, commitment, lc.htlc_signatures, Direction.OFFERED, scene.to_bob
    )
    assert timeout.locktime == scene.expiry
    _check(node, timeout)
    node.mine(scene.expiry - 1 - node.height, MINER)  # next block is `expiry`: too early
    result = node.submit_with_cpfp(timeout)
    assert not result.ok
    assert [e.reason for e in result.errors.values()] == ["non-final"]
    _kernel_refuses_early(node, timeout)
    node.mine(1, MINER)
    confirm_with_child(node, timeout)


def test_to_local_is_refused_one_block_early_and_mined_after_its_csv_delay(
    node: RegtestNode,
) -> None:
    scene = _scene(node)
    alice = scene.pair.a
    commitment = _force_close(node, alice, scene.pair)
    confirmed = node.height
    sweep = build_sweep([sweep_to_local(alice.secrets, commitment)], _wallet_script(node), FEERATE)
    _check(node, sweep)
    node.mine(CONFIG.to_self_delay - 2, MINER)  # the next block gives delay - 1 confirmations
    with pytest.raises(TxRejectedError) as refused:
        node.send(sweep)
    assert refused.value.reason == "non-BIP68-final"
    _kernel_refuses_early(node, sweep)
    node.mine(1, MINER)
    _confirm(node, sweep)
    assert node.height == confirmed + CONFIG.to_self_delay


def test_peer_commitment_outputs_are_claimed_directly(node: RegtestNode) -> None:
    scene = _scene(node)
    alice, bob = scene.pair.a, scene.pair.b
    theirs = _force_close(node, bob, scene.pair)  # bob's commitment: alice is "remote"
    dest = _wallet_script(node)
    claim = build_sweep(
        [
            sweep_to_remote(alice.secrets, theirs),
            claim_remote_htlc_success(alice.secrets, theirs, scene.to_alice, preimage(2)),
        ],
        dest,
        FEERATE,
    )
    _confirm(node, claim)
    reclaim = build_sweep(
        [claim_remote_htlc_timeout(alice.secrets, theirs, scene.to_bob)], dest, FEERATE
    )
    node.mine(scene.expiry - 1 - node.height, MINER)
    _kernel_refuses_early(node, reclaim)
    node.mine(1, MINER)
    _confirm(node, reclaim)


def _revoked_scene(node: RegtestNode) -> tuple[Scene, ChannelState]:
    """Alice's commitment with both HTLCs in flight, later revoked by more updates."""
    scene = _scene(node)
    old = scene.pair.a.state
    scene.pair.apply(scene.pair.a, FulfillHtlc(scene.to_alice, preimage(2)))
    scene.pair.apply(scene.pair.a, AddHtlc(1_000_000, payment_hash(4), scene.expiry))
    scene.pair.settle()
    return scene, old


def test_breach_penalty_sweeps_every_output_of_the_revoked_commitment(node: RegtestNode) -> None:
    scene, old = _revoked_scene(node)
    alice, bob = scene.pair.a, scene.pair.b
    _, cheat = signed_local_commitment(alice.secrets, old)
    _check(node, cheat)
    node.mine_transactions([cheat], MINER)  # consensus alone: the cheater's commitment confirms
    number = revoked_number(bob.state, cheat)
    assert number is not None and number in bob.revoked
    penalty = build_penalty(
        bob.secrets, bob.state, bob.revoked[number], _wallet_script(node), FEERATE
    )
    swept = {txin.prevout for txin in penalty.inputs}
    assert swept == {OutPoint(cheat.txid, vout) for vout in range(len(cheat.outputs))}
    assert penalty.outputs[0].value == AMOUNT - FEERATE.fee_for_vsize(penalty.vsize)
    _confirm(node, penalty)


def test_breach_penalty_also_takes_a_second_stage_output(node: RegtestNode) -> None:
    scene, old = _revoked_scene(node)
    alice, bob = scene.pair.a, scene.pair.b
    old_commitment, cheat = signed_local_commitment(alice.secrets, old)
    assert old.local_commit is not None
    node.mine_transactions([cheat], MINER)
    stolen = htlc_second_stage(
        alice.secrets,
        old_commitment,
        old.local_commit.htlc_signatures,
        Direction.RECEIVED,
        scene.to_alice,
        preimage(2),
    )
    result = node.submit_with_cpfp(stolen)
    assert result.ok, result.errors
    node.mine(1, MINER)
    number = revoked_number(bob.state, cheat)
    assert number is not None
    record = bob.revoked[number]
    penalty = build_penalty(
        bob.secrets,
        bob.state,
        record,
        _wallet_script(node),
        FEERATE,
        exclude=frozenset({stolen.inputs[0].prevout}),
        extra=(second_stage_penalty_input(bob.secrets, bob.state, record, stolen),),
    )
    assert OutPoint(stolen.txid, 0) in {txin.prevout for txin in penalty.inputs}
    total_in = sum(o.value for o in spent_outputs(node, penalty))
    assert total_in == AMOUNT  # every satoshi of the channel
    _confirm(node, penalty)


def test_cooperative_close_is_mined_and_pays_the_closer_fee(node: RegtestNode) -> None:
    outpoint, _ = fund(node, funding_script(), AMOUNT)
    pair = make_pair(funding=Funding(outpoint, AMOUNT), height=node.height)
    pair.apply(pair.a, InitiateShutdown(fee_sat=700))
    pair.deliver_all()
    closes = [
        [e for e in side.notices if isinstance(e, BroadcastTransaction)]
        for side in (pair.a, pair.b)
    ]
    assert len(closes[0]) == len(closes[1]) == 1
    tx = closes[0][0].tx
    assert closes[1][0].tx == tx
    assert sorted(o.value for o in tx.outputs) == [400_000, 600_000 - 700]
    _confirm(node, tx)
