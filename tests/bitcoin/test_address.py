"""Bech32/bech32m and segwit addresses: the BIP173 and BIP350 vectors, per network."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.address import (
    AddressError,
    Bech32Error,
    Encoding,
    Network,
    address_to_script_pubkey,
    bech32_decode,
    bech32_encode,
    decode_segwit_address,
    encode_segwit_address,
    script_pubkey_to_address,
)
from superscalar.bitcoin.script import P2A_SCRIPT, witness_program_script
from tests.conftest import load_json

BIP173 = load_json("bip350/bip173.json")
BIP350 = load_json("bip350/bip350.json")

# Each reason the BIPs give, and the words our error uses for it.
REASONS = {
    "HRP character out of range": "outside US-ASCII",
    "overall max length exceeded": "longer than 90",
    "No separator character": "missing separator",
    "Empty HRP": "empty human-readable part",
    "empty HRP": "empty human-readable part",
    "Invalid data character": "invalid data character",
    "Too short checksum": "checksum too short",
    "Invalid character in checksum": "invalid data character|outside US-ASCII",
    "checksum calculated with uppercase form of HRP": "invalid checksum",
    "Invalid human-readable part": "address is for hrp",
    "Invalid checksum": "invalid checksum",
    "Invalid checksum (Bech32 instead of Bech32m)": r"needs bech32m, got bech32$",
    "Invalid checksum (Bech32m instead of Bech32)": "needs bech32, got bech32m",
    "Invalid witness version": "invalid witness version",
    "Invalid program length (1 byte)": "of 1 bytes is outside 2..40",
    "Invalid program length (41 bytes)": "of 41 bytes is outside 2..40",
    "Invalid program length for witness version 0 (per BIP141)": "v0 witness program must be",
    "Mixed case": "mixed upper and lower case",
    "zero padding of more than 4 bits": "too much padding",
    "Non-zero padding in 8-to-5 conversion": "non-zero padding",
    "Empty data section": "no witness version",
}

NETWORKS_BY_HRP = {
    "bc": [Network.MAINNET],
    "tb": [Network.TESTNET, Network.TESTNET4, Network.SIGNET],
    "bcrt": [Network.REGTEST],
}


def _hrp(address: str) -> str:
    return address[: address.rfind("1")].lower()


def _ids(cases: list[Any], key: str) -> list[str]:
    return [repr(c if isinstance(c, str) else c[key])[:40] for c in cases]


# -- bech32 / bech32m strings -------------------------------------------------------


@pytest.mark.parametrize("text", BIP173["valid_bech32"])
def test_bip173_valid_string_decodes_as_bech32(text: str) -> None:
    assert bech32_decode(text)[2] is Encoding.BECH32


@pytest.mark.parametrize("text", BIP350["valid_bech32m"])
def test_bip350_valid_string_decodes_as_bech32m(text: str) -> None:
    assert bech32_decode(text)[2] is Encoding.BECH32M


@pytest.mark.parametrize("text", BIP173["valid_bech32"] + BIP350["valid_bech32m"])
def test_valid_string_reencodes_to_its_lowercase_form(text: str) -> None:
    hrp, data, encoding = bech32_decode(text)
    assert bech32_encode(hrp, data, encoding) == text.lower()


_INVALID_STRINGS = BIP173["invalid_bech32"] + BIP350["invalid_bech32m"]


@pytest.mark.parametrize("case", _INVALID_STRINGS, ids=_ids(_INVALID_STRINGS, "string"))
def test_invalid_string_is_refused_for_the_bips_reason(case: dict[str, str]) -> None:
    with pytest.raises(Bech32Error, match=REASONS[case["reason"]]):
        bech32_decode(case["string"])


@given(
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
    ).map(str.lower),
    st.lists(st.integers(min_value=0, max_value=31), max_size=60),
    st.sampled_from(list(Encoding)),
)
def test_bech32_round_trips(hrp: str, data: list[int], encoding: Encoding) -> None:
    assert bech32_decode(bech32_encode(hrp, data, encoding)) == (hrp, data, encoding)


@given(st.text(max_size=100))
def test_arbitrary_text_decodes_or_raises_bech32_error(text: str) -> None:
    try:
        hrp, data, encoding = bech32_decode(text)
    except Bech32Error:
        return
    assert bech32_encode(hrp, data, encoding) == text.lower()


def test_encoding_refuses_data_values_above_five_bits() -> None:
    with pytest.raises(Bech32Error):
        bech32_encode("bc", [32], Encoding.BECH32)


# -- segwit addresses ----------------------------------------------------------------

_VALID_ADDRESSES = BIP350["valid_segwit_addresses"]


@pytest.mark.parametrize("case", _VALID_ADDRESSES, ids=_ids(_VALID_ADDRESSES, "address"))
def test_valid_address_decodes_to_its_script_pubkey_on_each_network_of_its_hrp(
    case: dict[str, str],
) -> None:
    for network in NETWORKS_BY_HRP[_hrp(case["address"])]:
        assert address_to_script_pubkey(case["address"], network).hex() == case["scriptPubKey"]


@pytest.mark.parametrize("case", _VALID_ADDRESSES, ids=_ids(_VALID_ADDRESSES, "address"))
def test_valid_script_pubkey_encodes_to_the_lowercase_address(case: dict[str, str]) -> None:
    spk = bytes.fromhex(case["scriptPubKey"])
    for network in NETWORKS_BY_HRP[_hrp(case["address"])]:
        assert script_pubkey_to_address(spk, network) == case["address"].lower()


@pytest.mark.parametrize("case", _VALID_ADDRESSES, ids=_ids(_VALID_ADDRESSES, "address"))
def test_valid_address_is_refused_on_other_networks(case: dict[str, str]) -> None:
    own = NETWORKS_BY_HRP[_hrp(case["address"])]
    for network in Network:
        if network not in own:
            with pytest.raises(AddressError, match="address is for hrp"):
                address_to_script_pubkey(case["address"], network)


_BIP173_VALID = BIP173["valid_segwit_addresses"]


@pytest.mark.parametrize("case", _BIP173_VALID, ids=_ids(_BIP173_VALID, "address"))
def test_bip173_v0_addresses_stay_valid_and_v1_plus_ones_need_bech32m(
    case: dict[str, str],
) -> None:
    network = NETWORKS_BY_HRP[_hrp(case["address"])][0]
    if case["scriptPubKey"].startswith("00"):
        assert address_to_script_pubkey(case["address"], network).hex() == case["scriptPubKey"]
    else:
        with pytest.raises(AddressError, match=r"needs bech32m, got bech32$"):
            address_to_script_pubkey(case["address"], network)


_INVALID_ADDRESSES = BIP350["invalid_segwit_addresses"]


@pytest.mark.parametrize("case", _INVALID_ADDRESSES, ids=_ids(_INVALID_ADDRESSES, "address"))
def test_bip350_invalid_address_is_refused_for_the_bips_reason(case: dict[str, str]) -> None:
    network = NETWORKS_BY_HRP.get(_hrp(case["address"]), [Network.MAINNET])[0]
    with pytest.raises(AddressError, match=REASONS[case["reason"]]):
        address_to_script_pubkey(case["address"], network)


_ALL_INVALID = BIP173["invalid_segwit_addresses"] + _INVALID_ADDRESSES


@pytest.mark.parametrize("case", _ALL_INVALID, ids=_ids(_ALL_INVALID, "address"))
def test_invalid_address_is_refused_on_every_network(case: dict[str, str]) -> None:
    for network in Network:
        with pytest.raises(AddressError):
            address_to_script_pubkey(case["address"], network)


def test_network_hrps() -> None:
    assert {n: n.hrp for n in Network} == {
        Network.MAINNET: "bc",
        Network.TESTNET: "tb",
        Network.TESTNET4: "tb",
        Network.SIGNET: "tb",
        Network.REGTEST: "bcrt",
    }


@st.composite
def _witness_programs(draw: st.DrawFn) -> tuple[int, bytes]:
    version = draw(st.integers(min_value=0, max_value=16))
    if version == 0:
        return 0, draw(
            st.sampled_from([20, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
        )
    return version, draw(st.binary(min_size=2, max_size=40))


@given(_witness_programs(), st.sampled_from(list(Network)))
def test_any_witness_program_round_trips_through_an_address(
    program: tuple[int, bytes], network: Network
) -> None:
    spk = witness_program_script(*program)
    address = script_pubkey_to_address(spk, network)
    assert address.startswith(network.hrp + "1")
    assert decode_segwit_address(network.hrp, address) == program
    assert address_to_script_pubkey(address, network) == spk


def test_v0_address_uses_bech32_and_v1_uses_bech32m() -> None:
    v0 = encode_segwit_address("bc", 0, bytes(20))
    v1 = encode_segwit_address("bc", 1, bytes(32))
    assert bech32_decode(v0)[2] is Encoding.BECH32
    assert bech32_decode(v1)[2] is Encoding.BECH32M


@pytest.mark.parametrize(
    ("network", "address"),
    [(Network.MAINNET, "bc1pfeessrawgf"), (Network.REGTEST, "bcrt1pfeesnyr2tx")],
)
def test_p2a_anchor_has_its_well_known_address(network: Network, address: str) -> None:
    # Addresses as given in Bitcoin Optech's "Bitcoin Core 28.0 wallet integration guide".
    assert script_pubkey_to_address(P2A_SCRIPT, network) == address


@pytest.mark.parametrize(
    "script_pubkey",
    [
        "76a914" + "00" * 20 + "88ac",  # P2PKH
        "a914" + "00" * 20 + "87",  # P2SH
        "6a0100",  # OP_RETURN
        "0015" + "00" * 21,  # v0 program of 21 bytes
    ],
)
def test_script_without_a_segwit_address_is_refused(script_pubkey: str) -> None:
    with pytest.raises(AddressError):
        script_pubkey_to_address(bytes.fromhex(script_pubkey), Network.MAINNET)


@pytest.mark.parametrize(("version", "size"), [(0, 21), (1, 1), (1, 41), (17, 32)])
def test_encoding_refuses_an_impossible_witness_program(version: int, size: int) -> None:
    with pytest.raises(AddressError):
        encode_segwit_address("bc", version, bytes(size))
