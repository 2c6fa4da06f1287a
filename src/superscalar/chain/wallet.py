"""The regtest node's small wallet: P2TR key-path keys, coin selection, change, signing.

It exists to fund factories and pay CPFP fees in demos and tests. Keys derive
from one seed kept in the node's database (regtest coins only, so no
encryption); each address is a BIP86-style key-path-only taproot output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from superscalar.bitcoin.address import Network, script_pubkey_to_address
from superscalar.bitcoin.fees import Feerate, dust_threshold
from superscalar.bitcoin.sighash import taproot_sighash
from superscalar.bitcoin.taproot import taproot_output, tweak_secret_key
from superscalar.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from superscalar.crypto import schnorr
from superscalar.crypto.hashes import tagged_hash
from superscalar.crypto.keys import CURVE_ORDER, SecretKey

__all__ = ["InsufficientFundsError", "Spendable", "Wallet"]

_TAG = "superscalar/regtest-wallet"
_SEQUENCE = 0xFFFFFFFD  # final for nLockTime, signals replaceability like bitcoind
_PLACEHOLDER_WITNESS = (bytes(64),)  # a SIGHASH_DEFAULT key-path signature is 64 bytes


class InsufficientFundsError(ValueError):
    """The wallet's spendable coins cannot cover the amount plus fee."""


@dataclass(frozen=True, slots=True)
class Spendable:
    """A wallet coin that may be spent now (mature, unspent, confirmed or own change)."""

    outpoint: OutPoint
    output: TxOut
    confirmations: int


class Wallet:
    """Keys from a seed; `next_index` keys have been handed out."""

    def __init__(self, seed: bytes, next_index: int = 0, network: Network = Network.REGTEST):
        if len(seed) != 32:
            raise ValueError("wallet seed must be 32 bytes")
        self._seed = seed
        self.network = network
        self.next_index = 0
        self._keys: dict[bytes, SecretKey] = {}
        for _ in range(next_index):
            self._derive_next()

    def _derive_next(self) -> bytes:
        index = self.next_index
        counter = 0
        while True:
            digest = tagged_hash(_TAG, self._seed + index.to_bytes(4, "big") + bytes([counter]))
            if 0 < int.from_bytes(digest, "big") < CURVE_ORDER:
                break
            counter += 1
        secret = SecretKey(digest)
        script = taproot_output(secret.xonly_public_key).script_pubkey
        self._keys[script] = secret
        self.next_index += 1
        return script

    def new_script(self) -> bytes:
        """A fresh receiving scriptPubKey (the caller persists `next_index`)."""
        return self._derive_next()

    def address(self, script_pubkey: bytes) -> str:
        return script_pubkey_to_address(script_pubkey, self.network)

    @property
    def scripts(self) -> Sequence[bytes]:
        return tuple(self._keys)

    def owns(self, script_pubkey: bytes) -> bool:
        return script_pubkey in self._keys

    # -- spending --------------------------------------------------------------------

    def build_payment(
        self,
        coins: Sequence[Spendable],
        outputs: Sequence[TxOut],
        feerate: Feerate,
        change_script: bytes,
        subtract_fee: bool = False,
    ) -> Transaction:
        """`fund_payment`, then sign every input."""
        unsigned, spent = self.fund_payment(coins, outputs, feerate, change_script, subtract_fee)
        return self.sign(unsigned, spent)

    def fund_payment(
        self,
        coins: Sequence[Spendable],
        outputs: Sequence[TxOut],
        feerate: Feerate,
        change_script: bytes,
        subtract_fee: bool = False,
    ) -> tuple[Transaction, list[TxOut]]:
        """Select coins (confirmed first, largest first) and add change; unsigned.

        Returns the transaction and the outputs its inputs spend (for signing).

        Sizes are measured on the real transaction with placeholder 64-byte
        key-path signatures (their size is fixed), so the fee is exact. Change
        below dust is left to the fee rather than created; with `subtract_fee`
        the first output pays the fee. Raises `InsufficientFundsError`.
        """
        if not outputs:
            raise ValueError("a payment needs at least one output")
        target = sum(o.value for o in outputs)
        ordered = sorted(coins, key=lambda c: (c.confirmations == 0, -c.output.value))
        change_probe = TxOut(0, change_script)
        chosen: list[Spendable] = []
        total = 0
        for coin in ordered:
            chosen.append(coin)
            total += coin.output.value
            fee = feerate.fee_for_vsize(_vsize(chosen, [*outputs, change_probe]))
            if total >= target + (0 if subtract_fee else fee):
                break
        else:
            raise InsufficientFundsError(
                f"insufficient funds: have {total} sat spendable, need {target} sat plus fee"
            )
        pay = list(outputs)
        fee_no_change = feerate.fee_for_vsize(_vsize(chosen, pay))
        fee_with_change = feerate.fee_for_vsize(_vsize(chosen, [*pay, change_probe]))
        if subtract_fee:
            change = total - target
            fee = fee_with_change if change >= dust_threshold(change_script) else fee_no_change
            first = pay[0]
            if first.value - fee < dust_threshold(first.script_pubkey):
                raise InsufficientFundsError("amount is too small to pay the fee")
            pay[0] = TxOut(first.value - fee, first.script_pubkey)
        else:
            change = total - target - fee_with_change
            if change < dust_threshold(change_script):
                change = 0  # the remainder (at least fee_no_change) goes to the fee
        if change > 0:
            pay.append(TxOut(change, change_script))
        inputs = tuple(TxIn(c.outpoint, b"", _SEQUENCE) for c in chosen)
        return Transaction(2, inputs, tuple(pay), 0), [c.output for c in chosen]

    def sign(self, tx: Transaction, spent: Sequence[TxOut]) -> Transaction:
        """Key-path sign every input whose spent output is ours (others are left as they are)."""
        witnesses: list[tuple[bytes, ...]] = []
        for index, out in enumerate(spent):
            secret = self._keys.get(out.script_pubkey)
            if secret is None:
                witnesses.append(tx.inputs[index].witness)
                continue
            digest = taproot_sighash(tx, index, spent)
            witnesses.append((schnorr.sign(tweak_secret_key(secret, None), digest),))
        return tx.with_witnesses(witnesses)

    def secret_for(self, script_pubkey: bytes) -> SecretKey | None:
        """The untweaked key behind a wallet script (for tests that co-sign)."""
        return self._keys.get(script_pubkey)


def _vsize(coins: Sequence[Spendable], outputs: Sequence[TxOut]) -> int:
    """The vsize the signed payment will have (key-path witnesses are fixed-size)."""
    inputs = tuple(TxIn(c.outpoint, b"", _SEQUENCE, _PLACEHOLDER_WITNESS) for c in coins)
    return Transaction(2, inputs, tuple(outputs), 0).vsize
