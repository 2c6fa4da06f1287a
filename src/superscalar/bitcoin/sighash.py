"""BIP341 signature messages and sighashes for taproot key-path and script-path spends.

A factory transaction can have many inputs signed many times (one MuSig2
session per input, per state), so the per-transaction hashes (prevouts,
amounts, scriptPubKeys, sequences, outputs) live in a `SighashContext` built
once per transaction and shared by every input's sighash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..crypto.hashes import sha256, tagged_hash
from .tx import Transaction, TxOut, encode_varint

__all__ = [
    "ANNEX_TAG",
    "SIGHASH_ALL",
    "SIGHASH_ANYONECANPAY",
    "SIGHASH_DEFAULT",
    "SIGHASH_NONE",
    "SIGHASH_SINGLE",
    "VALID_TAPROOT_HASH_TYPES",
    "SighashContext",
    "SighashError",
    "parse_taproot_signature",
    "signature_with_hash_type",
    "taproot_sighash",
    "taproot_sigmsg",
]

SIGHASH_DEFAULT = 0x00
SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80
VALID_TAPROOT_HASH_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83})
ANNEX_TAG = 0x50
_NO_CODESEP = 0xFFFFFFFF


class SighashError(ValueError):
    """A sighash that cannot be computed: bad hash type, index, annex or spent outputs."""


@dataclass(frozen=True)
class SighashContext:
    """One transaction and the outputs its inputs spend, with BIP341's shared hashes.

    `spent_outputs[i]` is the output that input i spends; taproot signatures
    commit to all their amounts and scriptPubKeys (unless ANYONECANPAY).
    """

    tx: Transaction
    spent_outputs: tuple[TxOut, ...]
    sha_prevouts: bytes = field(init=False, repr=False)
    sha_amounts: bytes = field(init=False, repr=False)
    sha_scriptpubkeys: bytes = field(init=False, repr=False)
    sha_sequences: bytes = field(init=False, repr=False)
    sha_outputs: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        spent = tuple(self.spent_outputs)
        if not all(isinstance(o, TxOut) for o in spent):
            raise SighashError("spent_outputs must be TxOut values")
        if len(spent) != len(self.tx.inputs):
            raise SighashError(f"{len(self.tx.inputs)} inputs but {len(spent)} spent outputs given")
        tx = self.tx
        for name, value in (
            ("spent_outputs", spent),
            ("sha_prevouts", sha256(b"".join(i.prevout.serialize() for i in tx.inputs))),
            ("sha_amounts", sha256(b"".join(o.value.to_bytes(8, "little") for o in spent))),
            ("sha_scriptpubkeys", sha256(b"".join(_varbytes(o.script_pubkey) for o in spent))),
            (
                "sha_sequences",
                sha256(b"".join(i.sequence.to_bytes(4, "little") for i in tx.inputs)),
            ),
            ("sha_outputs", sha256(b"".join(o.serialize() for o in tx.outputs))),
        ):
            object.__setattr__(self, name, value)

    def sigmsg(
        self,
        input_index: int,
        hash_type: int = SIGHASH_DEFAULT,
        *,
        annex: bytes | None = None,
        leaf_hash: bytes | None = None,
        codesep_pos: int = _NO_CODESEP,
    ) -> bytes:
        """BIP341 `SigMsg(hash_type, ext_flag)`; script path iff `leaf_hash` is given."""
        tx = self.tx
        if hash_type not in VALID_TAPROOT_HASH_TYPES:
            raise SighashError(f"invalid taproot hash type {hash_type:#x}")
        if not 0 <= input_index < len(tx.inputs):
            raise SighashError(f"transaction has no input {input_index}")
        if annex is not None and (not annex or annex[0] != ANNEX_TAG):
            raise SighashError("an annex must start with 0x50")
        if leaf_hash is not None and len(leaf_hash) != 32:
            raise SighashError("leaf hash must be 32 bytes")
        if not 0 <= codesep_pos <= _NO_CODESEP:
            raise SighashError("codesep_pos is outside 0..2^32-1")
        output_type = hash_type & 3
        anyonecanpay = bool(hash_type & SIGHASH_ANYONECANPAY)
        if output_type == SIGHASH_SINGLE and input_index >= len(tx.outputs):
            raise SighashError("SIGHASH_SINGLE without a matching output")

        parts = [
            bytes((hash_type,)),
            tx.version.to_bytes(4, "little"),
            tx.locktime.to_bytes(4, "little"),
        ]
        if not anyonecanpay:
            parts += [self.sha_prevouts, self.sha_amounts, self.sha_scriptpubkeys]
            parts.append(self.sha_sequences)
        if output_type not in (SIGHASH_NONE, SIGHASH_SINGLE):
            parts.append(self.sha_outputs)
        ext_flag = 0 if leaf_hash is None else 1
        parts.append(bytes((2 * ext_flag + (annex is not None),)))
        if anyonecanpay:
            txin, spent = tx.inputs[input_index], self.spent_outputs[input_index]
            parts += [txin.prevout.serialize(), spent.serialize()]
            parts.append(txin.sequence.to_bytes(4, "little"))
        else:
            parts.append(input_index.to_bytes(4, "little"))
        if annex is not None:
            parts.append(sha256(_varbytes(annex)))
        if output_type == SIGHASH_SINGLE:
            parts.append(sha256(tx.outputs[input_index].serialize()))
        if leaf_hash is not None:
            parts += [leaf_hash, b"\x00", codesep_pos.to_bytes(4, "little")]
        return b"".join(parts)

    def key_path(
        self, input_index: int, hash_type: int = SIGHASH_DEFAULT, *, annex: bytes | None = None
    ) -> bytes:
        """The 32-byte sighash a key-path signature for `input_index` signs."""
        return _tap_sighash(self.sigmsg(input_index, hash_type, annex=annex))

    def script_path(
        self,
        input_index: int,
        leaf_hash: bytes,
        hash_type: int = SIGHASH_DEFAULT,
        *,
        annex: bytes | None = None,
        codesep_pos: int = _NO_CODESEP,
    ) -> bytes:
        """The 32-byte sighash a tapscript signature (BIP342) in leaf `leaf_hash` signs."""
        msg = self.sigmsg(
            input_index, hash_type, annex=annex, leaf_hash=leaf_hash, codesep_pos=codesep_pos
        )
        return _tap_sighash(msg)


def _varbytes(data: bytes) -> bytes:
    return encode_varint(len(data)) + data


def _tap_sighash(sigmsg: bytes) -> bytes:
    return tagged_hash("TapSighash", b"\x00" + sigmsg)  # leading 0x00: sighash epoch


def taproot_sigmsg(
    tx: Transaction,
    input_index: int,
    spent_outputs: Sequence[TxOut],
    hash_type: int = SIGHASH_DEFAULT,
    *,
    annex: bytes | None = None,
    leaf_hash: bytes | None = None,
    codesep_pos: int = _NO_CODESEP,
) -> bytes:
    """One-off `SigMsg`; build a `SighashContext` instead when signing several inputs."""
    return SighashContext(tx, tuple(spent_outputs)).sigmsg(
        input_index, hash_type, annex=annex, leaf_hash=leaf_hash, codesep_pos=codesep_pos
    )


def taproot_sighash(
    tx: Transaction,
    input_index: int,
    spent_outputs: Sequence[TxOut],
    hash_type: int = SIGHASH_DEFAULT,
    *,
    annex: bytes | None = None,
    leaf_hash: bytes | None = None,
    codesep_pos: int = _NO_CODESEP,
) -> bytes:
    """One-off BIP341 sighash (key path, or script path when `leaf_hash` is given)."""
    return _tap_sighash(
        taproot_sigmsg(
            tx,
            input_index,
            spent_outputs,
            hash_type,
            annex=annex,
            leaf_hash=leaf_hash,
            codesep_pos=codesep_pos,
        )
    )


def signature_with_hash_type(signature: bytes, hash_type: int) -> bytes:
    """The witness form of a 64-byte signature: bare for DEFAULT, else with the type byte."""
    if len(signature) != 64:
        raise SighashError("a BIP340 signature is 64 bytes")
    if hash_type not in VALID_TAPROOT_HASH_TYPES:
        raise SighashError(f"invalid taproot hash type {hash_type:#x}")
    return signature if hash_type == SIGHASH_DEFAULT else signature + bytes((hash_type,))


def parse_taproot_signature(witness_sig: bytes) -> tuple[bytes, int]:
    """Split a witness signature into (64-byte signature, hash type), as BIP341 requires.

    A 65-byte signature whose last byte is 0x00 is invalid: DEFAULT is only
    expressed by omitting the byte.
    """
    if len(witness_sig) == 64:
        return witness_sig, SIGHASH_DEFAULT
    if len(witness_sig) == 65:
        hash_type = witness_sig[64]
        if hash_type == SIGHASH_DEFAULT or hash_type not in VALID_TAPROOT_HASH_TYPES:
            raise SighashError(f"invalid taproot hash type byte {hash_type:#x}")
        return witness_sig[:64], hash_type
    raise SighashError(f"taproot signature of {len(witness_sig)} bytes (need 64 or 65)")
