"""Signing plans, sparse bundles, the ceremony driver, blame, and consensus validity."""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.chain.consensus import verify_transaction
from superscalar.crypto.musig import PartialSignature
from superscalar.factory import (
    AggNonceBundle,
    BundleError,
    Coordinator,
    LStockSecrets,
    NonceBundle,
    PartialSigBundle,
    SignatureBundle,
    SignedTree,
    Signer,
    SigningError,
    SigningPlan,
    run_ceremony,
    sign_tree,
)

from .helpers import LSTOCK_SEED, keys_for, make_params, make_tree, secret


def _signer(plan: SigningPlan, p: int) -> Signer:
    return Signer(p, secret(p), [plan.session(i) for i in plan.sessions_for(p)])


@pytest.mark.parametrize(
    ("n", "arity"), [(1, (1,)), (4, (2,)), (7, (2, 3)), (6, (1, 2, 3))], ids=str
)
def test_ceremony_signs_every_tree_tx_valid_by_consensus(n: int, arity: tuple[int, ...]) -> None:
    tree = make_tree(n, make_params(arity=arity))
    signed = sign_tree(tree, keys_for(n))
    signed.verify()
    for i, t in enumerate(tree.txs):
        verify_transaction(signed.signed_tx(i), [t.spent])


def test_signature_for_another_tx_fails_consensus() -> None:
    tree = make_tree(2)
    signed = sign_tree(tree, keys_for(2))
    swapped = tree.txs[1].tx.with_witness(0, (signed.signatures[0],))
    with pytest.raises(ValueError):
        verify_transaction(swapped, [tree.txs[1].spent])


def test_tampered_partial_signature_is_blamed_on_its_signer_and_session() -> None:
    tree = make_tree(4)
    plan = SigningPlan.for_tree(tree)

    def tamper(bundle: PartialSigBundle) -> PartialSigBundle:
        if bundle.signer != 3:
            return bundle
        sid, psig = bundle.entries[1]
        bad = PartialSignature((int.from_bytes(psig.data, "big") + 1).to_bytes(32, "big"))
        entries = list(bundle.entries)
        entries[1] = (sid, bad)
        return replace(bundle, entries=tuple(entries))

    with pytest.raises(SigningError) as info:
        run_ceremony(plan, keys_for(4), tamper=tamper)
    assert info.value.signer == 3
    assert info.value.session == plan.sessions_for(3)[1]


def test_client_bundles_cover_exactly_the_txs_on_their_path() -> None:
    tree = make_tree(16)
    plan = SigningPlan.for_tree(tree)
    for client in range(16):
        path = tree.shape.client_txs(client)
        assert plan.sessions_for(client + 1) == tuple(sorted(path))
        depth = tree.shape.node_of_client(client).depth
        assert len(path) == 2 * (depth + 1)
    assert plan.sessions_for(0) == tuple(range(len(tree.txs)))


def test_bundle_sizes_grow_as_n_log_n_not_n_times_nodes() -> None:
    totals = {}
    for n in (16, 64, 256):
        plan = SigningPlan.for_tree(make_tree(n))
        entries = sum(len(plan.sessions_for(p)) for p in plan.participants)
        totals[n] = entries
        dense = (n + 1) * len(plan)
        assert entries <= 3 * n * math.log2(n)
        if n >= 64:
            assert entries < dense / 8
    # Quadrupling N multiplies the total by about 4·(log 4N / log N), never 16.
    assert totals[256] / totals[64] < 6


def test_nonce_bundle_missing_a_session_is_refused() -> None:
    tree = make_tree(4)
    plan = SigningPlan.for_tree(tree)
    bundle = _signer(plan, 1).nonces()
    short = NonceBundle(1, bundle.entries[:-1])
    with pytest.raises(BundleError, match="missing") as info:
        Coordinator(plan).add_nonces(short)
    assert info.value.signer == 1


def test_nonce_bundle_with_an_extra_session_is_refused() -> None:
    tree = make_tree(4)
    plan = SigningPlan.for_tree(tree)
    lsp_nonces = _signer(plan, 0).nonces().as_dict()
    mine = _signer(plan, 1).nonces().as_dict()
    extra = next(i for i in plan.sessions_for(0) if i not in mine)
    mine[extra] = lsp_nonces[extra]
    with pytest.raises(BundleError, match="unexpected"):
        Coordinator(plan).add_nonces(NonceBundle(1, tuple(sorted(mine.items()))))


def test_duplicate_nonce_bundle_is_refused() -> None:
    plan = SigningPlan.for_tree(make_tree(2))
    coordinator = Coordinator(plan)
    bundle = _signer(plan, 1).nonces()
    coordinator.add_nonces(bundle)
    with pytest.raises(BundleError, match="already"):
        coordinator.add_nonces(bundle)


