"""Taproot outputs of the leaf channel: funding, to_local, to_remote, HTLCs, second stage.

Designs (after the simple-taproot-channels extension, adapted to zero-fee
commitments with a single P2A anchor, so no output needs a key revealed for
third-party anchor sweeps):

- funding: key path only, MuSig2(KeySort(client, LSP)) with the BIP86 tweak —
  byte-for-byte the factory's leaf channel output.
- to_local: internal key = revocation key (a breach is a cheap key-path
  spend); one leaf `<local_delayed> CHECKSIGVERIFY <to_self_delay> CSV`.
- to_remote: internal key = NUMS (script path forced); one leaf
  `<remote_payment> CHECKSIGVERIFY 1 CSV` — the 1-block delay keeps an
  unconfirmed commitment from gaining children other than the anchor's.
- offered HTLC: internal key = revocation key; leaves
  timeout `<local_htlc> CHECKSIGVERIFY <remote_htlc> CHECKSIG` (the 2-of-2
  the HTLC-timeout tx spends; its nLockTime is in the remote's signature) and
  success `SIZE 32 EQUALVERIFY HASH160 <RIPEMD160(hash)> EQUALVERIFY
  <remote_htlc> CHECKSIGVERIFY 1 CSV` (the remote claims with the preimage).
- received HTLC: internal key = revocation key; leaves
  success `SIZE 32 EQUALVERIFY HASH160 <RIPEMD160(hash)> EQUALVERIFY
  <local_htlc> CHECKSIGVERIFY <remote_htlc> CHECKSIG` (HTLC-success tx) and
  timeout `<remote_htlc> CHECKSIGVERIFY 1 CSV VERIFY <cltv_expiry> CLTV`.
- second-stage (HTLC-success/-timeout) output: internal key = revocation key;
  one leaf `<local_delayed> CHECKSIGVERIFY <to_self_delay> CSV`.

PTLCs (an HTLC locked to a point P, see `htlc`) have no hash lock; the
scalar p moves through adaptor signatures instead, so every success path
needs *both* HTLC keys and the offerer's signature there is handed over as
a BIP340 adaptor signature locked to P (completing it publishes p):

- offered PTLC: internal key = revocation key; leaves timeout (as for an
  HTLC) and claim `<local_htlc> CHECKSIGVERIFY <remote_htlc> CHECKSIGVERIFY
  1 CSV`: the receiver spends it with a fixed claim tx the offerer
  adaptor-signs in its revoke_and_ack (see `commitment.ptlc_claim_tx`).
- received PTLC: internal key = revocation key; leaves success
  `<local_htlc> CHECKSIGVERIFY <remote_htlc> CHECKSIG` (the PTLC-success tx,
  the offerer's adaptor signature comes in commitment_signed) and timeout
  (as for an HTLC).

Every revocable output has the revocation key as its internal key, so a
penalty is one 64-byte key-path signature per output; the penalty builder
only needs the (public) tapscript root to tweak the revocation secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from ..bitcoin.script import Op, build_script
from ..bitcoin.taproot import TapBranch, TapLeaf, TaprootSpendInfo
from ..bitcoin.tx import TxOut
from ..crypto.keys import PublicKey, XOnlyPublicKey
from ..crypto.musig import KeyAggContext, aggregate_keys, sort_keys

__all__ = [
    "NUMS_KEY",
    "OFFERED_SUCCESS_LEAF",
    "OFFERED_TIMEOUT_LEAF",
    "RECEIVED_SUCCESS_LEAF",
    "RECEIVED_TIMEOUT_LEAF",
    "FundingOutput",
    "delayed_leaf",
    "funding_output",
    "offered_htlc_output",
    "offered_ptlc_output",
    "offered_success_leaf",
    "offered_timeout_leaf",
    "ptlc_claim_leaf",
    "received_htlc_output",
    "received_ptlc_output",
    "received_success_leaf",
    "received_timeout_leaf",
    "second_stage_output",
    "to_local_output",
    "to_remote_leaf",
    "to_remote_output",
]

NUMS_KEY = XOnlyPublicKey(
    bytes.fromhex("50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0")
)
"""BIP341's H = lift_x(SHA256(uncompressed G)): a key nobody can sign for."""

