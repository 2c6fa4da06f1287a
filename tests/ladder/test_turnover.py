"""Key turnover as one adaptor-signed message, and the per-factory keys it hands over.

The daemons hand the key over by the move PTLC (tests/ladder/test_move*.py,
tests/channel/test_ptlc*.py); these are the primitives around it."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from superscalar.crypto.adaptor import AdaptorSignature
from superscalar.crypto.keys import CURVE_ORDER, SecretKey
from superscalar.ladder import (
    TurnoverContext,
    TurnoverError,
    complete_turnover,
    extract_turnover_key,
    factory_key,
    presign_turnover,
)

OLD, NEW = hashlib.sha256(b"f0").digest(), hashlib.sha256(b"f1").digest()
LSP = SecretKey(hashlib.sha256(b"lsp").digest())
NODE = SecretKey(hashlib.sha256(b"alice-node").digest())


def _odd_key() -> SecretKey:
    """A factory key whose public point has odd y (the BIP340 negation case)."""
    rung = 0
    while factory_key(NODE, rung).public_key.has_even_y:
        rung += 1
    return factory_key(NODE, rung)


CLIENT = factory_key(NODE, 0)


def ctx(client: SecretKey = CLIENT) -> TurnoverContext:
    return TurnoverContext(OLD, NEW, client.public_key, LSP.public_key)


@pytest.mark.parametrize("client", [CLIENT, _odd_key()], ids=["first-rung", "odd-y-key"])
def test_completed_presignature_reveals_exactly_the_client_factory_key(client: SecretKey) -> None:
    c = ctx(client)
    presig = presign_turnover(LSP, c)
    sig = complete_turnover(client, c, presig)
    assert extract_turnover_key(c, presig, sig) == client


def test_factory_keys_differ_per_rung_and_from_the_node_key() -> None:
    keys = {factory_key(NODE, r).to_bytes() for r in range(4)}
    assert len(keys) == 4
    assert NODE.to_bytes() not in keys


def test_a_tampered_presignature_is_refused_by_the_client() -> None:
    c = ctx()
    presig = presign_turnover(LSP, c)
    bad = AdaptorSignature(presig.nonce, (presig.s + 1) % CURVE_ORDER)
    with pytest.raises(TurnoverError, match="does not verify"):
        complete_turnover(CLIENT, c, bad)


def test_a_presignature_for_another_factory_pair_is_refused() -> None:
    presig = presign_turnover(LSP, ctx())
    other = replace(ctx(), new_factory=hashlib.sha256(b"f9").digest())
    with pytest.raises(TurnoverError, match="does not verify"):
        complete_turnover(CLIENT, other, presig)


def test_a_completion_with_the_wrong_key_is_refused_by_the_lsp() -> None:
    c = ctx()
    presig = presign_turnover(LSP, c)
    wrong = factory_key(NODE, 1)
    forged = presig.nonce.data[1:] + (
        (presig.s + presig.sign * wrong.to_int()) % CURVE_ORDER
    ).to_bytes(32, "big")
    with pytest.raises(TurnoverError):
        extract_turnover_key(c, presig, forged)


def test_the_lsp_cannot_presign_with_a_key_other_than_its_own() -> None:
    with pytest.raises(TurnoverError):
        presign_turnover(CLIENT, ctx())


def test_a_turnover_to_the_same_factory_is_refused() -> None:
    with pytest.raises(TurnoverError):
        TurnoverContext(OLD, OLD, CLIENT.public_key, LSP.public_key)
