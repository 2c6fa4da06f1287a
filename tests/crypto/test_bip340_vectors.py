"""BIP340 test-vectors.csv: every signing and verification case."""

from __future__ import annotations

import csv

import pytest

from superscalar.crypto import schnorr
from superscalar.crypto.errors import InvalidKeyError
from superscalar.crypto.keys import SecretKey, XOnlyPublicKey
from tests.conftest import DATA

ROWS = list(csv.DictReader((DATA / "bip340" / "test-vectors.csv").open()))


def _id(row: dict[str, str]) -> str:
    return f"{row['index']}-{row['comment'] or 'ok'}"


@pytest.mark.parametrize("row", [r for r in ROWS if r["secret key"]], ids=_id)
def test_sign_produces_the_vector_signature(row: dict[str, str]) -> None:
    key = SecretKey.from_hex(row["secret key"])
    assert key.xonly_public_key.hex() == row["public key"].lower()
    sig = schnorr.sign(key, bytes.fromhex(row["message"]), bytes.fromhex(row["aux_rand"]))
    assert sig.hex() == row["signature"].lower()


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_verify_matches_the_vector_result(row: dict[str, str]) -> None:
    expected = row["verification result"] == "TRUE"
    try:
        pubkey = XOnlyPublicKey.from_hex(row["public key"])
    except InvalidKeyError:
        assert not expected
        return
    ok = schnorr.verify(pubkey, bytes.fromhex(row["message"]), bytes.fromhex(row["signature"]))
    assert ok is expected
