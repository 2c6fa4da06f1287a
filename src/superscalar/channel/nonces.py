"""MuSig2 nonces for commitment signing: JIT signing nonces, counter-based verification nonces.

Simple-taproot-channel nonce roles, for a 2-of-2 funding key:

- A *signing nonce* is made just in time by the side that signs the
  counterparty's commitment, used once at once and sent with the partial
  signature. It never touches disk.
- A *verification nonce* is the holder's half of the session for its own
  next commitment, sent ahead (at open, then one per revoke_and_ack). The
  holder only ever signs with it when it force-closes, possibly after a
  restart, so it must be reproducible without storing a secret nonce.

Verification nonces therefore come from libsecp256k1's stateless
`secp256k1_musig_nonce_gen_counter`: a keyed PRF of the funding secret key,
the commitment number (the non-repeating counter) and the funding outpoint
(extra input; no aggregate key, so the nonce can be announced in the open
message before the peer's funding key is known). Each commitment number is
signed by its holder at most once, and always over the same transaction, so
the nonce is never used for two messages.
"""

from __future__ import annotations

from ..bitcoin.tx import OutPoint
from ..crypto.errors import CryptoError
from ..crypto.hashes import tagged_hash
from ..crypto.keys import SecretKey
from ..crypto.musig import PublicNonce, SecretNonce, generate_nonce_counter

__all__ = ["verification_nonce"]

_U64 = (1 << 64) - 1


def verification_nonce(
    funding_key: SecretKey, funding: OutPoint, number: int
) -> tuple[SecretNonce, PublicNonce]:
    """The holder's deterministic nonce for its commitment `number` on this funding output."""
    if not 0 <= number <= _U64:
        raise CryptoError("commitment number out of range for a nonce counter")
    extra = tagged_hash("SuperScalar/channel/verification-nonce", funding.serialize())
    return generate_nonce_counter(funding_key, number, extra=extra)
