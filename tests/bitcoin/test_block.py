"""Blocks: merkle roots, the witness commitment, BIP34 coinbases and headers.

Beyond the genesis blocks' known hashes, the regtest blocks built here are fed
to libbitcoinkernel, which accepts them only if the merkle root (odd counts
included), the witness commitment and the BIP34 height push are right.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superscalar.bitcoin.block import (
    REGTEST_BITS,
    WITNESS_COMMITMENT_HEADER,
    Block,
    BlockHeader,
    bits_to_target,
    coinbase_transaction,
    merkle_root,
    witness_commitment_script,
)
from superscalar.bitcoin.script import Op, build_script, push_data, push_int
from superscalar.bitcoin.sighash import SighashContext
from superscalar.bitcoin.taproot import TaprootSpendInfo
from superscalar.bitcoin.tx import (
    COIN,
    OutPoint,
    Transaction,
    TxDecodeError,
    TxIn,
    TxOut,
    hash256,
)
from superscalar.chain.kernel import BlockRejectedError, KernelChain
from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey
from tests.bitcoin.strategies import transactions, u32

# -- genesis blocks, from Bitcoin Core's src/kernel/chainparams.cpp (CreateGenesisBlock) ----------

_TIMES = b"The Times 03/Jan/2009 Chancellor on brink of second bailout for banks"
_SATOSHI_KEY = bytes.fromhex(
    "04678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb6"
    "49f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5f"
)
# `CScript() << 486604799 << CScriptNum(4) << timestamp`: CScriptNum(4) is pushed as
# data (01 04), not as OP_4, so it is written out by hand here.
_GENESIS_SCRIPT_SIG = push_int(486604799) + b"\x01\x04" + push_data(_TIMES)
GENESIS_COINBASE = Transaction(
    1,
    (TxIn(OutPoint.null(), _GENESIS_SCRIPT_SIG, 0xFFFFFFFF),),
    (TxOut(50 * COIN, build_script(_SATOSHI_KEY, Op.OP_CHECKSIG)),),
    0,
)
GENESIS_MERKLE_ROOT = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


def _genesis(time: int, nonce: int, bits: int) -> Block:
    header = BlockHeader(1, bytes(32), merkle_root([GENESIS_COINBASE.txid]), time, bits, nonce)
    return Block(header, (GENESIS_COINBASE,))


MAINNET_GENESIS = _genesis(1231006505, 2083236893, 0x1D00FFFF)
REGTEST_GENESIS = _genesis(1296688602, 2, REGTEST_BITS)


def test_genesis_coinbase_txid_is_the_known_merkle_root() -> None:
    assert GENESIS_COINBASE.txid_hex == GENESIS_MERKLE_ROOT
    assert MAINNET_GENESIS.header.merkle_root[::-1].hex() == GENESIS_MERKLE_ROOT


def test_mainnet_genesis_hash_matches_bitcoin_core() -> None:
    expected = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert MAINNET_GENESIS.hash_hex == expected


def test_regtest_genesis_hash_matches_bitcoin_core() -> None:
    expected = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    assert REGTEST_GENESIS.hash_hex == expected


def test_mainnet_genesis_meets_its_target() -> None:
    assert MAINNET_GENESIS.header.meets_target()
    assert not replace(MAINNET_GENESIS.header, nonce=0).meets_target()


def test_genesis_block_is_285_bytes_and_round_trips() -> None:
    raw = MAINNET_GENESIS.serialize()
    assert len(raw) == 285
    assert MAINNET_GENESIS.weight == 4 * 285
    assert Block.from_bytes(raw) == MAINNET_GENESIS


@pytest.mark.parametrize(
    ("bits", "target"),
    [
        (0x1D00FFFF, 0xFFFF << 208),
        (REGTEST_BITS, 0x7FFFFF << 232),
        (0x03123456, 0x123456),
        (0x02123456, 0x1234),
    ],
)
def test_compact_bits_expand_to_their_target(bits: int, target: int) -> None:
    assert bits_to_target(bits) == target


# -- merkle roots ---------------------------------------------------------------------------------

hashes32 = st.binary(min_size=32, max_size=32)


def test_merkle_root_of_one_hash_is_that_hash() -> None:
    assert merkle_root([b"\x11" * 32]) == b"\x11" * 32


def test_merkle_root_of_three_duplicates_the_odd_hash() -> None:
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    expected = hash256(hash256(a + b) + hash256(c + c))
    assert merkle_root([a, b, c]) == expected


@given(st.lists(hashes32, min_size=1, max_size=20).filter(lambda h: len(h) % 2 == 1 and len(h) > 1))
def test_odd_level_equals_the_level_with_its_last_hash_repeated(hashes: list[bytes]) -> None:
    assert merkle_root(hashes) == merkle_root([*hashes, hashes[-1]])


def test_merkle_root_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        merkle_root([])


# -- witness commitment and coinbase --------------------------------------------------------------


def test_witness_commitment_is_an_op_return_of_the_bip141_header_and_hash() -> None:
    script = witness_commitment_script([])
    assert len(script) == 38
    assert script[:2] == b"\x6a\x24"
    assert script[2:6] == WITNESS_COMMITMENT_HEADER


def test_witness_commitment_depends_on_the_wtxids() -> None:
    tx = Transaction(2, (TxIn(OutPoint(bytes(32), 0), b"", 0, (b"\x01",)),), (TxOut(1, b"\x51"),))
    assert witness_commitment_script([tx]) != witness_commitment_script([tx.with_witness(0, [])])


@pytest.mark.parametrize(
    ("height", "push"),
    [
        (0, "00"),
        (1, "51"),
        (16, "60"),
        (17, "0111"),
        (127, "017f"),
        (128, "028000"),
        (255, "02ff00"),
        (256, "020001"),
        (65535, "03ffff00"),
        (8_388_608, "0400008000"),
    ],
)
def test_coinbase_script_sig_starts_with_the_bip34_height_push(height: int, push: str) -> None:
    script_sig = coinbase_transaction(height, [TxOut(1, b"\x51")]).inputs[0].script_sig
    assert script_sig.hex().startswith(push)
    assert 2 <= len(script_sig) <= 100


def test_coinbase_carries_the_witness_reserved_value_and_commitment_last() -> None:
    coinbase = coinbase_transaction(5, [TxOut(1, b"\x51")])
    assert coinbase.is_coinbase
    assert coinbase.inputs[0].witness == (bytes(32),)
    assert coinbase.outputs[-1].script_pubkey == witness_commitment_script([])


# -- headers and block parsing -------------------------------------------------------------------

headers = st.builds(BlockHeader, u32, hashes32, hashes32, u32, u32, u32)


@given(headers)
def test_header_round_trips_through_80_bytes(header: BlockHeader) -> None:
    raw = header.serialize()
    assert len(raw) == 80
    assert BlockHeader.from_bytes(raw) == header


@pytest.mark.parametrize("size", [0, 79, 81])
def test_header_of_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(TxDecodeError):
        BlockHeader.from_bytes(bytes(size))


@given(headers, st.lists(transactions(min_outputs=1), min_size=1, max_size=4))
def test_block_round_trips_through_bytes(header: BlockHeader, txs: list[Transaction]) -> None:
    block = Block(header, tuple(txs))
    assert Block.from_bytes(block.serialize()) == block


def test_block_with_trailing_bytes_is_refused() -> None:
    with pytest.raises(TxDecodeError, match="trailing"):
        Block.from_bytes(MAINNET_GENESIS.serialize() + b"\x00")


def test_every_truncation_of_a_block_is_refused() -> None:
    raw = MAINNET_GENESIS.serialize()
    for end in range(len(raw)):
        with pytest.raises(TxDecodeError):
            Block.from_bytes(raw[:end])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_header_parse_or_raise_tx_decode_error(body: bytes) -> None:
    raw = MAINNET_GENESIS.header.serialize() + body
    try:
        block = Block.from_bytes(raw)
    except TxDecodeError:
        return
    assert block.serialize() == raw


def test_block_of_one_tiny_transaction_parses() -> None:
    # 51 bytes: one input, no outputs. Consensus refuses it, but it is a well-formed block.
    tiny = Transaction(1, (TxIn(OutPoint(bytes(32), 0)),), ())
    block = Block(MAINNET_GENESIS.header, (tiny,))
    assert len(tiny.to_bytes()) == 51
    assert Block.from_bytes(block.serialize()) == block


# -- blocks judged by libbitcoinkernel (regtest) ---------------------------------------------------

MINER = SecretKey.from_int(0xB10C)
MINER_INFO = TaprootSpendInfo(MINER.xonly_public_key)
SUBSIDY = 50 * COIN
_MATURE = 130


class _Miner:
    """A kernel regtest chain we extend with blocks built by `superscalar.bitcoin.block`."""

    def __init__(self, chain: KernelChain) -> None:
        self.chain = chain
        self.coinbases: dict[int, Transaction] = {}
        self.time = REGTEST_GENESIS.header.time
        self.spent_heights: set[int] = set()

    def build(self, txs: list[Transaction], fees: int = 0) -> Block:
        height = self.chain.height + 1
        self.time += 1
        payout = TxOut(SUBSIDY + fees, MINER_INFO.script_pubkey)
        coinbase = coinbase_transaction(height, [payout], txs)
        self.coinbases[height] = coinbase
        return Block.assemble(self.chain.block_hash(height - 1), self.time, [coinbase, *txs])

    def mine(self, txs: Sequence[Transaction] = (), fees: int = 0) -> Block:
        block = self.build(list(txs), fees)
        self.chain.process_block(block.serialize())
        return block

    def next_mature(self) -> int:
        """The lowest height whose coinbase is mature and not yet spent (then marked spent)."""
        limit = self.chain.height + 1 - 100
        height = min(h for h in self.coinbases if h <= limit and h not in self.spent_heights)
        self.spent_heights.add(height)
        return height

    def spend_coinbase(self, height: int, fee: int = 1_000) -> Transaction:
        """A key-path spend of the coinbase mined at `height` (must be mature)."""
        coinbase = self.coinbases[height]
        spent = coinbase.outputs[0]
        tx = Transaction(
            2,
            (TxIn(OutPoint(coinbase.txid, 0), b"", 0xFFFFFFFD),),
            (TxOut(spent.value - fee, spent.script_pubkey),),
        )
        digest = SighashContext(tx, (spent,)).key_path(0)
        return tx.with_witness(0, [schnorr.sign(MINER_INFO.tweak_secret_key(MINER), digest)])


@pytest.fixture(scope="module")
def miner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Miner]:
    chain = KernelChain(Path(tmp_path_factory.mktemp("kernel")))
    m = _Miner(chain)
    for _ in range(_MATURE):
        m.mine()
    yield m
    chain.close()


def test_kernel_has_our_regtest_genesis(miner: _Miner) -> None:
    assert miner.chain.block_hash(0) == REGTEST_GENESIS.hash


def test_kernel_stored_genesis_parses_and_reserializes(miner: _Miner) -> None:
    raw = miner.chain.read_block(0)
    assert Block.from_bytes(raw) == REGTEST_GENESIS
    assert REGTEST_GENESIS.serialize() == raw


def test_kernel_accepted_bip34_coinbases_at_every_early_height(miner: _Miner) -> None:
    # Regtest enforces BIP34 from height 1, so every block the fixture mined (heights
    # 1..16 as OP_1..OP_16, then data pushes) passed the kernel's height check.
    for height in range(1, _MATURE + 1):
        stored = Block.from_bytes(miner.chain.read_block(height))
        assert stored.transactions[0].inputs[0].script_sig.startswith(push_int(height))


@pytest.mark.parametrize("n_spends", [2, 3, 4, 5], ids=lambda n: f"{n + 1}-txs")
def test_kernel_accepts_blocks_with_witness_transactions(miner: _Miner, n_spends: int) -> None:
    spends = [miner.spend_coinbase(miner.next_mature()) for _ in range(n_spends)]
    before = miner.chain.height
    miner.mine(spends, fees=1_000 * n_spends)
    assert miner.chain.height == before + 1


def test_kernel_refuses_a_block_with_a_wrong_witness_commitment(miner: _Miner) -> None:
    spend = miner.spend_coinbase(miner.next_mature())
    block = miner.build([spend], fees=1_000)
    coinbase = block.transactions[0]
    bad_commitment = witness_commitment_script([spend.with_witness(0, [bytes(64)])])
    bad_coinbase = replace(coinbase, outputs=(*coinbase.outputs[:-1], TxOut(0, bad_commitment)))
    bad = Block.assemble(block.header.prev_hash, block.header.time, [bad_coinbase, spend])
    with pytest.raises(BlockRejectedError, match="bad-witness-merkle-match"):
        miner.chain.process_block(bad.serialize())


def test_kernel_refuses_a_block_with_a_wrong_merkle_root(miner: _Miner) -> None:
    spend = miner.spend_coinbase(miner.next_mature())
    block = miner.build([spend], fees=1_000)
    txs = list(block.transactions)
    wrong_root = merkle_root([tx.txid for tx in reversed(txs)])
    header = replace(block.header, merkle_root=wrong_root)
    while not header.meets_target():
        header = replace(header, nonce=header.nonce + 1)
    with pytest.raises(BlockRejectedError, match="bad-txnmrklroot"):
        miner.chain.process_block(Block(header, block.transactions).serialize())
