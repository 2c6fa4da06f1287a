"""PTLCs on the embedded regtest chain, judged by Bitcoin Core's kernel.

The receiver gets a PTLC on chain only by completing the offerer's adaptor
signature with the scalar, from either commitment, and the offerer reads the
scalar back from the confirmed witness; after the expiry the offerer takes
the PTLC back; a revoked commitment holding a PTLC is swept by the penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from superscalar.bitcoin.fees import Feerate
from superscalar.bitcoin.tx import OutPoint
from superscalar.chain.consensus import ScriptVerifyError, verify_transaction
from superscalar.chain.kernel import BlockRejectedError
from superscalar.chain.node import RegtestNode
from superscalar.channel import (
    AddHtlc,
    BroadcastTransaction,
    Commitment,
    Direction,
    ForceClose,
    Funding,
    LoopbackChannel,
    Side,
    local_commitment,
    remote_commitment,
    signed_local_commitment,
)
from superscalar.channel.errors import BadPreimageError
from superscalar.channel.htlc import ptlc_payment_hash
from superscalar.channel.onchain import (
    build_sweep,
    claim_remote_htlc_timeout,
    claim_remote_ptlc,
    extract_ptlc_secret,
    htlc_second_stage,
    sweep_to_remote,
)
from superscalar.channel.penalty import build_penalty, revoked_number
from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.keys import SecretKey

from ..chain.chain_support import MINER, confirm_with_child, fund, spent_outputs
from .support import add_committed, funding_script, make_pair
from .test_ptlc import AMOUNT, POINT, SECRET

FEERATE = Feerate.from_sat_per_vb(2)
CAPACITY = 1_000_000


@dataclass
class Scene:
    pair: LoopbackChannel
    ptlc: int  # alice offered it to bob, locked to POINT
    expiry: int


def _scene(node: RegtestNode) -> Scene:
    outpoint, _ = fund(node, funding_script(), CAPACITY)
    pair = make_pair(funding=Funding(outpoint, CAPACITY), height=node.height)
    expiry = node.height + 30
    pair.apply(pair.a, AddHtlc(AMOUNT, ptlc_payment_hash(POINT), expiry, point=POINT))
    pair.settle()
    ptlc = pair.b.state.local_commit.spec.received()[0].id  # type: ignore[union-attr]
    return Scene(pair, ptlc, expiry)


def _force_close(node: RegtestNode, side: Side, pair: LoopbackChannel) -> Commitment:
    transition = pair.apply(side, ForceClose())
    (broadcast,) = [e for e in transition.effects if isinstance(e, BroadcastTransaction)]
    confirm_with_child(node, broadcast.tx)
    return local_commitment(side.state)


def test_receiver_claims_on_its_commitment_by_completing_the_adaptor_sig_and_offerer_extracts(
    node: RegtestNode,
) -> None:
    scene = _scene(node)
    alice, bob = scene.pair.a, scene.pair.b
    theirs_seen_by_alice = remote_commitment(alice.state)
    commitment = _force_close(node, bob, scene.pair)
    assert commitment.txid == theirs_seen_by_alice.txid
    lc = bob.state.local_commit
    assert lc is not None
    success = htlc_second_stage(
        bob.secrets,
        commitment,
        lc.htlc_signatures,
        Direction.RECEIVED,
        scene.ptlc,
        SECRET.to_bytes(),
    )
    confirm_with_child(node, success)
    assert success.outputs[0].value == AMOUNT // 1000
    found = extract_ptlc_secret(alice.secrets, theirs_seen_by_alice, scene.ptlc, success)
    assert found.to_bytes() == SECRET.to_bytes() and found.public_key == POINT


def test_the_kernel_refuses_a_ptlc_success_without_the_completed_adaptor_sig(
    node: RegtestNode,
) -> None:
    scene = _scene(node)
    bob = scene.pair.b
    commitment = _force_close(node, bob, scene.pair)
    lc = bob.state.local_commit
    assert lc is not None
    (presig,) = lc.htlc_signatures
    # pretend the scalar is some other key: the completed signature is then invalid
    wrong = htlc_second_stage(
        bob.secrets,
        commitment,
        lc.htlc_signatures,
        Direction.RECEIVED,
        scene.ptlc,
        SECRET.to_bytes(),
    )
    raw = AdaptorSignature.from_bytes(presig)
    unadapted = raw.nonce.data[1:] + raw.s.to_bytes(32, "big")
    witness = (unadapted, *wrong.inputs[0].witness[1:])
    tx = wrong.with_witness(0, witness)
    with pytest.raises(ScriptVerifyError):
        verify_transaction(tx, spent_outputs(node, tx))
    height = node.height
    with pytest.raises(BlockRejectedError):
        node.mine_transactions([tx], MINER)
    assert node.height == height


def test_receiver_claims_on_the_offerers_commitment_and_the_offerer_extracts_the_scalar(
    node: RegtestNode,
) -> None:
    scene = _scene(node)
    alice, bob = scene.pair.a, scene.pair.b
    ours = _force_close(node, alice, scene.pair)
    theirs = remote_commitment(bob.state, latest=False)
    assert theirs.txid == ours.txid
    claim = claim_remote_ptlc(
        bob.secrets,
        theirs,
        scene.ptlc,
        SECRET.to_bytes(),
        bob.state.remote_commit.ptlc_claim_signatures,
    )
    confirm_with_child(node, claim)
    found = extract_ptlc_secret(alice.secrets, ours, scene.ptlc, claim)
    assert found.public_key == POINT
    # the claimed value sits in bob's static to_remote script: bob sweeps it
    spend = sweep_to_remote(bob.secrets, theirs)
    moved = build_sweep(
        [
            spend.__class__(
                OutPoint(claim.txid, 0), claim.outputs[0], 1, spend.key, spend.spend, spend.leaf
            )
        ],
        node.wallet.new_script(),
        FEERATE,
    )
    verify_transaction(moved, spent_outputs(node, moved))
    node.send(moved)
    node.mine(1, MINER)
    assert node.transaction(moved.txid) is not None


def test_the_kernel_refuses_the_claim_without_the_completed_adaptor_sig(node: RegtestNode) -> None:
    scene = _scene(node)
    bob = scene.pair.b
    _force_close(node, scene.pair.a, scene.pair)
    theirs = remote_commitment(bob.state, latest=False)
    claim = claim_remote_ptlc(
        bob.secrets,
        theirs,
        scene.ptlc,
        SECRET.to_bytes(),
        bob.state.remote_commit.ptlc_claim_signatures,
    )
    raw = AdaptorSignature.from_bytes(bob.state.remote_commit.ptlc_claim_signatures[0])
    witness = list(claim.inputs[0].witness)
    witness[1] = raw.nonce.data[1:] + raw.s.to_bytes(32, "big")
    tx = claim.with_witness(0, witness)
    with pytest.raises(ScriptVerifyError):
        verify_transaction(tx, spent_outputs(node, tx))
    with pytest.raises(BlockRejectedError):
        node.mine_transactions([tx], MINER)


def test_a_wrong_scalar_builds_no_claim(node: RegtestNode) -> None:
    scene = _scene(node)
    bob = scene.pair.b
    _force_close(node, scene.pair.a, scene.pair)
    theirs = remote_commitment(bob.state, latest=False)
    with pytest.raises(BadPreimageError):
        claim_remote_ptlc(
            bob.secrets,
            theirs,
            scene.ptlc,
            SecretKey.from_int(5).to_bytes(),
            bob.state.remote_commit.ptlc_claim_signatures,
        )


def test_the_offerer_times_the_ptlc_out_on_its_commitment_after_the_expiry(
    node: RegtestNode,
) -> None:
    scene = _scene(node)
    alice = scene.pair.a
    commitment = _force_close(node, alice, scene.pair)
    lc = alice.state.local_commit
    assert lc is not None
    timeout = htlc_second_stage(
        alice.secrets, commitment, lc.htlc_signatures, Direction.OFFERED, scene.ptlc
    )
    assert timeout.locktime == scene.expiry
    node.mine(scene.expiry - 1 - node.height, MINER)
    with pytest.raises(BlockRejectedError):
        node.mine_transactions([timeout], MINER)
    node.mine(1, MINER)
    confirm_with_child(node, timeout)
    with pytest.raises(BadPreimageError):
        extract_ptlc_secret(alice.secrets, commitment, scene.ptlc, timeout)


def test_the_offerer_takes_the_ptlc_back_from_the_receivers_commitment_after_expiry(
    node: RegtestNode,
) -> None:
    scene = _scene(node)
    alice = scene.pair.a
    _force_close(node, scene.pair.b, scene.pair)
    theirs = remote_commitment(alice.state, latest=False)
    reclaim = build_sweep(
        [claim_remote_htlc_timeout(alice.secrets, theirs, scene.ptlc)],
        node.wallet.new_script(),
        FEERATE,
    )
    node.mine(scene.expiry - 1 - node.height, MINER)
    with pytest.raises(BlockRejectedError):
        node.mine_transactions([reclaim], MINER)
    node.mine(1, MINER)
    verify_transaction(reclaim, spent_outputs(node, reclaim))
    node.send(reclaim)
    node.mine(1, MINER)
    assert reclaim.outputs[0].value == AMOUNT // 1000 - FEERATE.fee_for_vsize(reclaim.vsize)


def test_a_revoked_commitment_holding_a_ptlc_is_swept_by_the_penalty(node: RegtestNode) -> None:
    scene = _scene(node)
    alice, bob = scene.pair.a, scene.pair.b
    old = alice.state
    add_committed(scene.pair, alice, 1_000_000, 4, scene.expiry)  # revokes `old`
    _, cheat = signed_local_commitment(alice.secrets, old)
    verify_transaction(cheat, spent_outputs(node, cheat))
    node.mine_transactions([cheat], MINER)
    number = revoked_number(bob.state, cheat)
    assert number is not None
    penalty = build_penalty(
        bob.secrets, bob.state, bob.revoked[number], node.wallet.new_script(), FEERATE
    )
    swept = {txin.prevout for txin in penalty.inputs}
    valued = [
        vout for vout, out in enumerate(cheat.outputs) if out.value > 0
    ]  # not the 0-sat anchor
    assert len(valued) == 3  # to_local, to_remote and the PTLC
    assert swept == {OutPoint(cheat.txid, vout) for vout in valued}
    assert penalty.outputs[0].value == CAPACITY - FEERATE.fee_for_vsize(penalty.vsize)
    verify_transaction(penalty, spent_outputs(node, penalty))
    node.send(penalty)
    node.mine(1, MINER)
    assert node.transaction(penalty.txid) is not None