OFFERED_TIMEOUT_LEAF = 0
OFFERED_SUCCESS_LEAF = 1
RECEIVED_SUCCESS_LEAF = 0
RECEIVED_TIMEOUT_LEAF = 1
"""Leaf positions (depth-first) in the two HTLC trees."""

_MAX_CSV_BLOCKS = 0xFFFF
_LOCKTIME_THRESHOLD = 500_000_000


def _xonly(key: PublicKey) -> bytes:
    return key.data[1:]


def _hash_lock(payment_hash: bytes) -> list[Op | int | bytes]:
    if not isinstance(payment_hash, bytes) or len(payment_hash) != 32:
        raise ValueError("payment hash must be 32 bytes")
    digest = hashlib.new("ripemd160", payment_hash).digest()
    return [Op.OP_SIZE, 32, Op.OP_EQUALVERIFY, Op.OP_HASH160, digest, Op.OP_EQUALVERIFY]


def _check_delay(delay: int) -> None:
    if isinstance(delay, bool) or not isinstance(delay, int) or not 1 <= delay <= _MAX_CSV_BLOCKS:
        raise ValueError(f"CSV delay {delay!r} is outside 1..{_MAX_CSV_BLOCKS} blocks")


def delayed_leaf(key: PublicKey, delay: int) -> bytes:
    """`<key> CHECKSIGVERIFY <delay> CSV`: the holder's money after its relative delay."""
    _check_delay(delay)
    return build_script(_xonly(key), Op.OP_CHECKSIGVERIFY, delay, Op.OP_CHECKSEQUENCEVERIFY)


def to_remote_leaf(key: PublicKey) -> bytes:
    return build_script(_xonly(key), Op.OP_CHECKSIGVERIFY, 1, Op.OP_CHECKSEQUENCEVERIFY)


def offered_timeout_leaf(local_htlc: PublicKey, remote_htlc: PublicKey) -> bytes:
    return build_script(
        _xonly(local_htlc), Op.OP_CHECKSIGVERIFY, _xonly(remote_htlc), Op.OP_CHECKSIG
    )


def offered_success_leaf(payment_hash: bytes, remote_htlc: PublicKey) -> bytes:
    return build_script(
        *_hash_lock(payment_hash),
        _xonly(remote_htlc),
        Op.OP_CHECKSIGVERIFY,
        1,
        Op.OP_CHECKSEQUENCEVERIFY,
    )


def received_success_leaf(
    payment_hash: bytes, local_htlc: PublicKey, remote_htlc: PublicKey
) -> bytes:
    return build_script(
        *_hash_lock(payment_hash),
        _xonly(local_htlc),
        Op.OP_CHECKSIGVERIFY,
        _xonly(remote_htlc),
        Op.OP_CHECKSIG,
    )


def ptlc_claim_leaf(local_htlc: PublicKey, remote_htlc: PublicKey) -> bytes:
    """The receiver's direct claim of an offered PTLC: both keys (the offerer's adaptor-signed)."""
    return build_script(
        _xonly(local_htlc),
        Op.OP_CHECKSIGVERIFY,
        _xonly(remote_htlc),
        Op.OP_CHECKSIGVERIFY,
        1,
        Op.OP_CHECKSEQUENCEVERIFY,
    )


def received_timeout_leaf(remote_htlc: PublicKey, cltv_expiry: int) -> bytes:
    if not 0 < cltv_expiry < _LOCKTIME_THRESHOLD:
        raise ValueError(f"cltv_expiry {cltv_expiry} is not a block height")
    return build_script(
        _xonly(remote_htlc),
        Op.OP_CHECKSIGVERIFY,
        1,
        Op.OP_CHECKSEQUENCEVERIFY,
        Op.OP_VERIFY,
        cltv_expiry,
        Op.OP_CHECKLOCKTIMEVERIFY,
    )


