"""BOLT-3 key derivation for the leaf channel: basepoints, per-commitment keys, secrets.

Every commitment uses fresh keys derived from each side's static basepoints
and the commitment holder's per-commitment point, so a watchtower can be
handed revocation data without learning which outputs are whose, and a
revealed per-commitment secret turns exactly one commitment's revocation key
into a key the counterparty can sign with. Formulas (BOLT #3, "Key Derivation"):

    pubkey            = basepoint + SHA256(per_commitment_point || basepoint)·G
    privkey           = basepoint_secret + SHA256(per_commitment_point || basepoint)
    revocationpubkey  = R·SHA256(R || P) + P·SHA256(P || R)      (R: revocation basepoint)
    revocationprivkey = r·SHA256(R || P) + p·SHA256(P || R)      (P = p·G)

`remotepubkey` is the counterparty's payment basepoint itself (static remote
key), so a node that lost its state can still find its to_remote outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.hashes import sha256, tagged_hash
from ..crypto.keys import CURVE_ORDER, PublicKey, SecretKey
from ..crypto.shachain import ShachainSeed

__all__ = [
    "Basepoints",
    "ChannelSecrets",
    "CommitmentKeys",
    "derive_privkey",
    "derive_pubkey",
    "derive_revocation_privkey",
    "derive_revocation_pubkey",
    "per_commitment_point",
]


_RECENT = 8


def _scalar(data: bytes) -> int:
    return int.from_bytes(data, "big")


def derive_pubkey(basepoint: PublicKey, point: PublicKey) -> PublicKey:
    """`basepoint + SHA256(per_commitment_point || basepoint)·G`."""
    return basepoint.add_scalar(sha256(point.data + basepoint.data))


def derive_privkey(basepoint_secret: SecretKey, point: PublicKey) -> SecretKey:
    """`basepoint_secret + SHA256(per_commitment_point || basepoint)` mod n."""
    tweak = _scalar(sha256(point.data + basepoint_secret.public_key.data))
    return SecretKey.from_int((basepoint_secret.to_int() + tweak) % CURVE_ORDER)


def derive_revocation_pubkey(revocation_basepoint: PublicKey, point: PublicKey) -> PublicKey:
    """The blinded revocation key: neither side alone knows its secret."""
    basepoint, per_commitment = revocation_basepoint.data, point.data
    left = revocation_basepoint.multiply(sha256(basepoint + per_commitment))
    right = point.multiply(sha256(per_commitment + basepoint))
    return PublicKey.combine([left, right])


def derive_revocation_privkey(
    revocation_basepoint_secret: SecretKey, per_commitment_secret: bytes
) -> SecretKey:
    """The revocation secret, once the holder has revealed its per-commitment secret."""
    point = SecretKey(per_commitment_secret).public_key
    basepoint = revocation_basepoint_secret.public_key
    a = _scalar(sha256(basepoint.data + point.data))
    b = _scalar(sha256(point.data + basepoint.data))
    value = (revocation_basepoint_secret.to_int() * a + _scalar(per_commitment_secret) * b) % (
        CURVE_ORDER
    )
    return SecretKey.from_int(value)


def per_commitment_point(secret: bytes) -> PublicKey:
    """`per_commitment_secret · G`."""
    return SecretKey(secret).public_key


@dataclass(frozen=True, slots=True)
class Basepoints:
    """One side's static public keys, exchanged when the channel opens."""

    funding: PublicKey
    revocation: PublicKey
    payment: PublicKey
    delayed_payment: PublicKey
    htlc: PublicKey


class ChannelSecrets:
    """One side's channel secrets, all derived from a single 32-byte channel seed.

    The node keeps only the seed (in its keystore); the channel core is handed
    this object on every step and never puts a secret into the state it
    returns, so the state can be persisted and logged freely.
    """

    __slots__ = (
        "_recent",
        "delayed_payment",
        "funding",
        "htlc",
        "payment",
        "revocation",
        "shachain",
    )

    funding: SecretKey
    revocation: SecretKey
    payment: SecretKey
    delayed_payment: SecretKey
    htlc: SecretKey
    shachain: ShachainSeed

    def __init__(
        self,
        funding: SecretKey,
        revocation: SecretKey,
        payment: SecretKey,
        delayed_payment: SecretKey,
        htlc: SecretKey,
        shachain: ShachainSeed,
    ) -> None:
        self.funding = funding
        self.revocation = revocation
        self.payment = payment
        self.delayed_payment = delayed_payment
        self.htlc = htlc
        self.shachain = shachain
        # A shachain derivation is 48 SHA256s in Python; each step needs the
        # secrets/points of the last few commitments, so keep those at hand.
        self._recent: dict[int, tuple[bytes, PublicKey]] = {}

    @classmethod
    def from_seed(cls, seed: bytes) -> ChannelSecrets:
        """Derive every key from `seed` with domain-separated tagged hashes."""
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("channel seed must be 32 bytes")

        def key(name: str) -> SecretKey:
            data = tagged_hash(f"SuperScalar/channel/{name}", seed)
            while _scalar(data) == 0 or _scalar(data) >= CURVE_ORDER:  # pragma: no cover
                data = sha256(data)
            return SecretKey(data)

        return cls(
            key("funding"),
            key("revocation"),
            key("payment"),
            key("delayed_payment"),
            key("htlc"),
            ShachainSeed(tagged_hash("SuperScalar/channel/shachain", seed)),
        )

    def basepoints(self) -> Basepoints:
        return Basepoints(
            self.funding.public_key,
            self.revocation.public_key,
            self.payment.public_key,
            self.delayed_payment.public_key,
            self.htlc.public_key,
        )

    def _secret_and_point(self, number: int) -> tuple[bytes, PublicKey]:
        found = self._recent.get(number)
        if found is None:
            secret = self.shachain.commitment_secret(number)
            found = (secret, SecretKey(secret).public_key)
            if len(self._recent) >= _RECENT:
                del self._recent[min(self._recent)]
            self._recent[number] = found
        return found

    def per_commitment_secret(self, number: int) -> bytes:
        """The BOLT-3 shachain secret of our commitment `number` (0, 1, 2, ...)."""
        return self._secret_and_point(number)[0]

    def per_commitment_point(self, number: int) -> PublicKey:
        return self._secret_and_point(number)[1]

    def __repr__(self) -> str:
        return f"ChannelSecrets(<secret for {self.funding.public_key.hex()}>)"


@dataclass(frozen=True, slots=True)
class CommitmentKeys:
    """The keys of one commitment transaction, seen from its holder ("local").

    `revocation` lets the counterparty take everything once this commitment is
    revoked; `local_delayed` is the holder's CSV-delayed key; the two HTLC keys
    sign the 2-of-2 HTLC leaves; `remote_payment` is the counterparty's static
    to_remote key.
    """

    per_commitment_point: PublicKey
    revocation: PublicKey
    local_delayed: PublicKey
    local_htlc: PublicKey
    remote_htlc: PublicKey
    remote_payment: PublicKey

    @classmethod
    def derive(
        cls, holder: Basepoints, counterparty: Basepoints, point: PublicKey
    ) -> CommitmentKeys:
        return cls(
            per_commitment_point=point,
            revocation=derive_revocation_pubkey(counterparty.revocation, point),
            local_delayed=derive_pubkey(holder.delayed_payment, point),
            local_htlc=derive_pubkey(holder.htlc, point),
            remote_htlc=derive_pubkey(counterparty.htlc, point),
            remote_payment=counterparty.payment,
        )
