"""Deterministic participants and factories for the factory tests."""

from __future__ import annotations

import hashlib
from functools import cache

from superscalar.bitcoin.tx import OutPoint
from superscalar.crypto.keys import SecretKey
from superscalar.factory import (
    ClientSpec,
    DWParams,
    FactoryParams,
    FactorySpec,
    FactoryState,
    FactoryTree,
    FeePolicy,
    LStockSecrets,
    Shape,
    SignedTree,
    build_shape,
    sign_tree,
)

CLTV = 1_000
CHANNEL = 100_000
LSTOCK_SEED = bytes(range(32))
FUNDING = OutPoint(hashlib.sha256(b"funding").digest(), 1)


@cache
def secret(participant: int) -> SecretKey:
    """Participant 0 is the LSP, p ≥ 1 is client position p − 1."""
    return SecretKey(hashlib.sha256(b"factory-test-key-%d" % participant).digest())


def keys_for(n_clients: int) -> dict[int, SecretKey]:
    return {p: secret(p) for p in range(n_clients + 1)}


def make_params(
    arity: tuple[int, ...] = (2,),
    states: int = 4,
    step: int = 10,
    anchor: int = 240,
    budget: int = 2016,
    cltv: int = CLTV,
) -> FactoryParams:
    return FactoryParams(
        cltv_timeout=cltv,
        arity=arity,
        dw=DWParams(states, step),
        fees=FeePolicy(anchor_value=anchor),
        exit_delay_budget=budget,
    )


def make_spec(
    n: int,
    params: FactoryParams | None = None,
    channel: int = CHANNEL,
    extra: int = 50_000,
    funding: int | None = None,
) -> FactorySpec:
    """`n` clients with `channel` sat each and about `extra` sat of L-stock per client."""
    params = params or make_params()
    clients = tuple(ClientSpec(secret(p).public_key, channel) for p in range(1, n + 1))
    if funding is None:
        funding = n * (channel + extra) + 8 * n * params.fees.anchor_value
    return FactorySpec(secret(0).public_key, clients, FUNDING, funding, params)


def initial_state(shape: Shape) -> FactoryState:
    secrets = LStockSecrets(LSTOCK_SEED)
    return FactoryState.initial(
        shape, [secrets.point(leaf, 0) for leaf in range(len(shape.leaves))]
    )


def make_tree(n: int, params: FactoryParams | None = None, **kw: int) -> FactoryTree:
    shape = build_shape(make_spec(n, params, **kw))
    return FactoryTree.build(shape, initial_state(shape))


def signed_tree(n: int, params: FactoryParams | None = None) -> SignedTree:
    tree = make_tree(n, params)
    return sign_tree(tree, keys_for(n))
