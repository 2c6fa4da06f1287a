"""BIP341/342 sighashes, judged by Bitcoin Core's consensus code (libbitcoinkernel).

Every positive test signs with our digest and asks the kernel to verify the
spend, so a wrong digest cannot pass; the commitment tests change one part of
the transaction after signing and check the kernel's verdict flips (or not)
exactly as BIP341 says it should for that hash type.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from superscalar.bitcoin.script import P2A_SCRIPT, Op, build_script
from superscalar.bitcoin.sighash import (
    SIGHASH_ALL,
    SIGHASH_ANYONECANPAY,
    SIGHASH_DEFAULT,
    SIGHASH_NONE,
    SIGHASH_SINGLE,
    VALID_TAPROOT_HASH_TYPES,
    SighashContext,
    SighashError,
    parse_taproot_signature,
    signature_with_hash_type,
    taproot_sighash,
)
from superscalar.bitcoin.taproot import TaprootSpendInfo, balanced_tree
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.chain.consensus import ScriptVerifyError, verify_input
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey
from tests.bitcoin.spend_support import consensus_accepts, outpoint

INTERNAL = [SecretKey.from_int(0x1000 + i) for i in range(3)]
LEAF_KEYS = [SecretKey.from_int(0x2000 + i) for i in range(3)]
ANNEX = b"\x50" + b"superscalar annex"
_NO_CODESEP = 0xFFFFFFFF

HASH_TYPES = sorted(VALID_TAPROOT_HASH_TYPES)
HASH_TYPE_IDS = [f"{h:#04x}" for h in HASH_TYPES]


def _leaves(key: SecretKey) -> list[bytes]:
    x = key.xonly_public_key.data
    return [
        build_script(x, Op.OP_CHECKSIG),
        build_script(Op.OP_CODESEPARATOR, x, Op.OP_CHECKSIG),
    ]


INFOS = [
    TaprootSpendInfo(INTERNAL[i].xonly_public_key, balanced_tree(_leaves(LEAF_KEYS[i])))
    for i in range(3)
]
SPENT = tuple(TxOut(10_000 * (i + 1), INFOS[i].script_pubkey) for i in range(3))
OUTPUTS = (
    TxOut(9_000, INFOS[0].script_pubkey),
    TxOut(8_000, INFOS[1].script_pubkey),
    TxOut(0, P2A_SCRIPT),
)
TX = Transaction(2, tuple(TxIn(outpoint(i), b"", 0xFFFFFFFD) for i in range(3)), OUTPUTS, 0)


def _sign(
    tx: Transaction,
    index: int,
    hash_type: int,
    *,
    spent: tuple[TxOut, ...] = SPENT,
    annex: bytes | None = None,
    leaf: int | None = None,
    codesep_pos: int = _NO_CODESEP,
    digest_hash_type: int | None = None,
) -> Transaction:
    """`tx` with input `index` signed (key path, or script path through `leaf`).

    `digest_hash_type` signs a digest for another hash type than the one the
    signature declares, to show the kernel notices.
    """
    ctx = SighashContext(tx, spent)
    digest_type = hash_type if digest_hash_type is None else digest_hash_type
    info = INFOS[index]
    tail = [annex] if annex is not None else []
    if leaf is None:
        digest = ctx.key_path(index, digest_type, annex=annex)
        sig = schnorr.sign(info.tweak_secret_key(INTERNAL[index]), digest)
        return tx.with_witness(index, [signature_with_hash_type(sig, hash_type), *tail])
    leaf_hash = info.leaves[leaf].leaf_hash
    digest = ctx.script_path(index, leaf_hash, digest_type, annex=annex, codesep_pos=codesep_pos)
    sig = signature_with_hash_type(schnorr.sign(LEAF_KEYS[index], digest), hash_type)
    return tx.with_witness(index, [*info.script_path_witness(leaf, [sig]), *tail])


def _sign_all(tx: Transaction, hash_type: int, **kwargs: object) -> Transaction:
    for index in range(len(tx.inputs)):
        tx = _sign(tx, index, hash_type, **kwargs)  # type: ignore[arg-type]
    return tx


def _input_ok(tx: Transaction, index: int, spent: tuple[TxOut, ...] = SPENT) -> bool:
    try:
        verify_input(tx, index, spent)
    except ScriptVerifyError:
        return False
    return True


# -- every hash type, key path and script path, with and without an annex -------------


@pytest.mark.parametrize("annex", [None, ANNEX], ids=["no-annex", "annex"])
@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_consensus_accepts_key_path_signatures(hash_type: int, annex: bytes | None) -> None:
    assert consensus_accepts(_sign_all(TX, hash_type, annex=annex), SPENT)


@pytest.mark.parametrize("annex", [None, ANNEX], ids=["no-annex", "annex"])
@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_consensus_accepts_script_path_signatures(hash_type: int, annex: bytes | None) -> None:
    assert consensus_accepts(_sign_all(TX, hash_type, annex=annex, leaf=0), SPENT)


@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_consensus_accepts_a_signature_after_a_codeseparator(hash_type: int) -> None:
    signed = _sign_all(TX, hash_type, leaf=1, codesep_pos=0)
    assert consensus_accepts(signed, SPENT)


def test_consensus_refuses_a_signature_that_ignores_the_codeseparator() -> None:
    assert not _input_ok(_sign(TX, 0, SIGHASH_DEFAULT, leaf=1), 0)


@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_consensus_refuses_a_digest_for_another_hash_type(hash_type: int) -> None:
    other = SIGHASH_ALL if hash_type != SIGHASH_ALL else SIGHASH_DEFAULT
    assert not _input_ok(_sign(TX, 0, hash_type, digest_hash_type=other), 0)


def test_consensus_refuses_a_key_path_digest_on_the_script_path() -> None:
    ctx = SighashContext(TX, SPENT)
    sig = schnorr.sign(LEAF_KEYS[0], ctx.key_path(0))
    assert not _input_ok(TX.with_witness(0, INFOS[0].script_path_witness(0, [sig])), 0)


def test_consensus_refuses_a_signature_made_without_the_annex_it_carries() -> None:
    unsigned_for_annex = _sign(TX, 0, SIGHASH_DEFAULT)
    with_annex = unsigned_for_annex.with_witness(0, [*unsigned_for_annex.inputs[0].witness, ANNEX])
    assert not _input_ok(with_annex, 0)


def test_consensus_refuses_a_signature_for_a_different_annex() -> None:
    signed = _sign(TX, 0, SIGHASH_DEFAULT, annex=ANNEX)
    sig = signed.inputs[0].witness[0]
    assert not _input_ok(signed.with_witness(0, [sig, ANNEX + b"!"]), 0)


def test_default_and_all_digests_differ() -> None:
    ctx = SighashContext(TX, SPENT)
    assert ctx.key_path(0, SIGHASH_DEFAULT) != ctx.key_path(0, SIGHASH_ALL)


def test_one_off_sighash_equals_the_context_sighash() -> None:
    ctx = SighashContext(TX, SPENT)
    leaf_hash = INFOS[1].leaves[0].leaf_hash
    assert taproot_sighash(TX, 1, SPENT, SIGHASH_SINGLE, annex=ANNEX) == ctx.key_path(
        1, SIGHASH_SINGLE, annex=ANNEX
    )
    assert taproot_sighash(TX, 1, SPENT, leaf_hash=leaf_hash) == ctx.script_path(1, leaf_hash)


# -- what each hash type commits to -------------------------------------------------------


def _other_outputs(tx: Transaction) -> Transaction:
    """Change every output except output 0."""
    outputs = (tx.outputs[0], *(replace(o, value=o.value + 1) for o in tx.outputs[1:]))
    return replace(tx, outputs=outputs)


def _own_output(tx: Transaction) -> Transaction:
    """Change output 0 only."""
    return replace(tx, outputs=(replace(tx.outputs[0], value=1), *tx.outputs[1:]))


def _other_input(tx: Transaction) -> Transaction:
    """Replace input 1 with a different coin."""
    inputs = list(tx.inputs)
    inputs[1] = replace(inputs[1], prevout=OutPoint(b"\x99" * 32, 9))
    return replace(tx, inputs=tuple(inputs))


def _other_sequence(tx: Transaction) -> Transaction:
    inputs = list(tx.inputs)
    inputs[1] = replace(inputs[1], sequence=0)
    return replace(tx, inputs=tuple(inputs))


def _other_amount(spent: tuple[TxOut, ...]) -> tuple[TxOut, ...]:
    return (spent[0], replace(spent[1], value=spent[1].value + 1), spent[2])


_ACP = SIGHASH_ANYONECANPAY


@pytest.mark.parametrize(
    ("hash_type", "still_valid"),
    [
        (SIGHASH_DEFAULT, False),
        (SIGHASH_ALL, False),
        (SIGHASH_NONE, True),
        (SIGHASH_SINGLE, True),
        (_ACP | SIGHASH_ALL, False),
        (_ACP | SIGHASH_NONE, True),
        (_ACP | SIGHASH_SINGLE, True),
    ],
    ids=HASH_TYPE_IDS,
)
def test_changing_other_outputs_breaks_only_signatures_covering_them(
    hash_type: int, still_valid: bool
) -> None:
    signed = _sign(TX, 0, hash_type)
    assert _input_ok(signed, 0)
    assert _input_ok(_other_outputs(signed), 0) is still_valid


@pytest.mark.parametrize(
    ("hash_type", "still_valid"),
    [
        (SIGHASH_DEFAULT, False),
        (SIGHASH_ALL, False),
        (SIGHASH_NONE, True),
        (SIGHASH_SINGLE, False),
        (_ACP | SIGHASH_ALL, False),
        (_ACP | SIGHASH_NONE, True),
        (_ACP | SIGHASH_SINGLE, False),
    ],
    ids=HASH_TYPE_IDS,
)
def test_changing_the_inputs_own_output_breaks_all_but_none(
    hash_type: int, still_valid: bool
) -> None:
    assert _input_ok(_own_output(_sign(TX, 0, hash_type)), 0) is still_valid


@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_changing_another_input_breaks_only_signatures_without_anyonecanpay(
    hash_type: int,
) -> None:
    moved = _other_input(_sign(TX, 0, hash_type))
    assert _input_ok(moved, 0) is bool(hash_type & _ACP)


@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_changing_another_inputs_sequence_breaks_only_signatures_without_anyonecanpay(
    hash_type: int,
) -> None:
    # Unlike BIP143, BIP341 keeps sha_sequences under NONE and SINGLE.
    moved = _other_sequence(_sign(TX, 0, hash_type))
    assert _input_ok(moved, 0) is bool(hash_type & _ACP)


@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_changing_another_spent_amount_breaks_only_signatures_without_anyonecanpay(
    hash_type: int,
) -> None:
    signed = _sign(TX, 0, hash_type)
    assert _input_ok(signed, 0, _other_amount(SPENT)) is bool(hash_type & _ACP)


@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_every_hash_type_commits_to_the_locktime(hash_type: int) -> None:
    signed = _sign(TX, 0, hash_type)
    assert not _input_ok(replace(signed, locktime=1), 0)


@pytest.mark.parametrize("hash_type", HASH_TYPES, ids=HASH_TYPE_IDS)
def test_every_hash_type_commits_to_the_inputs_own_amount(hash_type: int) -> None:
    signed = _sign(TX, 0, hash_type)
    spent = (replace(SPENT[0], value=SPENT[0].value + 1), *SPENT[1:])
    assert not _input_ok(signed, 0, spent)


def test_anyonecanpay_signature_survives_adding_an_input() -> None:
    signed = _sign(TX, 0, _ACP | SIGHASH_ALL)
    extra = TxIn(outpoint(7), b"", 0)
    grown = replace(signed, inputs=(*signed.inputs, extra))
    assert _input_ok(grown, 0, (*SPENT, TxOut(1, P2A_SCRIPT)))


def test_default_signature_with_an_explicit_type_byte_is_refused() -> None:
    signed = _sign(TX, 0, SIGHASH_DEFAULT)
    sig = signed.inputs[0].witness[0]
    assert not _input_ok(signed.with_witness(0, [sig + b"\x00"]), 0)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hash_type", [0x04, 0x80, 0x84, 0xC1, 0xFF])
def test_invalid_hash_type_is_refused(hash_type: int) -> None:
    with pytest.raises(SighashError, match="hash type"):
        SighashContext(TX, SPENT).key_path(0, hash_type)


def test_single_without_a_matching_output_is_refused() -> None:
    tx = replace(TX, outputs=TX.outputs[:2])
    with pytest.raises(SighashError, match="SINGLE"):
        SighashContext(tx, SPENT).key_path(2, SIGHASH_SINGLE)


def test_input_index_out_of_range_is_refused() -> None:
    with pytest.raises(SighashError):
        SighashContext(TX, SPENT).key_path(3)


@pytest.mark.parametrize("annex", [b"", b"\x51", b"\x00\x50"])
def test_annex_not_starting_with_0x50_is_refused(annex: bytes) -> None:
    with pytest.raises(SighashError, match="annex"):
        SighashContext(TX, SPENT).key_path(0, annex=annex)


def test_leaf_hash_must_be_32_bytes() -> None:
    with pytest.raises(SighashError):
        SighashContext(TX, SPENT).script_path(0, bytes(31))


def test_one_spent_output_per_input_is_required() -> None:
    with pytest.raises(SighashError):
        SighashContext(TX, SPENT[:2])


def test_signature_parsing_reads_the_hash_type_byte() -> None:
    sig = bytes(range(64))
    assert parse_taproot_signature(sig) == (sig, SIGHASH_DEFAULT)
    assert parse_taproot_signature(sig + b"\x83") == (sig, 0x83)


@pytest.mark.parametrize("witness_sig", [bytes(64) + b"\x00", bytes(64) + b"\x04", bytes(63)])
def test_malformed_witness_signature_is_refused(witness_sig: bytes) -> None:
    with pytest.raises(SighashError):
        parse_taproot_signature(witness_sig)


def test_default_signature_is_written_without_a_type_byte() -> None:
    sig = bytes(64)
    assert signature_with_hash_type(sig, SIGHASH_DEFAULT) == sig
    assert signature_with_hash_type(sig, SIGHASH_NONE) == sig + b"\x02"
