"""BOLT-3 key derivation (Appendix E vectors) and the channel's secret bundle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from superscalar.channel.keys import (
    ChannelSecrets,
    CommitmentKeys,
    derive_privkey,
    derive_pubkey,
    derive_revocation_privkey,
    derive_revocation_pubkey,
)
from superscalar.crypto.keys import CURVE_ORDER, PublicKey, SecretKey
from superscalar.crypto.shachain import MAX_INDEX

# BOLT #3 Appendix E (lightning/bolts 03-transactions.md, CC-BY-4.0).
BASE_SECRET = SecretKey.from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
PER_COMMITMENT_SECRET = bytes.fromhex(
    "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
)
BASE_POINT = PublicKey.from_hex(
    "036d6caac248af96f6afa7f904f550253a0f3ef3f5aa2fe6838a95b216691468e2"
)
PER_COMMITMENT_POINT = PublicKey.from_hex(
    "025f7117a78150fe2ef97db7cfc83bd57b2e2c0d0dd25eaf467a4a1c2a45ce1486"
)

scalars = st.integers(min_value=1, max_value=CURVE_ORDER - 1)


def test_appendix_e_points_match_their_secrets() -> None:
    assert BASE_SECRET.public_key == BASE_POINT
    assert SecretKey(PER_COMMITMENT_SECRET).public_key == PER_COMMITMENT_POINT


def test_appendix_e_localpubkey() -> None:
    assert derive_pubkey(BASE_POINT, PER_COMMITMENT_POINT).hex() == (
        "0235f2dbfaa89b57ec7b055afe29849ef7ddfeb1cefdb9ebdc43f5494984db29e5"
    )


def test_appendix_e_localprivkey() -> None:
    assert derive_privkey(BASE_SECRET, PER_COMMITMENT_POINT).hex() == (
        "cbced912d3b21bf196a766651e436aff192362621ce317704ea2f75d87e7be0f"
    )


def test_appendix_e_revocationpubkey() -> None:
    assert derive_revocation_pubkey(BASE_POINT, PER_COMMITMENT_POINT).hex() == (
        "02916e326636d19c33f13e8c0c3a03dd157f332f3e99c317c141dd865eb01f8ff0"
    )


def test_appendix_e_revocationprivkey() -> None:
    assert derive_revocation_privkey(BASE_SECRET, PER_COMMITMENT_SECRET).hex() == (
        "d09ffff62ddb2297ab000cc85bcb4283fdeb6aa052affbc9dddcf33b61078110"
    )


@settings(max_examples=25)
@given(scalars, scalars)
def test_revocation_privkey_signs_for_the_revocation_pubkey(base: int, per_commitment: int) -> None:
    base_key = SecretKey.from_int(base)
    secret = per_commitment.to_bytes(32, "big")
    point = SecretKey(secret).public_key
    assert derive_revocation_privkey(base_key, secret).public_key == derive_revocation_pubkey(
        base_key.public_key, point
    )


@settings(max_examples=25)
@given(scalars, scalars)
def test_derived_privkey_matches_derived_pubkey(base: int, per_commitment: int) -> None:
    base_key = SecretKey.from_int(base)
    point = SecretKey.from_int(per_commitment).public_key
    assert derive_privkey(base_key, point).public_key == derive_pubkey(base_key.public_key, point)


def test_channel_secrets_are_a_function_of_the_seed() -> None:
    a1, a2 = ChannelSecrets.from_seed(b"\x01" * 32), ChannelSecrets.from_seed(b"\x01" * 32)
    b = ChannelSecrets.from_seed(b"\x02" * 32)
    assert a1.basepoints() == a2.basepoints()
    assert a1.basepoints() != b.basepoints()
    keys = a1.basepoints()
    assert len({keys.funding, keys.revocation, keys.payment, keys.delayed_payment, keys.htlc}) == 5


def test_per_commitment_secrets_count_down_the_shachain_index() -> None:
    secrets = ChannelSecrets.from_seed(b"\x03" * 32)
    assert secrets.per_commitment_secret(0) == secrets.shachain.secret(MAX_INDEX)
    assert secrets.per_commitment_secret(5) == secrets.shachain.secret(MAX_INDEX - 5)
    assert secrets.per_commitment_point(5) == SecretKey(secrets.per_commitment_secret(5)).public_key


def test_secrets_never_show_in_repr() -> None:
    secrets = ChannelSecrets.from_seed(b"\x04" * 32)
    assert secrets.funding.hex() not in repr(secrets)


def test_commitment_keys_mirror_between_holder_and_counterparty() -> None:
    a = ChannelSecrets.from_seed(b"\x05" * 32).basepoints()
    b = ChannelSecrets.from_seed(b"\x06" * 32).basepoints()
    point = SecretKey.from_int(77).public_key
    held_by_a = CommitmentKeys.derive(a, b, point)
    assert held_by_a.local_htlc == derive_pubkey(a.htlc, point)
    assert held_by_a.remote_htlc == derive_pubkey(b.htlc, point)
    assert held_by_a.revocation == derive_revocation_pubkey(b.revocation, point)
    assert held_by_a.remote_payment == b.payment
