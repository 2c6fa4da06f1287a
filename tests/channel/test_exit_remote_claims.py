"""A client's exit claims a PTLC whose scalar it revealed from the LSP's commitment, should
that one confirm instead of the client's (`node.exit.remote_claim_steps`), judged by the
kernel: the claim completes the LSP's adaptor signature, the sweep pays the PTLC less the
fees the steps carry to the client's script."""

from __future__ import annotations

from superscalar.chain.consensus import verify_transaction
from superscalar.chain.node import RegtestNode
from superscalar.channel import remote_commitment
from superscalar.ladder.enforce import revealed_claims
from superscalar.node.exit import SWEEP_FEERATE, remote_claim_steps

from ..chain.chain_support import MINER, confirm_with_child, spent_outputs
from .test_ptlc import AMOUNT, SECRET
from .test_ptlc_onchain import _force_close, _scene


def test_the_claim_on_the_lsps_commitment_and_its_sweep_confirm(node: RegtestNode) -> None:
    scene = _scene(node)
    lsp, client = scene.pair.a, scene.pair.b
    assert client.state.local_commit is not None
    spec = client.state.local_commit.spec
    claims = revealed_claims(spec, {spec.received()[0].payment_hash: SECRET.to_bytes()})
    assert [c.htlc_id for c in claims] == [scene.ptlc]
    script = node.wallet.new_script()
    steps = remote_claim_steps(client.secrets, client.state, claims, script)
    theirs = remote_commitment(client.state, latest=False)
    tag = theirs.txid[::-1].hex()
    kinds = [k for k, *_ in steps]
    assert kinds == [f"remote-claim:{tag}:{scene.ptlc}", f"remote-sweep:{tag}"]
    on_chain = _force_close(node, lsp, scene.pair)  # the LSP's commitment, not ours
    assert on_chain.txid == theirs.txid
    (_, claim, _, cpfp), (_, sweep, delay, _) = steps
    assert cpfp and delay == 1
    confirm_with_child(node, claim)
    assert claim.outputs[0].value == AMOUNT // 1000
    verify_transaction(sweep, spent_outputs(node, sweep))
    node.send(sweep)
    node.mine(1, MINER)
    assert node.transaction(sweep.txid) is not None
    # the PTLC (and the client's to_remote beside it) less the sweep's own, explicit fee
    (out,) = sweep.outputs
    assert out.script_pubkey == script
    spent = spent_outputs(node, sweep)
    assert spent[0] == claim.outputs[0]  # the claimed PTLC first
    assert out.value == sum(o.value for o in spent) - SWEEP_FEERATE.fee_for_vsize(sweep.vsize)
