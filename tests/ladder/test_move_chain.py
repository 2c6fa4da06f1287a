"""A malicious mover on the embedded kernel chain: the moved balance is a PTLC locked to
its factory-0 key, so it cannot be taken without handing that key to the LSP.

Factory 0 is a real, signed factory funded from the regtest wallet (client
keys = their factory-0 keys); each mover's new channel is a funded 2-of-2
opened all on the LSP's side, then the LSP offers the move PTLC planned by
`ladder.move`. A client that withholds its key can neither complete the
LSP's adaptor signature (the kernel refuses the claim) nor keep the PTLC past
its expiry; a client that claims on chain publishes its key, and the LSP
closes factory 0 alone with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from superscalar.chain.consensus import ScriptVerifyError, verify_transaction
from superscalar.chain.kernel import BlockRejectedError
from superscalar.chain.node import RegtestNode
from superscalar.channel import (
    AddHtlc,
    BroadcastTransaction,
    Direction,
    ForceClose,
    FulfillHtlc,
    Funding,
    IncomingHtlcCommitted,
    LoopbackChannel,
    OutgoingHtlcFulfilled,
    local_commitment,
    remote_commitment,
)
from superscalar.channel.htlc import ptlc_payment_hash
from superscalar.channel.onchain import (
    build_sweep,
    claim_remote_htlc_timeout,
    extract_ptlc_secret,
    htlc_second_stage,
)
from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.keys import SecretKey
from superscalar.factory import SignedTree
from superscalar.ladder import check_move_ptlc, lsp_alone_close, plan_move

from ..chain.chain_support import fund, spent_outputs
from ..channel.support import CONFIG, funding_script, make_pair
from ..factory.helpers import secret
from ..factory.test_chain_exit import FEERATE, LSP_SWEEP, MINER, confirmed, open_factory

CAPACITY = 1_000_000
OLD_BALANCE_MSAT = 321_000_123  # the client's balance in factory 0 (msat, not round)


@dataclass
class Move:
    factory0: SignedTree
    pair: LoopbackChannel  # a = LSP, b = the mover
    ptlc: int
    expiry: int


def _offer(node: RegtestNode, factory0: SignedTree, position: int) -> Move:
    """The LSP's new channel with client `position`, and the move PTLC committed in it."""
    outpoint, _ = fund(node, funding_script(), CAPACITY)
    pair = make_pair(
        funding=Funding(outpoint, CAPACITY), balances=(CAPACITY * 1000, 0), height=node.height
    )
    point = secret(position + 1).public_key  # the client's factory-0 key
    plan = plan_move(
        OLD_BALANCE_MSAT,
        CAPACITY,
        CONFIG,
        point,
        height=node.height,
        old_timeout=factory0.tree.shape.spec.params.cltv_timeout,
    )
    pair.apply(
        pair.a, AddHtlc(plan.amount_msat, ptlc_payment_hash(point), plan.cltv_expiry, point=point)
    )
    pair.settle()
    (incoming,) = [e for e in pair.b.notices if isinstance(e, IncomingHtlcCommitted)]
    return Move(factory0, pair, incoming.htlc.id, plan.cltv_expiry)


def _client_force_closes(node: RegtestNode, move: Move) -> None:
    transition = move.pair.apply(move.pair.b, ForceClose())
    (broadcast,) = [e for e in transition.effects if isinstance(e, BroadcastTransaction)]
    assert node.submit_with_cpfp(broadcast.tx).ok
    node.mine(1, MINER)


