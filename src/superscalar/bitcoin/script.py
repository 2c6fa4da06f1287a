"""Script building: opcodes, minimal pushes, script numbers and the standard scripts we use.

SuperScalar needs only a handful of scripts (taproot outputs, P2A anchors and
CLTV/CSV tapleaves), so this is a builder and a tokenizer, not an interpreter.
Pushes are always minimally encoded so scripts pass MINIMALDATA policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from ..crypto.hashes import hash160, sha256
from ..crypto.keys import PublicKey, XOnlyPublicKey

__all__ = [
    "OP_FALSE",
    "OP_TRUE",
    "P2A_SCRIPT",
    "Op",
    "ScriptError",
    "ScriptItem",
    "ScriptOp",
    "build_script",
    "csv_delay_leaf_script",
    "is_p2a",
    "is_p2tr",
    "is_p2wpkh",
    "is_p2wsh",
    "iter_script",
    "op_return_script",
    "p2a_script",
    "p2tr_script",
    "p2wpkh_script",
    "p2wsh_script",
    "parse_witness_program",
    "push_data",
    "push_int",
    "script_num_decode",
    "script_num_encode",
    "timeout_leaf_script",
    "witness_program_script",
]


class ScriptError(ValueError):
    """A script or script number that is malformed or out of range."""


class Op(IntEnum):
    """The opcodes this project emits or recognises (values from Bitcoin Core)."""

    OP_0 = 0x00
    OP_PUSHDATA1 = 0x4C
    OP_PUSHDATA2 = 0x4D
    OP_PUSHDATA4 = 0x4E
    OP_1NEGATE = 0x4F
    OP_1 = 0x51
    OP_2 = 0x52
    OP_3 = 0x53
    OP_4 = 0x54
    OP_5 = 0x55
    OP_6 = 0x56
    OP_7 = 0x57
    OP_8 = 0x58
    OP_9 = 0x59
    OP_10 = 0x5A
    OP_11 = 0x5B
    OP_12 = 0x5C
    OP_13 = 0x5D
    OP_14 = 0x5E
    OP_15 = 0x5F
    OP_16 = 0x60
    OP_NOP = 0x61
    OP_IF = 0x63
    OP_NOTIF = 0x64
    OP_ELSE = 0x67
    OP_ENDIF = 0x68
    OP_VERIFY = 0x69
    OP_RETURN = 0x6A
    OP_2DROP = 0x6D
    OP_DROP = 0x75
    OP_DUP = 0x76
    OP_SWAP = 0x7C
    OP_SIZE = 0x82
    OP_EQUAL = 0x87
    OP_EQUALVERIFY = 0x88
    OP_ADD = 0x93
    OP_NUMEQUAL = 0x9C
    OP_NUMEQUALVERIFY = 0x9D
    OP_RIPEMD160 = 0xA6
    OP_SHA256 = 0xA8
    OP_HASH160 = 0xA9
    OP_HASH256 = 0xAA
    OP_CODESEPARATOR = 0xAB
    OP_CHECKSIG = 0xAC
    OP_CHECKSIGVERIFY = 0xAD
    OP_CHECKMULTISIG = 0xAE
    OP_CHECKMULTISIGVERIFY = 0xAF
    OP_CHECKLOCKTIMEVERIFY = 0xB1
    OP_CHECKSEQUENCEVERIFY = 0xB2
    OP_CHECKSIGADD = 0xBA


OP_FALSE = Op.OP_0
OP_TRUE = Op.OP_1

ScriptItem = Op | int | bytes
"""One element for `build_script`: an `Op` is emitted as that opcode, a plain
`int` is pushed as a script number, `bytes` are pushed as data."""


# -- script numbers -------------------------------------------------------------


def script_num_encode(n: int) -> bytes:
    """CScriptNum serialization: minimal little-endian sign-magnitude (0 is empty)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ScriptError(f"script number must be an int, not {type(n).__name__}")
    if n == 0:
        return b""
    magnitude = abs(n)
    out = bytearray()
    while magnitude:
        out.append(magnitude & 0xFF)
        magnitude >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if n < 0 else 0x00)
    elif n < 0:
        out[-1] |= 0x80
    return bytes(out)


