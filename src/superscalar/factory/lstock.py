"""Per-generation L-stock burn secrets (see `outputs` for the output construction).

The LSP derives, for each leaf, a BOLT-3 shachain seed from one factory seed;
generation g of that leaf uses shachain secret number g as a secp256k1 secret
key s_g, and the L-stock output of that generation commits to P_g = s_g·G.
Revealing s_g supersedes generation g. Because secrets come from a shachain,
a client can keep every secret it was ever given in at most 49 entries
(`superscalar.crypto.shachain.ShachainStore`) and re-derive any of them when
an old state shows up on chain.
"""

from __future__ import annotations

from ..crypto.errors import InvalidKeyError
from ..crypto.hashes import tagged_hash
from ..crypto.keys import SecretKey, XOnlyPublicKey
from ..crypto.shachain import ShachainSeed, ShachainStore, commitment_index
from .errors import FactoryError

__all__ = ["LStockSecrets", "burn_key_from_secret", "reveal_into_store", "verify_burn_secret"]


def burn_key_from_secret(secret: bytes) -> SecretKey:
    """The burn key of a revealed per-generation secret (the secret is the scalar)."""
    try:
        return SecretKey(secret)
    except InvalidKeyError as exc:  # pragma: no cover - probability ~2^-128
        raise FactoryError("revealed L-stock secret is not a valid secret key") from exc


def verify_burn_secret(point: XOnlyPublicKey, secret: bytes) -> SecretKey:
    """Check a revealed secret against the point the client signed for; its burn key."""
    if not isinstance(secret, bytes) or len(secret) != 32:
        raise FactoryError("an L-stock secret is 32 bytes")
    key = burn_key_from_secret(secret)
    if key.xonly_public_key != point:
        raise FactoryError("revealed L-stock secret does not match the committed point")
    return key


def reveal_into_store(
    store: ShachainStore, generation: int, point: XOnlyPublicKey, secret: bytes
) -> SecretKey:
    """Verify a revealed secret for `generation` and keep it in the client's shachain store."""
    key = verify_burn_secret(point, secret)
    store.insert(commitment_index(generation), secret)
    return key


class LStockSecrets:
    """The LSP's burn-secret generator: never printed, never sent except as reveals."""

    __slots__ = ("_seed",)

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise FactoryError("L-stock seed must be 32 bytes")
        self._seed = seed

    def __repr__(self) -> str:
        return "LStockSecrets(<secret>)"

    def _leaf_seed(self, leaf: int) -> ShachainSeed:
        return ShachainSeed(tagged_hash("SuperScalar/lstock", self._seed + leaf.to_bytes(4, "big")))

    def secret(self, leaf: int, generation: int) -> bytes:
        """s_g for `leaf`: what the LSP reveals once generation g is superseded."""
        return self._leaf_seed(leaf).commitment_secret(generation)

    def burn_key(self, leaf: int, generation: int) -> SecretKey:
        return burn_key_from_secret(self.secret(leaf, generation))

    def point(self, leaf: int, generation: int) -> XOnlyPublicKey:
        """P_g, committed to by the L-stock output of `leaf`'s generation g."""
        return self.burn_key(leaf, generation).xonly_public_key
