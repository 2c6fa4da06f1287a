"""A channel funded by a factory leaf: the leaf output is exactly the channel's funding output.

The factory's exit path puts the leaf's channel output on chain; the channel
opened on that outpoint force-closes from it, every transaction mined by the
kernel. This is the seam between the factory and channel layers.
"""

from __future__ import annotations

from superscalar.chain.node import RegtestNode
from superscalar.channel import BroadcastTransaction, ChannelSecrets, ForceClose, Funding
from superscalar.channel.scripts import funding_output
from superscalar.factory import (
    ClientSpec,
    DWParams,
    FactoryParams,
    FactorySpec,
    FactoryState,
    FactoryTree,
    LStockSecrets,
    build_shape,
    sign_tree,
    unilateral_exit,
)
from superscalar.factory.outputs import channel_output, timeout_output

from ..chain.chain_support import MINER
from .support import SEEDS, make_pair

CHANNEL_SAT = 1_000_000


def test_factory_channel_output_is_the_channel_funding_output() -> None:
    client, lsp = (ChannelSecrets.from_seed(s).funding.public_key for s in SEEDS)
    assert channel_output(client, lsp).script_pubkey == funding_output(client, lsp).script_pubkey


def test_channel_on_an_exited_factory_leaf_force_closes_on_chain(node: RegtestNode) -> None:
    client, lsp = (ChannelSecrets.from_seed(s).funding for s in SEEDS)
    params = FactoryParams(cltv_timeout=node.height + 500, arity=(1,), dw=DWParams(2, 5))
    funding_amount = CHANNEL_SAT + 600_000
    script = timeout_output(
        [lsp.public_key, client.public_key], lsp.xonly_public_key, params.cltv_timeout
    ).script_pubkey
    funding_tx = node.send_to(script, funding_amount)
    node.mine(1, MINER)
    vout = next(i for i, o in enumerate(funding_tx.outputs) if o.script_pubkey == script)
    spec = FactorySpec(
        lsp.public_key,
        (ClientSpec(client.public_key, CHANNEL_SAT),),
        funding_tx.outpoint(vout),
        funding_amount,
        params,
    )
    shape = build_shape(spec)
    lstock = LStockSecrets(bytes(32))
    tree = FactoryTree.build(shape, FactoryState.initial(shape, [lstock.point(0, 0)]))
    signed = sign_tree(tree, {0: lsp, 1: client})
    path = unilateral_exit(signed, 0)
    for step in path.steps:
        if step.relative_delay:
            node.mine(step.relative_delay - 1, MINER)
        assert node.submit_with_cpfp(step.tx).ok
        node.mine(1, MINER)
    assert path.channel_txout.value == CHANNEL_SAT

    pair = make_pair(
        funding=Funding(path.channel_outpoint, CHANNEL_SAT),
        balances=(600_000_000, 400_000_000),
        height=node.height,
    )
    effects = pair.apply(pair.a, ForceClose()).effects
    (broadcast,) = [e for e in effects if isinstance(e, BroadcastTransaction)]
    assert broadcast.anchor_vout is not None
    result = node.submit_with_cpfp(broadcast.tx)
    assert result.ok, result.errors
    node.mine(1, MINER)
    status = node.transaction(broadcast.tx.txid)
    assert status is not None and status.height == node.height