def script_num_decode(data: bytes, max_size: int = 4, require_minimal: bool = True) -> int:
    """Parse a CScriptNum; CLTV and CSV use `max_size=5`, arithmetic uses 4."""
    if len(data) > max_size:
        raise ScriptError(f"script number of {len(data)} bytes exceeds {max_size}")
    if not data:
        return 0
    if require_minimal and data[-1] & 0x7F == 0 and (len(data) == 1 or not data[-2] & 0x80):
        raise ScriptError("non-minimally encoded script number")
    value = int.from_bytes(data, "little")
    sign_bit = 0x80 << (8 * (len(data) - 1))
    if value & sign_bit:
        return -(value & ~sign_bit)
    return value


# -- building -------------------------------------------------------------------


def push_data(data: bytes) -> bytes:
    """The minimal push of `data` (Bitcoin Core's CheckMinimalPush rules)."""
    if not isinstance(data, bytes | bytearray):
        raise ScriptError(f"push data must be bytes, not {type(data).__name__}")
    n = len(data)
    if n == 0:
        return bytes((Op.OP_0,))
    if n == 1 and 1 <= data[0] <= 16:
        return bytes((Op.OP_1 + data[0] - 1,))
    if n == 1 and data[0] == 0x81:
        return bytes((Op.OP_1NEGATE,))
    if n <= 75:
        return bytes((n,)) + data
    if n <= 0xFF:
        return bytes((Op.OP_PUSHDATA1, n)) + data
    if n <= 0xFFFF:
        return bytes((Op.OP_PUSHDATA2,)) + n.to_bytes(2, "little") + data
    if n <= 0xFFFFFFFF:
        return bytes((Op.OP_PUSHDATA4,)) + n.to_bytes(4, "little") + data
    raise ScriptError("push data too large")


def push_int(n: int) -> bytes:
    """The minimal push of script number `n` (OP_0, OP_1NEGATE, OP_1..OP_16 or data)."""
    return push_data(script_num_encode(n))


def build_script(*items: ScriptItem) -> bytes:
    """Concatenate opcodes (`Op`), number pushes (`int`) and data pushes (`bytes`).

    Pass opcodes as `Op` members: a bare int such as 0xAC is pushed as the
    number 172, not emitted as OP_CHECKSIG.
    """
    out = bytearray()
    for item in items:
        if isinstance(item, Op):
            out.append(item.value)
        elif isinstance(item, bool):
            raise ScriptError("bool is not a script item")
        elif isinstance(item, int):
            out += push_int(item)
        elif isinstance(item, bytes | bytearray):
            out += push_data(bytes(item))
        else:
            raise ScriptError(f"not a script item: {type(item).__name__}")
    return bytes(out)


# -- tokenizing -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptOp:
    """One tokenized script element: an opcode and, for pushes, the data pushed."""

    opcode: int
    data: bytes | None = None


def iter_script(script: bytes) -> Iterator[ScriptOp]:
    """Tokenize a script; raises `ScriptError` on a push that runs past the end."""
    pos, end = 0, len(script)
    while pos < end:
        opcode = script[pos]
        pos += 1
        if opcode > Op.OP_PUSHDATA4:
            yield ScriptOp(opcode)
            continue
        if opcode < Op.OP_PUSHDATA1:
            size = opcode
        else:
            width = {Op.OP_PUSHDATA1: 1, Op.OP_PUSHDATA2: 2, Op.OP_PUSHDATA4: 4}[Op(opcode)]
            if pos + width > end:
                raise ScriptError("truncated push length")
            size = int.from_bytes(script[pos : pos + width], "little")
            pos += width
        if pos + size > end:
            raise ScriptError("push runs past the end of the script")
        yield ScriptOp(opcode, script[pos : pos + size])
        pos += size


# -- standard output scripts -----------------------------------------------------

P2A_SCRIPT = bytes.fromhex("51024e73")
"""Pay-to-anchor: `OP_1 <0x4e73>`, a keyless anyone-can-spend anchor for CPFP."""


def witness_program_script(version: int, program: bytes) -> bytes:
    """`OP_n <program>` for a segwit output of witness `version` (0..16)."""
    if not 0 <= version <= 16:
        raise ScriptError(f"witness version {version} is outside 0..16")
    if not 2 <= len(program) <= 40:
        raise ScriptError(f"witness program of {len(program)} bytes is outside 2..40")
    if version == 0 and len(program) not in (20, 32):
        raise ScriptError("a v0 witness program must be 20 or 32 bytes")
    op = Op.OP_0 if version == 0 else Op.OP_1 + version - 1
    return bytes((op, len(program))) + program


