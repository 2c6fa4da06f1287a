"""Bech32/bech32m (BIP173/BIP350) and segwit addresses for each network.

Addresses come from users and peers, so decoding checks everything (charset,
case, checksum variant, length, witness version and program size) and raises
`AddressError` with a message that says which check failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from .script import parse_witness_program, witness_program_script

__all__ = [
    "AddressError",
    "Bech32Error",
    "Encoding",
    "Network",
    "address_to_script_pubkey",
    "bech32_decode",
    "bech32_encode",
    "convert_bits",
    "decode_segwit_address",
    "encode_segwit_address",
    "script_pubkey_to_address",
]

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_MAX_LENGTH = 90


class AddressError(ValueError):
    """A string that is not a valid address (for the expected network)."""


class Bech32Error(AddressError):
    """A string that is not valid bech32 or bech32m."""


class Encoding(Enum):
    """The checksum variant: BIP173 bech32 (witness v0) or BIP350 bech32m (v1+)."""

    BECH32 = 1
    BECH32M = 0x2BC830A3

    @property
    def constant(self) -> int:
        return self.value


class Network(Enum):
    """A Bitcoin network, identified by its bech32 human-readable part."""

    MAINNET = "mainnet"
    TESTNET = "testnet"
    TESTNET4 = "testnet4"
    SIGNET = "signet"
    REGTEST = "regtest"

    @property
    def hrp(self) -> str:
        """`bc`, `bcrt`, or `tb` (shared by testnet, testnet4 and signet)."""
        return _HRPS[self]


_HRPS = {
    Network.MAINNET: "bc",
    Network.TESTNET: "tb",
    Network.TESTNET4: "tb",
    Network.SIGNET: "tb",
    Network.REGTEST: "bcrt",
}


# -- bech32 -----------------------------------------------------------------------


def _polymod(values: Sequence[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= g
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _check_hrp(hrp: str) -> None:
    if not 1 <= len(hrp) <= 83:
        raise Bech32Error(f"human-readable part must be 1..83 characters, got {len(hrp)}")
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("human-readable part has a character outside US-ASCII 33..126")


def bech32_encode(hrp: str, data: Sequence[int], encoding: Encoding) -> str:
    """Encode 5-bit `data` under `hrp` (lowercased) with the given checksum."""
    _check_hrp(hrp)
    if hrp.lower() != hrp and hrp.upper() != hrp:
        raise Bech32Error("human-readable part has mixed case")
    hrp = hrp.lower()
    if any(not 0 <= d < 32 for d in data):
        raise Bech32Error("data values must be 5-bit")
    poly = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ encoding.constant
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in (*data, *checksum))


def bech32_decode(text: str, max_length: int = _MAX_LENGTH) -> tuple[str, list[int], Encoding]:
    """Decode a bech32 or bech32m string into (hrp, 5-bit data, encoding).

    `max_length` is 90 for addresses (BIP173); pass a larger one for other uses.
    """
    if not isinstance(text, str):
        raise Bech32Error(f"expected a string, not {type(text).__name__}")
    if len(text) > max_length:
        raise Bech32Error(f"longer than {max_length} characters")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise Bech32Error("character outside US-ASCII 33..126")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1:
        raise Bech32Error("missing separator '1' or empty human-readable part")
    if len(text) - sep - 1 < 6:
        raise Bech32Error("checksum too short")
    hrp = text[:sep]
    try:
        data = [_CHARSET_REV[c] for c in text[sep + 1 :]]
    except KeyError as exc:
        raise Bech32Error(f"invalid data character {exc.args[0]!r}") from None
    poly = _polymod([*_hrp_expand(hrp), *data])
    for encoding in Encoding:
        if poly == encoding.constant:
            return hrp, data[:-6], encoding
    raise Bech32Error("invalid checksum")


def convert_bits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    """Regroup `from_bits`-bit values into `to_bits`-bit values (BIP173 `convertbits`)."""
    acc, bits, out = 0, 0, []
    max_value = (1 << to_bits) - 1
    max_acc = (1 << (from_bits + to_bits - 1)) - 1
    for value in data:
        if not 0 <= value < (1 << from_bits):
            raise Bech32Error("value out of range for bit conversion")
        acc = ((acc << from_bits) | value) & max_acc
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits:
        raise Bech32Error("too much padding")
    elif (acc << (to_bits - bits)) & max_value:
        raise Bech32Error("non-zero padding")
    return out


# -- segwit addresses ----------------------------------------------------------------


def encode_segwit_address(hrp: str, version: int, program: bytes) -> str:
    """A segwit address: bech32 for version 0, bech32m for versions 1..16."""
    try:
        witness_program_script(version, program)  # validates version and size
    except ValueError as exc:
        raise AddressError(str(exc)) from exc
    encoding = Encoding.BECH32 if version == 0 else Encoding.BECH32M
    return bech32_encode(hrp, [version, *convert_bits(program, 8, 5, True)], encoding)


def decode_segwit_address(hrp: str, address: str) -> tuple[int, bytes]:
    """(witness version, program) of a segwit address, which must use `hrp`."""
    got_hrp, data, encoding = bech32_decode(address)
    if got_hrp != hrp:
        raise AddressError(f"address is for hrp {got_hrp!r}, expected {hrp!r}")
    if not data:
        raise AddressError("address has no witness version")
    version = data[0]
    if version > 16:
        raise AddressError(f"invalid witness version {version}")
    expected = Encoding.BECH32 if version == 0 else Encoding.BECH32M
    if encoding is not expected:
        raise AddressError(
            f"witness version {version} needs {expected.name.lower()}, got {encoding.name.lower()}"
        )
    program = bytes(convert_bits(data[1:], 5, 8, False))
    if not 2 <= len(program) <= 40:
        raise AddressError(f"witness program of {len(program)} bytes is outside 2..40")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError(f"v0 witness program must be 20 or 32 bytes, got {len(program)}")
    return version, program


def address_to_script_pubkey(address: str, network: Network) -> bytes:
    """The scriptPubKey a segwit `address` for `network` pays to."""
    version, program = decode_segwit_address(network.hrp, address)
    return witness_program_script(version, program)


def script_pubkey_to_address(script_pubkey: bytes, network: Network) -> str:
    """The segwit address for `script_pubkey`; raises for non-segwit scripts."""
    parsed = parse_witness_program(script_pubkey)
    if parsed is None:
        raise AddressError("scriptPubKey is not a segwit output; no address")
    version, program = parsed
    return encode_segwit_address(network.hrp, version, program)
