"""The LSP's claim when a payer sitting on a fulfilled HTLC publishes ITS commitment
(issue 14, attack 10): the HTLC the payer offered is taken straight from that commitment
with the preimage, judged by the kernel on the embedded regtest chain."""

from __future__ import annotations

from superscalar.bitcoin.fees import Feerate
from superscalar.chain.consensus import verify_transaction
from superscalar.chain.node import RegtestNode
from superscalar.channel import FulfillHtlc, Funding, SignCommitment, signed_local_commitment
from superscalar.node.enforce import Claimable, remote_claims

from ..chain.chain_support import MINER, confirm_with_child, fund, spent_outputs
from ..chain.conftest import node
from ..channel.support import add_committed, funding_script, make_pair, preimage

__all__ = ["node"]

AMOUNT = 1_000_000
HTLC_MSAT = 40_000_000


def test_the_payers_own_commitment_is_claimed_with_the_preimage(node: RegtestNode) -> None:
    outpoint, _ = fund(node, funding_script(), AMOUNT)
    pair = make_pair(funding=Funding(outpoint, AMOUNT), height=node.height)
    payer, lsp = pair.a, pair.b
    expiry = node.height + 30
    htlc_id = add_committed(pair, payer, HTLC_MSAT, 1, expiry)
    # the LSP fulfils (the payee paid it) and signs; the payer takes none of it
    pair.apply(lsp, FulfillHtlc(htlc_id, preimage(1)))
    pair.apply(lsp, SignCommitment())
    payer.inbox.clear()
    dest = node.wallet.new_script()
    claims = {htlc_id: Claimable(htlc_id, HTLC_MSAT, expiry, preimage(1))}
    alts = remote_claims(lsp.secrets, lsp.state, claims, dest)
    # the payer's current commitment holds the HTLC; the one we signed after it does not
    _, theirs = signed_local_commitment(payer.secrets, payer.state)
    (alt,) = alts
    kind, claim, delay, cpfp, amount = alt
    assert kind == f"alt-claim:{theirs.txid_hex}" and amount == HTLC_MSAT
    assert (delay, cpfp) == (1, False)
    confirm_with_child(node, theirs)  # the payer goes on chain with its commitment
    assert {i.prevout.txid for i in claim.inputs} == {theirs.txid}
    htlc_vout = next(i for i, o in enumerate(theirs.outputs) if o.value == HTLC_MSAT // 1000)
    assert theirs.outpoint(htlc_vout) in {i.prevout for i in claim.inputs}
    verify_transaction(claim, spent_outputs(node, claim))
    node.send(claim)
    node.mine(1, MINER)
    status = node.transaction(claim.txid)
    assert status is not None and status.height == node.height
    (out,) = claim.outputs
    fee = Feerate.from_sat_per_vb(2).fee_for_vsize(claim.vsize)
    to_remote = sum(theirs.outputs[i.prevout.vout].value for i in claim.inputs) - HTLC_MSAT // 1000
    assert out.value == HTLC_MSAT // 1000 + to_remote - fee
    assert out.script_pubkey == dest  # the HTLC (and our to_remote), less an explicit fee
