"""The LSP closes a real, signed factory alone with the keys it got from turnover.

The factory is funded from the embedded regtest node's wallet and its whole
tree is signed first, as in production; then every client hands over its key
through a real adaptor-signature turnover, and the LSP's lone close is mined
into a block the kernel accepts.
"""

from __future__ import annotations

import hashlib

import pytest

from superscalar.bitcoin.script import p2tr_script
from superscalar.bitcoin.tx import TxOut
from superscalar.chain.node import RegtestNode
from superscalar.crypto.keys import SecretKey
from superscalar.factory import FundingRef, Signer, SigningPlan, run_ceremony
from superscalar.ladder import (
    LadderError,
    TurnoverContext,
    close_with_stayers,
    complete_turnover,
    extract_turnover_key,
    lsp_alone_close,
    missing_keys,
    presign_turnover,
)

from ..factory.helpers import secret
from ..factory.test_chain_exit import FEERATE, LSP_SWEEP, MINER, confirmed, open_factory

NEXT_FACTORY = hashlib.sha256(b"factory 1").digest()


def _turn_over(old_factory: bytes, position: int) -> SecretKey:
    client = secret(position + 1)
    ctx = TurnoverContext(old_factory, NEXT_FACTORY, client.public_key, secret(0).public_key)
    presig = presign_turnover(secret(0), ctx)
    return extract_turnover_key(ctx, presig, complete_turnover(client, ctx, presig))


def test_with_every_turned_over_key_the_lsp_closes_the_factory_alone(node: RegtestNode) -> None:
    signed = open_factory(node, 4)
    scripts = signed.tree.scripts
    old_id = scripts.shape.spec.funding_outpoint.txid
    keys = {pos: _turn_over(old_id, pos) for pos in range(4)}
    close = lsp_alone_close(scripts, secret(0), keys, LSP_SWEEP, FEERATE)
    tx = close.tx
    assert len(tx.outputs) == 1 and tx.outputs[0].script_pubkey == LSP_SWEEP
    assert tx.outputs[0].value + close.fee == close.funding_amount
    assert close.fee == FEERATE.fee_for_vsize(tx.vsize)
    node.send(tx)
    node.mine(1, MINER)
    assert confirmed(node, tx)
    assert node.utxo(scripts.shape.spec.funding_outpoint) is None


def test_a_missing_client_key_blocks_the_lone_close_and_is_named(node: RegtestNode) -> None:
    signed = open_factory(node, 4)
    scripts = signed.tree.scripts
    keys = {pos: secret(pos + 1) for pos in (0, 1, 3)}
    assert missing_keys(scripts, keys) == (2,)
    with pytest.raises(LadderError, match=r"positions \[2\]"):
        lsp_alone_close(scripts, secret(0), keys, LSP_SWEEP, FEERATE)


def test_a_wrong_client_key_counts_as_missing(node: RegtestNode) -> None:
    signed = open_factory(node, 2)
    keys = {0: secret(1), 1: secret(9)}
    with pytest.raises(LadderError, match=r"positions \[1\]"):
        lsp_alone_close(signed.tree.scripts, secret(0), keys, LSP_SWEEP, FEERATE)


def test_a_client_that_stayed_is_paid_its_balance_in_a_close_it_signs_alone(
    node: RegtestNode,
) -> None:
    """Three clients handed over their keys; the fourth stayed and signs for itself."""
    signed = open_factory(node, 4)
    scripts = signed.tree.scripts
    old_id = scripts.shape.spec.funding_outpoint.txid
    held = {pos: _turn_over(old_id, pos) for pos in (0, 1, 3)}
    stayer_out = TxOut(123_457, p2tr_script(secret(3).xonly_public_key))
    close = close_with_stayers(scripts, secret(0), held, {2: stayer_out}, LSP_SWEEP, FEERATE)
    assert close.stayers == (3,)
    stayer = Signer(3, secret(3), [close.spend.session])  # the stayer's own signer
    result = run_ceremony(
        SigningPlan([close.spend.session]), {}, signers={**close.local_signers, 3: stayer}
    )
    tx = close.spend.signed(result.signatures[close.spend.session.id])
    assert tx.outputs[0] == stayer_out
    assert tx.total_out + close.spend.fee == scripts.shape.spec.funding_amount
    node.send(tx)
    node.mine(1, MINER)
    assert confirmed(node, tx)


def test_a_client_neither_moved_nor_paid_blocks_the_stayer_close(node: RegtestNode) -> None:
    signed = open_factory(node, 2)
    with pytest.raises(LadderError, match="must be exactly"):
        close_with_stayers(signed.tree.scripts, secret(0), {0: secret(1)}, {}, LSP_SWEEP, FEERATE)


def test_after_a_kickoff_the_stayer_close_spends_the_kickoff_output(node: RegtestNode) -> None:
    """The root kickoff confirmed (the LSP's defense against the distribution tx): the
    same close, signed under the funding key, spends the kickoff's node output instead."""
    signed = open_factory(node, 4)
    scripts = signed.tree.scripts
    spec = scripts.shape.spec
    kickoff = signed.signed_tx(0)
    assert node.submit_with_cpfp(kickoff, FEERATE).ok
    node.mine(1, MINER)
    held = {pos: _turn_over(spec.funding_outpoint.txid, pos) for pos in (0, 1, 3)}
    stayer_out = TxOut(123_457, p2tr_script(secret(3).xonly_public_key))
    ref = FundingRef(
        kickoff.outpoint(0), kickoff.outputs[0].value, spec.lsp, tuple(c.key for c in spec.clients)
    )
    close = close_with_stayers(scripts, secret(0), held, {2: stayer_out}, LSP_SWEEP, FEERATE, ref)
    stayer = Signer(3, secret(3), [close.spend.session])
    result = run_ceremony(
        SigningPlan([close.spend.session]), {}, signers={**close.local_signers, 3: stayer}
    )
    tx = close.spend.signed(result.signatures[close.spend.session.id])
    assert [i.prevout for i in tx.inputs] == [kickoff.outpoint(0)]
    assert tx.outputs[0] == stayer_out
    assert tx.total_out + close.spend.fee == kickoff.outputs[0].value
    assert close.spend.fee == FEERATE.fee_for_vsize(tx.vsize)
    node.send(tx)
    node.mine(1, MINER)
    assert confirmed(node, tx)