def test_partial_signatures_before_the_nonce_round_are_refused() -> None:
    plan = SigningPlan.for_tree(make_tree(2))
    with pytest.raises(BundleError, match="before"):
        Coordinator(plan).add_partial_sigs(PartialSigBundle(1, ()))


def test_signer_generates_nonces_only_once() -> None:
    plan = SigningPlan.for_tree(make_tree(2))
    signer = _signer(plan, 1)
    signer.nonces()
    with pytest.raises(SigningError, match="already"):
        signer.nonces()


def test_signer_refuses_aggregate_nonces_addressed_to_someone_else() -> None:
    plan = SigningPlan.for_tree(make_tree(2))
    signers = {p: _signer(plan, p) for p in plan.participants}
    coordinator = Coordinator(plan)
    for s in signers.values():
        coordinator.add_nonces(s.nonces())
    aggs = coordinator.aggregate_nonces()
    with pytest.raises(BundleError):
        signers[1].sign(aggs[2])


def test_signer_with_a_key_not_in_the_session_is_refused() -> None:
    plan = SigningPlan.for_tree(make_tree(2))
    with pytest.raises(SigningError, match="does not match"):
        Signer(1, secret(2), [plan.session(i) for i in plan.sessions_for(1)])


def test_bundle_encoding_round_trips() -> None:
    tree = make_tree(4)
    plan = SigningPlan.for_tree(tree)
    result = run_ceremony(plan, keys_for(4))
    signer = _signer(plan, 2)
    nonces = signer.nonces()
    assert NonceBundle.from_bytes(nonces.to_bytes()) == nonces
    sigs = SignatureBundle(2, tuple((i, result.signatures[i]) for i in plan.sessions_for(2)))
    assert SignatureBundle.from_bytes(sigs.to_bytes()) == sigs
    assert len(nonces.to_bytes()) == 2 + len(nonces.entries) * (1 + 66)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_malformed_bundle_bytes_raise_bundle_error_only(data: bytes) -> None:
    for cls in (NonceBundle, AggNonceBundle, PartialSigBundle, SignatureBundle):
        with contextlib.suppress(BundleError):
            cls.from_bytes(data)


def test_bundle_with_trailing_bytes_is_refused() -> None:
    plan = SigningPlan.for_tree(make_tree(2))
    raw = _signer(plan, 1).nonces().to_bytes()
    with pytest.raises(BundleError, match="trailing"):
        NonceBundle.from_bytes(raw + b"\x00")


def test_per_leaf_advance_is_signed_by_the_leaf_alone_and_valid_by_consensus() -> None:
    tree = make_tree(8)
    signed = sign_tree(tree, keys_for(8))
    adv = tree.state.odometer.advance_leaf(tree.shape, 3)
    secrets = LStockSecrets(LSTOCK_SEED)
    points = [secrets.point(leaf, g) for leaf, g in enumerate(adv.after.generations)]
    new_tree = tree.with_state(tree.state.advanced(adv, points))
    plan = SigningPlan.for_tree(new_tree, adv.resign_txs)
    assert plan.participants == (0, 7, 8)
    result = run_ceremony(plan, {p: secret(p) for p in plan.participants})
    new_signed = signed.updated(new_tree, result.signatures)
    new_signed.verify()
    for i in tree.shape.client_txs(6):
        verify_transaction(new_signed.signed_tx(i), [new_tree.txs[i].spent])


def test_updated_tree_refuses_a_changed_tx_without_a_new_signature() -> None:
    tree = make_tree(4)
    signed = sign_tree(tree, keys_for(4))
    adv = tree.state.odometer.advance_leaf(tree.shape, 0)
    new_tree = tree.with_state(tree.state.advanced(adv, tree.state.lstock_points))
    with pytest.raises(SigningError, match="not re-signed"):
        signed.updated(new_tree, {})


def test_signed_tree_with_a_wrong_signature_fails_verify() -> None:
    tree = make_tree(2)
    signed = sign_tree(tree, keys_for(2))
    bad = SignedTree(tree, (signed.signatures[1], *signed.signatures[1:]))
    with pytest.raises(SigningError) as info:
        bad.verify()
    assert info.value.session == 0


def test_bundle_claiming_another_signer_than_its_sender_is_refused() -> None:
    plan = SigningPlan.for_tree(make_tree(2))
    with pytest.raises(BundleError) as info:
        Coordinator(plan).add_nonces(_signer(plan, 1).nonces(), sender=2)
    assert info.value.signer == 2