def test_a_client_withholding_its_key_cannot_claim_and_the_lsp_times_the_move_out(
    node: RegtestNode,
) -> None:
    factory0 = open_factory(node, 2, cltv_in=60)
    move = _offer(node, factory0, 0)
    client = move.pair.b
    _client_force_closes(node, move)
    commitment = local_commitment(client.state)
    lc = client.state.local_commit
    assert lc is not None
    # the best it can do without its key: the LSP's pre-signature as it is
    honest = htlc_second_stage(
        client.secrets,
        commitment,
        lc.htlc_signatures,
        Direction.RECEIVED,
        move.ptlc,
        secret(1).to_bytes(),
    )
    presig = AdaptorSignature.from_bytes(lc.htlc_signatures[0])
    forged = honest.with_witness(
        0, (presig.nonce.data[1:] + presig.s.to_bytes(32, "big"), *honest.inputs[0].witness[1:])
    )
    with pytest.raises(ScriptVerifyError):
        verify_transaction(forged, spent_outputs(node, forged))
    with pytest.raises(BlockRejectedError):
        node.mine_transactions([forged], MINER)
    # after the expiry the LSP takes the moved amount back from the client's commitment
    theirs = remote_commitment(move.pair.a.state, latest=False)
    reclaim = build_sweep(
        [claim_remote_htlc_timeout(move.pair.a.secrets, theirs, move.ptlc)], LSP_SWEEP, FEERATE
    )
    node.mine(move.expiry - 1 - node.height, MINER)
    with pytest.raises(BlockRejectedError):
        node.mine_transactions([reclaim], MINER)
    node.mine(1, MINER)
    verify_transaction(reclaim, spent_outputs(node, reclaim))
    node.send(reclaim)
    node.mine(1, MINER)
    assert confirmed(node, reclaim)
    assert reclaim.outputs[0].value == OLD_BALANCE_MSAT // 1000 - FEERATE.fee_for_vsize(
        reclaim.vsize
    )
    # the move expired before factory 0 did: its funding is untouched, the client stays there
    assert move.expiry < factory0.tree.shape.spec.params.cltv_timeout
    assert node.utxo(factory0.tree.shape.spec.funding_outpoint) is not None


def test_a_client_claiming_on_chain_hands_the_lsp_its_key_and_factory_0_closes_alone(
    node: RegtestNode,
) -> None:
    factory0 = open_factory(node, 2, cltv_in=60)
    cheat, honest = _offer(node, factory0, 0), _offer(node, factory0, 1)
    # client 1 moves off-chain: its fulfil carries its key
    scalar = check_move_ptlc(
        honest.pair.b.state.local_commit.spec.received()[0],  # type: ignore[union-attr]
        expected_msat=OLD_BALANCE_MSAT,
        key=secret(2),
        height=node.height,
        min_cltv_delta=CONFIG.min_cltv_delta,
        old_timeout=factory0.tree.shape.spec.params.cltv_timeout,
        new_exit_delay=0,  # the new channel here is funded on chain directly: no tree to exit
    )
    honest.pair.apply(honest.pair.b, FulfillHtlc(honest.ptlc, scalar))
    honest.pair.settle()
    (done,) = [e for e in honest.pair.a.notices if isinstance(e, OutgoingHtlcFulfilled)]
    # client 0 goes on chain instead, completing the LSP's adaptor signature
    _client_force_closes(node, cheat)
    client = cheat.pair.b
    lc = client.state.local_commit
    assert lc is not None
    success = htlc_second_stage(
        client.secrets,
        local_commitment(client.state),
        lc.htlc_signatures,
        Direction.RECEIVED,
        cheat.ptlc,
        secret(1).to_bytes(),
    )
    assert node.submit_with_cpfp(success).ok
    node.mine(1, MINER)
    assert confirmed(node, success)
    lsp = cheat.pair.a
    key0 = extract_ptlc_secret(
        lsp.secrets, remote_commitment(lsp.state, latest=False), cheat.ptlc, success
    )
    assert key0.public_key == secret(1).public_key
    keys = {0: key0, 1: SecretKey(done.preimage)}
    close = lsp_alone_close(factory0.tree.scripts, secret(0), keys, LSP_SWEEP, FEERATE)
    node.send(close.tx)
    node.mine(1, MINER)
    assert confirmed(node, close.tx)
    assert close.tx.outputs[0].value + close.fee == factory0.tree.shape.spec.funding_amount