def to_local_output(
    revocation: PublicKey, local_delayed: PublicKey, delay: int
) -> TaprootSpendInfo:
    return TaprootSpendInfo(revocation.xonly(), TapLeaf(delayed_leaf(local_delayed, delay)))


@lru_cache(maxsize=256)
def to_remote_output(remote_payment: PublicKey) -> TaprootSpendInfo:
    """Static per channel side (the payment basepoint is not tweaked), hence memoised."""
    return TaprootSpendInfo(NUMS_KEY, TapLeaf(to_remote_leaf(remote_payment)))


def offered_htlc_output(
    revocation: PublicKey, local_htlc: PublicKey, remote_htlc: PublicKey, payment_hash: bytes
) -> TaprootSpendInfo:
    tree = TapBranch(
        TapLeaf(offered_timeout_leaf(local_htlc, remote_htlc)),
        TapLeaf(offered_success_leaf(payment_hash, remote_htlc)),
    )
    return TaprootSpendInfo(revocation.xonly(), tree)


def received_htlc_output(
    revocation: PublicKey,
    local_htlc: PublicKey,
    remote_htlc: PublicKey,
    payment_hash: bytes,
    cltv_expiry: int,
) -> TaprootSpendInfo:
    tree = TapBranch(
        TapLeaf(received_success_leaf(payment_hash, local_htlc, remote_htlc)),
        TapLeaf(received_timeout_leaf(remote_htlc, cltv_expiry)),
    )
    return TaprootSpendInfo(revocation.xonly(), tree)


def offered_ptlc_output(
    revocation: PublicKey, local_htlc: PublicKey, remote_htlc: PublicKey
) -> TaprootSpendInfo:
    """Same leaf positions as an offered HTLC: timeout first, claim second."""
    tree = TapBranch(
        TapLeaf(offered_timeout_leaf(local_htlc, remote_htlc)),
        TapLeaf(ptlc_claim_leaf(local_htlc, remote_htlc)),
    )
    return TaprootSpendInfo(revocation.xonly(), tree)


def received_ptlc_output(
    revocation: PublicKey, local_htlc: PublicKey, remote_htlc: PublicKey, cltv_expiry: int
) -> TaprootSpendInfo:
    """Same leaf positions as a received HTLC: success (plain 2-of-2) first, timeout second."""
    success = build_script(
        _xonly(local_htlc), Op.OP_CHECKSIGVERIFY, _xonly(remote_htlc), Op.OP_CHECKSIG
    )
    tree = TapBranch(TapLeaf(success), TapLeaf(received_timeout_leaf(remote_htlc, cltv_expiry)))
    return TaprootSpendInfo(revocation.xonly(), tree)


def second_stage_output(
    revocation: PublicKey, local_delayed: PublicKey, delay: int
) -> TaprootSpendInfo:
    return TaprootSpendInfo(revocation.xonly(), TapLeaf(delayed_leaf(local_delayed, delay)))


@dataclass(frozen=True)
class FundingOutput:
    """The channel's funding output and the tweaked MuSig2 context that signs for it."""

    signing: KeyAggContext
    spend: TaprootSpendInfo

    @property
    def script_pubkey(self) -> bytes:
        return self.spend.script_pubkey

    def txout(self, amount_sat: int) -> TxOut:
        return TxOut(amount_sat, self.spend.script_pubkey)


def funding_output(a: PublicKey, b: PublicKey) -> FundingOutput:
    """2-of-2 MuSig2 over the sorted keys, key path only (BIP86 tweak)."""
    if a == b:
        raise ValueError("the two funding keys must differ")
    keyagg = aggregate_keys(sort_keys([a, b]))
    spend = TaprootSpendInfo(keyagg.xonly)
    signing = keyagg.taproot_tweak(None)
    if signing.xonly != spend.output_key:  # pragma: no cover - two BIP341 paths disagree
        raise AssertionError("MuSig2 taproot tweak disagrees with the output key")
    return FundingOutput(signing, spend)
