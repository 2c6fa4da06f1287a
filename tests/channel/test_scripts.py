"""Taproot output scripts, checked against the simple-taproot-channel script vectors.

Vectors: lightning/bolts bolt-simple-taproot.md ("Test Vectors", commit
02adc05ccd10ca55840fa4d7e31ec8bfbe9ee4b1, CC-BY-4.0). Our HTLC, second-stage
and leaf scripts are that design's; our to_local (revocation key path) and
to_remote (BIP341 NUMS) internal keys differ, so only their leaves are compared.
"""

from __future__ import annotations

import hashlib

from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.channel.keys import derive_pubkey, derive_revocation_pubkey
from superscalar.channel.scripts import (
    NUMS_KEY,
    delayed_leaf,
    funding_output,
    offered_htlc_output,
    offered_success_leaf,
    offered_timeout_leaf,
    received_htlc_output,
    received_success_leaf,
    received_timeout_leaf,
    second_stage_output,
    to_remote_leaf,
)
from superscalar.crypto.hashes import sha256
from superscalar.crypto.keys import PublicKey, SecretKey
from superscalar.crypto.musig import aggregate_keys, sort_keys

PER_COMMIT_POINT = PublicKey.from_hex(
    "02a0f5a09017c1dec2d30dd54a25dc4037fc5a2aa3832ee3c7b58f3a88a0836287"
)
LOCAL_DELAYED_BASEPOINT = PublicKey.from_hex(
    "02ae68d8ff4c59864c03a42bbff6c07f9ae18047e0daa9bc40d07c410f9a0f7899"
)
REMOTE_REVOCATION_BASEPOINT = PublicKey.from_hex(
    "02c354121ef71922b5cb32fa685c08ac0014b558f96e28f383c45eb28b7da264c3"
)
LOCAL_HTLC_BASEPOINT = PublicKey.from_hex(
    "033ce88bf3c8333e242996964ac91ee7cd945bfe4c49668ea10f3211f3d418fbc8"
)
REMOTE_HTLC_BASEPOINT = PublicKey.from_hex(
    "02932dfbf6737001e3c516696ae3dcd323fd91a01ce7898f7f91ab98eebacc323e"
)
REMOTE_PAYMENT = PublicKey.from_hex(
    "03595f2ef2a51d2250a21077dbea4a7fc3ce550f10676996bf63719e2a71d1f4c9"
)
DELAYED = PublicKey.from_hex("0315ec0138eb42f1ab4603042123988d53c854e89d1d87aa4dbb97a57482029c05")
REVOCATION = PublicKey.from_hex(
    "03d4c77088d346bce67c13bbbf82ca112588f4b1c9595a1f8af3be9b2f95a109a0"
)
HTLC_71E8 = PublicKey.from_hex("0271e82ef65d5c667159036bfcf662cac2f6c41e38323d148bbbd00fdcd923739e")
HTLC_2DEB = PublicKey.from_hex("032deba21cf03c42362c9f912094f62ba045a040a2060882ba1ed3abf1f664a47d")
PAYMENT_HASH = sha256(bytes(32))  # the vectors' first HTLC, preimage 00..00
CSV = 144

HASH_LOCK = "82012088a914b8bcb07f6344b42ab04250c86a6e8b75d3fdbbc688"
X71E8 = "2071e82ef65d5c667159036bfcf662cac2f6c41e38323d148bbbd00fdcd923739e"
X2DEB = "202deba21cf03c42362c9f912094f62ba045a040a2060882ba1ed3abf1f664a47d"


def test_vector_keys_derive_as_bolt3_says() -> None:
    assert derive_pubkey(LOCAL_DELAYED_BASEPOINT, PER_COMMIT_POINT) == DELAYED
    assert derive_revocation_pubkey(REMOTE_REVOCATION_BASEPOINT, PER_COMMIT_POINT) == REVOCATION
    assert derive_pubkey(LOCAL_HTLC_BASEPOINT, PER_COMMIT_POINT) == HTLC_71E8
    assert derive_pubkey(REMOTE_HTLC_BASEPOINT, PER_COMMIT_POINT) == HTLC_2DEB


def test_delayed_leaf_matches_the_to_local_settle_vector() -> None:
    assert delayed_leaf(DELAYED, CSV).hex() == (
        "2015ec0138eb42f1ab4603042123988d53c854e89d1d87aa4dbb97a57482029c05ad029000b2"
    )


def test_to_remote_leaf_matches_the_vector() -> None:
    assert to_remote_leaf(REMOTE_PAYMENT).hex() == (
        "20595f2ef2a51d2250a21077dbea4a7fc3ce550f10676996bf63719e2a71d1f4c9ad51b2"
    )


def test_offered_htlc_leaves_match_the_vectors() -> None:
    assert offered_timeout_leaf(HTLC_71E8, HTLC_2DEB).hex() == f"{X71E8}ad{X2DEB}ac"
    assert offered_success_leaf(PAYMENT_HASH, HTLC_2DEB).hex() == f"{HASH_LOCK}{X2DEB}ad51b2"


def test_offered_htlc_output_matches_the_vector_output_key() -> None:
    info = offered_htlc_output(REVOCATION, HTLC_71E8, HTLC_2DEB, PAYMENT_HASH)
    assert info.merkle_root is not None
    assert info.merkle_root.hex() == (
        "f36c8bd45002c5264cfce9944211e7bc6ea974a6b90cf99a87812d18acf28a2a"
    )
    assert info.script_pubkey.hex() == (
        "51203e5c3be9f4ce7ae07c28ad5e0eb0ab617c06eeb82b8d6ef10a5bf561848df5f0"
    )


def test_received_htlc_leaves_match_the_vectors() -> None:
    assert received_success_leaf(PAYMENT_HASH, HTLC_2DEB, HTLC_71E8).hex() == (
        f"{HASH_LOCK}{X2DEB}ad{X71E8}ac"
    )
    assert received_timeout_leaf(HTLC_71E8, 500).hex() == f"{X71E8}ad51b26902f401b1"


def test_received_htlc_output_matches_the_vector_output_key() -> None:
    info = received_htlc_output(REVOCATION, HTLC_2DEB, HTLC_71E8, PAYMENT_HASH, 500)
    assert info.script_pubkey.hex() == (
        "51209aadbdd9aff986e5ea086cf53ae062972d33d0a5c7f5fb986dafec7fa6d7e6ea"
    )


def test_second_stage_output_matches_the_vector() -> None:
    assert second_stage_output(REVOCATION, DELAYED, CSV).script_pubkey.hex() == (
        "5120df20bcec43daa75161f7d013254e401812e0fee8bc3369220b6a33672fc18ba0"
    )


def test_nums_key_is_bip341_h() -> None:
    generator = SecretKey.from_int(1).public_key
    uncompressed = bytes.fromhex(
        "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
    )
    assert uncompressed[1:33] == generator.data[1:]
    assert NUMS_KEY.data == hashlib.sha256(uncompressed).digest()


def test_funding_output_is_bip86_musig_of_the_sorted_keys() -> None:
    a, b = SecretKey.from_int(11).public_key, SecretKey.from_int(12).public_key
    expected = TaprootSpendInfo(aggregate_keys(sort_keys([a, b])).xonly).script_pubkey
    assert funding_output(a, b).script_pubkey == expected
    assert funding_output(b, a).script_pubkey == expected
    assert funding_output(a, b).signing.xonly == funding_output(a, b).spend.output_key
