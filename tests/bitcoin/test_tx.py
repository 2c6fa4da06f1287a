"""Transactions: serialization round trips, ids and sizes of real transactions, strict decoding."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.tx import (
    MAX_COMPACT_SIZE,
    MAX_MONEY,
    AmountError,
    OutPoint,
    Transaction,
    TxDecodeError,
    TxError,
    TxIn,
    TxOut,
    encode_varint,
    hash256,
    read_varint,
)
from tests.bitcoin.strategies import transactions
from tests.conftest import load_json

KNOWN: list[dict[str, Any]] = load_json("txs/known_transactions.json")["transactions"]
known_params = pytest.mark.parametrize("case", KNOWN, ids=[c["name"] for c in KNOWN])

_PREVOUT = OutPoint(bytes(range(32)), 7)


def _simple_tx(witness: tuple[bytes, ...] = ()) -> Transaction:
    return Transaction(2, (TxIn(_PREVOUT, b"", 0xFFFFFFFD, witness),), (TxOut(1000, b"\x51"),), 0)


# -- round trips ------------------------------------------------------------------


@given(transactions())
def test_any_transaction_round_trips_through_bytes(tx: Transaction) -> None:
    assert Transaction.from_bytes(tx.to_bytes()) == tx


@given(transactions())
def test_any_transaction_round_trips_through_hex(tx: Transaction) -> None:
    assert Transaction.from_hex(tx.hex()) == tx


@given(transactions(with_witness=True))
def test_stripped_serialization_parses_as_the_tx_without_witnesses(tx: Transaction) -> None:
    assert Transaction.from_bytes(tx.serialize(include_witness=False)) == tx.without_witnesses()


@given(transactions(with_witness=True))
def test_segwit_serialization_carries_marker_and_flag(tx: Transaction) -> None:
    assert tx.to_bytes()[4:6] == b"\x00\x01"


@given(transactions(with_witness=False))
def test_transaction_without_witness_serializes_legacy(tx: Transaction) -> None:
    assert tx.to_bytes() == tx.serialize(include_witness=False)
    assert tx.wtxid == tx.txid


@given(transactions())
def test_txid_is_hash256_of_the_stripped_serialization(tx: Transaction) -> None:
    assert tx.txid == hash256(tx.serialize(include_witness=False))
    assert tx.txid_hex == tx.txid[::-1].hex()


@given(transactions(with_witness=True))
def test_witness_does_not_change_the_txid_but_changes_the_wtxid(tx: Transaction) -> None:
    assert tx.txid == tx.without_witnesses().txid
    assert tx.wtxid != tx.txid


# -- real transactions ------------------------------------------------------------


@known_params
def test_known_transaction_reserializes_byte_for_byte(case: dict[str, Any]) -> None:
    assert Transaction.from_hex(case["hex"]).hex() == case["hex"]


@known_params
def test_known_transaction_txid_matches(case: dict[str, Any]) -> None:
    assert Transaction.from_hex(case["hex"]).txid_hex == case["txid"]


@pytest.mark.parametrize(
    "case", [c for c in KNOWN if c["wtxid"]], ids=[c["name"] for c in KNOWN if c["wtxid"]]
)
def test_known_transaction_wtxid_matches(case: dict[str, Any]) -> None:
    assert Transaction.from_hex(case["hex"]).wtxid_hex == case["wtxid"]


@known_params
def test_known_transaction_weight_and_vsize_match(case: dict[str, Any]) -> None:
    tx = Transaction.from_hex(case["hex"])
    assert tx.weight == case["weight"]
    assert tx.vsize == -(-case["weight"] // 4)


def test_segwit_coinbase_is_recognised_as_coinbase() -> None:
    coinbase = next(c for c in KNOWN if c["name"] == "testnet_segwit_coinbase")
    assert Transaction.from_hex(coinbase["hex"]).is_coinbase


# -- weight -----------------------------------------------------------------------


def test_a_script_sig_byte_weighs_four_units() -> None:
    tx = _simple_tx()
    longer = replace(tx, inputs=(replace(tx.inputs[0], script_sig=b"\x00"),))
    assert longer.weight - tx.weight == 4


def test_a_witness_byte_weighs_one_unit() -> None:
    tx = _simple_tx((b"\x01" * 10,))
    longer = tx.with_witness(0, [b"\x01" * 11])
    assert longer.weight - tx.weight == 1


def test_vsize_rounds_weight_up() -> None:
    tx = _simple_tx((b"\x01" * 10,))
    assert tx.weight % 4 != 0
    assert tx.vsize == tx.weight // 4 + 1


# -- strict decoding --------------------------------------------------------------


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_tx_decode_error(data: bytes) -> None:
    try:
        tx = Transaction.from_bytes(data)
    except TxDecodeError:
        return
    assert tx.to_bytes() == data


@st.composite
def _mutated_transactions(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(transactions()).to_bytes())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(min_value=0, max_value=max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[pos] ^= draw(st.integers(min_value=1, max_value=255))
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del raw[pos : pos + draw(st.integers(min_value=1, max_value=4))]
        else:
            del raw[pos:]
    return bytes(raw)


@given(_mutated_transactions())
def test_mutated_transactions_parse_canonically_or_raise_tx_decode_error(data: bytes) -> None:
    try:
        tx = Transaction.from_bytes(data)
    except TxDecodeError:
        return
    assert tx.to_bytes() == data  # whatever is accepted is the one canonical encoding


@known_params
def test_every_truncation_of_a_real_transaction_is_refused(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["hex"])
    for end in range(len(raw)):
        with pytest.raises(TxDecodeError):
            Transaction.from_bytes(raw[:end])


def test_trailing_byte_is_refused() -> None:
    with pytest.raises(TxDecodeError, match="trailing"):
        Transaction.from_bytes(_simple_tx().to_bytes() + b"\x00")


def test_non_canonical_input_count_is_refused() -> None:
    raw = _simple_tx().to_bytes()
    assert raw[4] == 1
    with pytest.raises(TxDecodeError, match="non-canonical"):
        Transaction.from_bytes(raw[:4] + b"\xfd\x01\x00" + raw[5:])


def test_non_canonical_script_length_is_refused() -> None:
    raw = _simple_tx().to_bytes()
    length_at = 4 + 1 + 41 + 1 + 8  # version, input count, input, output count, value
    assert raw[length_at : length_at + 2] == b"\x01\x51"
    patched = raw[:length_at] + b"\xfd\x01\x00" + raw[length_at + 1 :]
    with pytest.raises(TxDecodeError, match="non-canonical"):
        Transaction.from_bytes(patched)


@pytest.mark.parametrize("flag", [0x00, 0x02, 0x03, 0xFF])
def test_segwit_flag_other_than_one_is_refused(flag: int) -> None:
    raw = bytearray(_simple_tx((b"\x01",)).to_bytes())
    raw[5] = flag
    with pytest.raises(TxDecodeError, match="segwit flag"):
        Transaction.from_bytes(bytes(raw))


def test_segwit_serialization_with_all_witnesses_empty_is_refused() -> None:
    legacy = _simple_tx().to_bytes()
    # version | marker flag | inputs and outputs | one empty witness stack | locktime
    raw = legacy[:4] + b"\x00\x01" + legacy[4:-4] + b"\x00" + legacy[-4:]
    with pytest.raises(TxDecodeError, match="all witnesses empty"):
        Transaction.from_bytes(raw)


def test_segwit_serialization_with_zero_inputs_is_refused() -> None:
    raw = (2).to_bytes(4, "little") + b"\x00\x01" + b"\x00" + b"\x00" + bytes(4)
    with pytest.raises(TxDecodeError):
        Transaction.from_bytes(raw)


def test_empty_witness_item_counts_as_a_witness() -> None:
    tx = _simple_tx((b"",))
    assert tx.has_witness
    assert Transaction.from_bytes(tx.to_bytes()) == tx


def _with_output_value(value: int) -> bytes:
    raw = _simple_tx().to_bytes()
    value_at = 4 + 1 + 41 + 1
    return raw[:value_at] + value.to_bytes(8, "little") + raw[value_at + 8 :]


def test_output_of_max_money_is_accepted() -> None:
    assert Transaction.from_bytes(_with_output_value(MAX_MONEY)).outputs[0].value == MAX_MONEY


@pytest.mark.parametrize("value", [MAX_MONEY + 1, (1 << 63) - 1, (1 << 64) - 1])
def test_output_above_max_money_is_refused(value: int) -> None:
    with pytest.raises(TxDecodeError, match="outside"):
        Transaction.from_bytes(_with_output_value(value))


def test_length_above_max_compact_size_is_refused() -> None:
    raw = _simple_tx().to_bytes()
    script_sig_len_at = 4 + 1 + 36
    huge = encode_varint(MAX_COMPACT_SIZE + 1)
    with pytest.raises(TxDecodeError, match="exceeds"):
        Transaction.from_bytes(raw[:script_sig_len_at] + huge + raw[script_sig_len_at + 1 :])


def test_input_count_larger_than_the_data_is_refused_before_parsing() -> None:
    raw = _simple_tx().to_bytes()
    with pytest.raises(TxDecodeError, match="input count"):
        Transaction.from_bytes(raw[:4] + encode_varint(100_000) + raw[5:])


def test_non_hex_text_is_refused() -> None:
    with pytest.raises(TxDecodeError):
        Transaction.from_hex("zz")


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(TxDecodeError):
        Transaction.from_bytes("0200")  # type: ignore[arg-type]


# -- CompactSize ------------------------------------------------------------------

_VARINT_CASES = [
    (0, "00"),
    (0xFC, "fc"),
    (0xFD, "fdfd00"),
    (0xFFFF, "fdffff"),
    (0x10000, "fe00000100"),
    (0xFFFFFFFF, "feffffffff"),
    (0x100000000, "ff0000000001000000"),
    ((1 << 64) - 1, "ffffffffffffffffff"),
]


@pytest.mark.parametrize(("value", "encoded"), _VARINT_CASES)
def test_varint_encodes_at_each_size_boundary(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded


@pytest.mark.parametrize(("value", "encoded"), _VARINT_CASES)
def test_varint_decodes_at_each_size_boundary(value: int, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert read_varint(raw) == (value, len(raw))


@pytest.mark.parametrize("encoded", ["fdfc00", "feffff0000", "ffffffffff00000000"])
def test_varint_with_a_shorter_form_is_refused(encoded: str) -> None:
    with pytest.raises(TxDecodeError, match="non-canonical"):
        read_varint(bytes.fromhex(encoded))


@pytest.mark.parametrize("encoded", ["", "fd", "fdff", "feffffff", "ffffffffffffffff"])
def test_truncated_varint_is_refused(encoded: str) -> None:
    with pytest.raises(TxDecodeError, match="truncated"):
        read_varint(bytes.fromhex(encoded))


@pytest.mark.parametrize("value", [-1, 1 << 64])
def test_varint_out_of_range_cannot_be_encoded(value: int) -> None:
    with pytest.raises(TxError):
        encode_varint(value)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_varint_round_trips(value: int) -> None:
    raw = encode_varint(value)
    assert read_varint(raw + b"\xaa") == (value, len(raw))


# -- values -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, MAX_MONEY + 1])
def test_output_value_outside_money_range_is_refused(value: int) -> None:
    with pytest.raises(AmountError):
        TxOut(value, b"")


def test_output_value_must_be_an_int_not_a_bool() -> None:
    with pytest.raises(AmountError):
        TxOut(True, b"")


def test_outpoint_needs_a_32_byte_txid() -> None:
    with pytest.raises(TxError):
        OutPoint(bytes(31), 0)


def test_outpoint_vout_is_a_uint32() -> None:
    with pytest.raises(TxError):
        OutPoint(bytes(32), 1 << 32)


def test_outpoint_hex_is_in_display_order() -> None:
    display = "00" * 31 + "ff"
    point = OutPoint.from_txid_hex(display, 3)
    assert point.txid == b"\xff" + bytes(31)
    assert str(point) == f"{display}:3"


def test_sequence_is_a_uint32() -> None:
    with pytest.raises(TxError):
        TxIn(_PREVOUT, b"", 1 << 32)


def test_null_outpoint_makes_a_coinbase() -> None:
    tx = replace(_simple_tx(), inputs=(TxIn(OutPoint.null(), b"\x51\x51"),))
    assert tx.is_coinbase
    assert not _simple_tx().is_coinbase


def test_outpoint_of_missing_output_is_refused() -> None:
    with pytest.raises(TxError):
        _simple_tx().outpoint(1)


def test_outpoint_names_this_transaction() -> None:
    tx = _simple_tx()
    assert tx.outpoint(0) == OutPoint(tx.txid, 0)


def test_with_witnesses_needs_one_stack_per_input() -> None:
    with pytest.raises(TxError):
        _simple_tx().with_witnesses([[b"\x01"], [b"\x02"]])


def test_with_witness_replaces_only_that_input() -> None:
    tx = _simple_tx()
    signed = tx.with_witness(0, [b"\x01", b"\x02"])
    assert signed.inputs[0].witness == (b"\x01", b"\x02")
    assert signed.without_witnesses() == tx
