"""Scripts: minimal pushes, script numbers, tokenizing, witness programs, SuperScalar leaves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.locktime import SEQUENCE_LOCKTIME_TYPE_FLAG
from superscalar.bitcoin.script import (
    P2A_SCRIPT,
    Op,
    ScriptError,
    ScriptOp,
    build_script,
    csv_delay_leaf_script,
    is_p2a,
    is_p2tr,
    is_p2wpkh,
    is_p2wsh,
    iter_script,
    op_return_script,
    p2tr_script,
    p2wpkh_script,
    p2wsh_script,
    parse_witness_program,
    push_data,
    push_int,
    script_num_decode,
    script_num_encode,
    timeout_leaf_script,
    witness_program_script,
)
from superscalar.bitcoin.taproot import TaprootSpendInfo, balanced_tree
from superscalar.bitcoin.tx import TxOut
from superscalar.crypto.hashes import hash160, sha256
from superscalar.crypto.keys import SecretKey
from tests.bitcoin.spend_support import consensus_accepts, sign_script_path, spend_tx

KEY = SecretKey.from_int(0xC0FFEE)
XKEY = KEY.xonly_public_key


def _pushed(op: ScriptOp) -> bytes:
    """The bytes a push-type ScriptOp leaves on the stack."""
    if op.data is not None:
        return op.data
    if Op.OP_1 <= op.opcode <= Op.OP_16:
        return bytes([op.opcode - Op.OP_1 + 1])
    if op.opcode == Op.OP_1NEGATE:
        return b"\x81"
    raise AssertionError(f"opcode {op.opcode:#x} pushes nothing")


_PUSHDATA_WIDTH = {Op.OP_PUSHDATA1.value: 1, Op.OP_PUSHDATA2.value: 2, Op.OP_PUSHDATA4.value: 4}


def _reassemble(ops: list[ScriptOp]) -> bytes:
    """Serialize tokens back with their own opcodes (so non-minimal pushes survive)."""
    out = bytearray()
    for op in ops:
        out.append(op.opcode)
        if op.data is None:
            continue
        width = _PUSHDATA_WIDTH.get(op.opcode, 0)
        if width:
            out += len(op.data).to_bytes(width, "little")
        out += op.data
    return bytes(out)


# -- minimal pushes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "00"),
        (b"\x01", "51"),
        (b"\x10", "60"),
        (b"\x81", "4f"),
        (b"\x00", "0100"),
        (b"\x11", "0111"),
        (b"\x80", "0180"),
    ],
)
def test_push_data_uses_small_int_opcodes_for_one_byte_values(data: bytes, expected: str) -> None:
    assert push_data(data).hex() == expected


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (2, "02"),
        (75, "4b"),
        (76, "4c4c"),
        (255, "4cff"),
        (256, "4d0001"),
        (65535, "4dffff"),
        (65536, "4e00000100"),
    ],
)
def test_push_data_uses_the_smallest_push_opcode_for_its_size(size: int, header: str) -> None:
    data = b"\xff" * size
    assert push_data(data) == bytes.fromhex(header) + data


@given(st.binary(max_size=600))
def test_push_data_tokenizes_back_to_the_same_bytes(data: bytes) -> None:
    ops = list(iter_script(push_data(data)))
    assert len(ops) == 1
    assert _pushed(ops[0]) == data


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (-1, "4f"), (1, "51"), (16, "60"), (17, "0111"), (-2, "0182"), (1000, "02e803")],
)
def test_push_int_uses_small_int_opcodes_where_it_can(n: int, encoded: str) -> None:
    assert push_int(n).hex() == encoded


# -- script numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, ""),
        (1, "01"),
        (-1, "81"),
        (127, "7f"),
        (128, "8000"),
        (-128, "8080"),
        (255, "ff00"),
        (-255, "ff80"),
        (256, "0001"),
        (32767, "ff7f"),
        (32768, "008000"),
        (2**31 - 1, "ffffff7f"),
        (-(2**31 - 1), "ffffffff"),
        (2**31, "0000008000"),
        (2**32 - 1, "ffffffff00"),
    ],
)
def test_script_num_encoding_matches_cscriptnum(n: int, encoded: str) -> None:
    assert script_num_encode(n).hex() == encoded
    assert script_num_decode(bytes.fromhex(encoded), max_size=5) == n


@given(st.integers(min_value=-(2**39) + 1, max_value=2**39 - 1))
def test_script_num_round_trips(n: int) -> None:
    assert script_num_decode(script_num_encode(n), max_size=5) == n


@given(st.binary(max_size=4))
def test_minimal_script_num_bytes_reencode_identically(data: bytes) -> None:
    try:
        n = script_num_decode(data)
    except ScriptError:
        return
    assert script_num_encode(n) == data


@pytest.mark.parametrize("encoded", ["00", "80", "0100", "0080", "ff0000", "000080"])
def test_non_minimal_script_num_is_refused(encoded: str) -> None:
    with pytest.raises(ScriptError, match="non-minimally"):
        script_num_decode(bytes.fromhex(encoded))


@pytest.mark.parametrize(("encoded", "n"), [("00", 0), ("80", 0), ("0100", 1), ("0180", -1)])
def test_non_minimal_script_num_is_read_when_minimality_is_off(encoded: str, n: int) -> None:
    assert script_num_decode(bytes.fromhex(encoded), require_minimal=False) == n


def test_script_num_longer_than_max_size_is_refused() -> None:
    with pytest.raises(ScriptError, match="exceeds 4"):
        script_num_decode(bytes.fromhex("0000008000"))


def test_script_num_must_be_an_int() -> None:
    with pytest.raises(ScriptError):
        script_num_encode(True)


# -- building and tokenizing --------------------------------------------------------


def test_build_script_emits_ops_and_pushes_ints_and_bytes() -> None:
    script = build_script(Op.OP_DUP, 5, 300, b"\xaa\xbb", Op.OP_CHECKSIG)
    assert script.hex() == "76" + "55" + "022c01" + "02aabb" + "ac"


def test_build_script_pushes_a_bare_int_as_a_number_not_an_opcode() -> None:
    assert build_script(0xAC) == push_int(0xAC)


def test_build_script_refuses_bools() -> None:
    with pytest.raises(ScriptError):
        build_script(True)


_script_items = st.one_of(
    st.sampled_from(list(Op)).filter(lambda op: op > Op.OP_PUSHDATA4),
    st.integers(min_value=-(2**31) + 1, max_value=2**31 - 1),
    st.binary(max_size=300),
)


@given(st.lists(_script_items, max_size=12))
def test_built_script_tokenizes_to_its_items(items: list[Op | int | bytes]) -> None:
    ops = list(iter_script(build_script(*items)))
    assert len(ops) == len(items)
    for op, item in zip(ops, items, strict=True):
        if isinstance(item, Op):
            assert op == ScriptOp(item.value)
        elif isinstance(item, int):
            assert script_num_decode(_pushed(op)) == item
        else:
            assert _pushed(op) == item


@given(st.binary(max_size=200))
def test_any_tokenizable_script_reassembles_byte_for_byte(script: bytes) -> None:
    try:
        ops = list(iter_script(script))
    except ScriptError:
        return
    assert _reassemble(ops) == script


@pytest.mark.parametrize("script", ["01", "4c", "4c01", "4d0100", "4e01000000", "4b" + "00" * 74])
def test_push_past_the_end_is_refused(script: str) -> None:
    with pytest.raises(ScriptError):
        list(iter_script(bytes.fromhex(script)))


def test_op_return_script_pushes_its_data() -> None:
    assert op_return_script(b"hi").hex() == "6a026869"


# -- standard output scripts and witness programs -------------------------------------


def test_p2wpkh_commits_to_hash160_of_the_compressed_key() -> None:
    assert p2wpkh_script(KEY.public_key) == b"\x00\x14" + hash160(KEY.public_key.data)


def test_p2wsh_commits_to_sha256_of_the_witness_script() -> None:
    assert p2wsh_script(b"\x51") == b"\x00\x20" + sha256(b"\x51")


def test_p2tr_pays_to_the_xonly_key() -> None:
    assert p2tr_script(XKEY) == b"\x51\x20" + XKEY.data


def test_p2a_is_a_two_byte_v1_program() -> None:
    assert parse_witness_program(P2A_SCRIPT) == (1, bytes.fromhex("4e73"))


@st.composite
def _programs(draw: st.DrawFn) -> tuple[int, bytes]:
    version = draw(st.integers(min_value=0, max_value=16))
    size = draw(st.sampled_from([20, 32]) if version == 0 else st.integers(2, 40))
    return version, draw(st.binary(min_size=size, max_size=size))


@given(_programs())
def test_witness_program_round_trips(program: tuple[int, bytes]) -> None:
    assert parse_witness_program(witness_program_script(*program)) == program


@pytest.mark.parametrize(
    "script",
    [
        "76a914" + "00" * 20 + "88ac",  # P2PKH
        "a914" + "00" * 20 + "87",  # P2SH
        "0001ff",  # three bytes: too short
        "5129" + "00" * 41,  # 41-byte program: too long
        "0014" + "00" * 19,  # length byte does not match
        "4f02ffff",  # OP_1NEGATE is not a version
        "4c0200" + "00",  # OP_PUSHDATA1 is not a direct push
        "",
    ],
)
def test_non_witness_scripts_have_no_program(script: str) -> None:
    assert parse_witness_program(bytes.fromhex(script)) is None


@pytest.mark.parametrize(
    ("version", "size"), [(0, 21), (0, 2), (1, 1), (1, 41), (17, 32), (-1, 32)]
)
def test_impossible_witness_program_is_refused(version: int, size: int) -> None:
    with pytest.raises(ScriptError):
        witness_program_script(version, bytes(size))


def test_output_type_predicates() -> None:
    wpkh, wsh, tr = p2wpkh_script(bytes(20)), p2wsh_script(b""), p2tr_script(XKEY)
    assert [is_p2wpkh(s) for s in (wpkh, wsh, tr, P2A_SCRIPT)] == [True, False, False, False]
    assert [is_p2wsh(s) for s in (wpkh, wsh, tr, P2A_SCRIPT)] == [False, True, False, False]
    assert [is_p2tr(s) for s in (wpkh, wsh, tr, P2A_SCRIPT)] == [False, False, True, False]
    assert [is_p2a(s) for s in (wpkh, wsh, tr, P2A_SCRIPT)] == [False, False, False, True]


# -- SuperScalar leaves -----------------------------------------------------------------


def test_timeout_leaf_is_cltv_drop_key_checksig() -> None:
    # 800,000 = 0x0c3500: a 3-byte little-endian script number.
    expected = "0300350c" + "b1" + "75" + "20" + XKEY.hex() + "ac"
    assert timeout_leaf_script(800_000, XKEY).hex() == expected


def test_csv_leaf_is_csv_drop_key_checksig() -> None:
    # 144 = 0x90 has its sign bit set, so it needs a second (zero) byte.
    expected = "029000" + "b2" + "75" + "20" + XKEY.hex() + "ac"
    assert csv_delay_leaf_script(144, XKEY).hex() == expected


@pytest.mark.parametrize("cltv", [0, -1, 2**32, True])
def test_timeout_leaf_refuses_a_locktime_out_of_range(cltv: int) -> None:
    with pytest.raises(ScriptError):
        timeout_leaf_script(cltv, XKEY)


@pytest.mark.parametrize("delay", [0, -1, 2**32, 1 << 31, (1 << 31) | 10])
def test_csv_leaf_refuses_a_delay_out_of_range_or_disabled(delay: int) -> None:
    with pytest.raises(ScriptError):
        csv_delay_leaf_script(delay, XKEY)


_VALUE = 50_000
_OUT = (TxOut(_VALUE - 1_000, P2A_SCRIPT),)


def _leaf_spend_accepted(leaf_script: bytes, *, locktime: int, sequence: int, version: int) -> bool:
    info = TaprootSpendInfo(SecretKey.from_int(7).xonly_public_key, balanced_tree([leaf_script]))
    spent = (TxOut(_VALUE, info.script_pubkey),)
    tx = spend_tx(1, _OUT, version=version, locktime=locktime, sequence=sequence)
    return consensus_accepts(sign_script_path(tx, spent, 0, info, 0, KEY), spent)


_CLTVS = [1, 16, 17, 127, 128, 255, 256, 32767, 32768, 8_388_608, 499_999_999]
_CLTV_TIMES = [500_000_000, 2**31 - 1, 2**31, 2**32 - 1]


@pytest.mark.parametrize("cltv", _CLTVS + _CLTV_TIMES)
def test_consensus_accepts_timeout_leaf_at_its_locktime(cltv: int) -> None:
    leaf = timeout_leaf_script(cltv, XKEY)
    assert _leaf_spend_accepted(leaf, locktime=cltv, sequence=0xFFFFFFFE, version=2)


@pytest.mark.parametrize("cltv", _CLTVS + _CLTV_TIMES)
def test_consensus_refuses_timeout_leaf_one_below_its_locktime(cltv: int) -> None:
    leaf = timeout_leaf_script(cltv, XKEY)
    assert not _leaf_spend_accepted(leaf, locktime=cltv - 1, sequence=0xFFFFFFFE, version=2)


def test_consensus_refuses_timeout_leaf_with_a_final_sequence() -> None:
    leaf = timeout_leaf_script(800_000, XKEY)
    assert not _leaf_spend_accepted(leaf, locktime=800_000, sequence=0xFFFFFFFF, version=2)


def test_consensus_refuses_height_timeout_leaf_with_a_time_locktime() -> None:
    leaf = timeout_leaf_script(800_000, XKEY)
    assert not _leaf_spend_accepted(leaf, locktime=500_000_000, sequence=0, version=2)


_DELAYS = [1, 16, 17, 127, 128, 144, 0xFFFF, SEQUENCE_LOCKTIME_TYPE_FLAG | 1]
_DELAYS += [SEQUENCE_LOCKTIME_TYPE_FLAG | 0xFFFF]


@pytest.mark.parametrize("delay", _DELAYS)
def test_consensus_accepts_csv_leaf_at_its_delay(delay: int) -> None:
    leaf = csv_delay_leaf_script(delay, XKEY)
    assert _leaf_spend_accepted(leaf, locktime=0, sequence=delay, version=2)


@pytest.mark.parametrize("delay", _DELAYS)
def test_consensus_refuses_csv_leaf_one_below_its_delay(delay: int) -> None:
    leaf = csv_delay_leaf_script(delay, XKEY)
    assert not _leaf_spend_accepted(leaf, locktime=0, sequence=delay - 1, version=2)


def test_consensus_refuses_csv_leaf_in_a_version_1_transaction() -> None:
    leaf = csv_delay_leaf_script(10, XKEY)
    assert not _leaf_spend_accepted(leaf, locktime=0, sequence=10, version=1)


def test_consensus_refuses_block_csv_leaf_with_a_time_sequence() -> None:
    leaf = csv_delay_leaf_script(10, XKEY)
    seq = SEQUENCE_LOCKTIME_TYPE_FLAG | 0xFFFF
    assert not _leaf_spend_accepted(leaf, locktime=0, sequence=seq, version=2)