def parse_witness_program(script_pubkey: bytes) -> tuple[int, bytes] | None:
    """(version, program) if `script_pubkey` is a segwit output, else None."""
    n = len(script_pubkey)
    if not 4 <= n <= 42 or script_pubkey[1] != n - 2:
        return None
    op = script_pubkey[0]
    if op == Op.OP_0:
        version = 0
    elif Op.OP_1 <= op <= Op.OP_16:
        version = op - Op.OP_1 + 1
    else:
        return None
    return version, script_pubkey[2:]


def p2wpkh_script(key: PublicKey | bytes) -> bytes:
    """P2WPKH for a compressed public key, or for its 20-byte HASH160."""
    key_hash = hash160(key.data) if isinstance(key, PublicKey) else key
    if len(key_hash) != 20:
        raise ScriptError("P2WPKH needs a PublicKey or a 20-byte key hash")
    return witness_program_script(0, key_hash)


def p2wsh_script(witness_script: bytes) -> bytes:
    """P2WSH committing to SHA256(`witness_script`)."""
    return witness_program_script(0, sha256(witness_script))


def p2tr_script(output_key: XOnlyPublicKey | bytes) -> bytes:
    """P2TR paying to an (already tweaked) x-only output key."""
    data = output_key.data if isinstance(output_key, XOnlyPublicKey) else output_key
    if len(data) != 32:
        raise ScriptError("P2TR needs a 32-byte x-only output key")
    return witness_program_script(1, data)


def p2a_script() -> bytes:
    """The pay-to-anchor output script (`51024e73`)."""
    return P2A_SCRIPT


def op_return_script(data: bytes) -> bytes:
    """A provably unspendable `OP_RETURN <data>` output script."""
    return bytes((Op.OP_RETURN,)) + push_data(data)


def is_p2wpkh(script_pubkey: bytes) -> bool:
    return len(script_pubkey) == 22 and script_pubkey[:2] == b"\x00\x14"


def is_p2wsh(script_pubkey: bytes) -> bool:
    return len(script_pubkey) == 34 and script_pubkey[:2] == b"\x00\x20"


def is_p2tr(script_pubkey: bytes) -> bool:
    return len(script_pubkey) == 34 and script_pubkey[:2] == b"\x51\x20"


def is_p2a(script_pubkey: bytes) -> bool:
    return script_pubkey == P2A_SCRIPT


# -- SuperScalar tapleaves --------------------------------------------------------

_MAX_LOCKTIME = 0xFFFFFFFF
_SEQUENCE_DISABLE_FLAG = 1 << 31


def timeout_leaf_script(cltv: int, key: XOnlyPublicKey) -> bytes:
    """`<cltv> OP_CHECKLOCKTIMEVERIFY OP_DROP <key> OP_CHECKSIG` (BIP65).

    The SuperScalar timeout path: after absolute locktime `cltv` (a height
    below 500,000,000, else a UNIX time) `key` alone may spend.
    """
    if isinstance(cltv, bool) or not isinstance(cltv, int) or not 0 < cltv <= _MAX_LOCKTIME:
        raise ScriptError(f"CLTV locktime {cltv!r} is outside 1..2^32-1")
    return build_script(cltv, Op.OP_CHECKLOCKTIMEVERIFY, Op.OP_DROP, key.data, Op.OP_CHECKSIG)


def csv_delay_leaf_script(delay: int, key: XOnlyPublicKey) -> bytes:
    """`<delay> OP_CHECKSEQUENCEVERIFY OP_DROP <key> OP_CHECKSIG` (BIP112).

    `delay` is a BIP68 relative lock as an nSequence value: a block count, or
    512-second units with the type flag (bit 22) set; see `locktime`. The
    disable flag (bit 31) would make CSV a no-op, so it is refused.
    """
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 < delay < (1 << 32):
        raise ScriptError(f"CSV delay {delay!r} is outside 1..2^32-1")
    if delay & _SEQUENCE_DISABLE_FLAG:
        raise ScriptError("CSV delay has the BIP68 disable flag set")
    return build_script(delay, Op.OP_CHECKSEQUENCEVERIFY, Op.OP_DROP, key.data, Op.OP_CHECKSIG)
