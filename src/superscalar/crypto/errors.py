"""Typed errors for the crypto core: bad input raises one of these, never crashes."""

from __future__ import annotations


class CryptoError(ValueError):
    """Base class: any malformed key, nonce, signature or misuse."""


class InvalidKeyError(CryptoError):
    """A secret or public key that is not a valid secp256k1 key."""


class InvalidSignatureError(CryptoError):
    """A signature (or pre-signature) that is malformed or does not verify."""


class InvalidNonceError(CryptoError):
    """A MuSig2 public or aggregate nonce that does not parse."""


class NonceReuseError(CryptoError):
    """A MuSig2 secret nonce was used a second time."""


class InvalidContributionError(CryptoError):
    """A MuSig2 participant's contribution is bad; `signer` names who (None: the aggregator).

    `contrib` is what was bad: "pubkey", "pubnonce", "aggnonce" or "psig" (BIP327 naming).
    """

    def __init__(self, signer: int | None, contrib: str, message: str = "") -> None:
        self.signer = signer
        self.contrib = contrib
        who = "aggregator" if signer is None else f"signer {signer}"
        super().__init__(message or f"invalid {contrib} from {who}")


class InvalidPartialSignatureError(InvalidContributionError, InvalidSignatureError):
    """A MuSig2 partial signature failed verification; `signer` names who sent it."""

    def __init__(self, signer: int | None, message: str = "") -> None:
        super().__init__(signer, "psig", message)


class ShachainError(CryptoError):
    """A per-commitment secret that is out of order or does not derive earlier ones."""
