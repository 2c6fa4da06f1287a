"""BOLT-8 transport: Noise_XK_secp256k1_ChaChaPoly_SHA256, sans-IO.

Why this shape: the handshake and the cipher states are pure state machines
over bytes, so the official Appendix A vectors drive them directly (with the
ephemeral keys injected) and the asyncio shell in `connection.py` only moves
bytes. Nothing here touches a socket or a clock.

- `Initiator` dials a node whose static key it already knows (the XK pattern:
  the responder's key is *known*, the initiator's is *transmitted* in act 3),
  so a successful handshake authenticates both node keys.
- `Responder` learns the initiator's node key from act 3 (`remote_static`).
- `Transport` encrypts and decrypts Lightning-style packets
  (`2-byte length ‖ MAC ‖ body ‖ MAC`, body ≤ 65535 bytes) and rotates each
  direction's key every 1000 nonces (every 500 messages), as BOLT-8 requires.

Primitives: ECDH is BOLT-8's (SHA256 of the compressed shared point), computed
with libsecp256k1's point multiplication through `superscalar.crypto.keys`;
ChaCha20-Poly1305 (RFC 8439) and HKDF-SHA256 (RFC 5869) come from
`cryptography`. A failed act raises a typed `HandshakeError` whose `code` is
the spec's own name (e.g. `ACT1_BAD_TAG`); the handshake object is then dead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum, auto

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from superscalar.crypto.errors import InvalidKeyError
from superscalar.crypto.keys import PublicKey, SecretKey

from .errors import (
    HandshakeError,
    HandshakeKeyError,
    HandshakeMacError,
    HandshakeReadError,
    HandshakeVersionError,
    NoiseStateError,
    TransportError,
)

__all__ = [
    "ACT_ONE_SIZE",
    "ACT_THREE_SIZE",
    "ACT_TWO_SIZE",
    "HANDSHAKE_VERSION",
    "HEADER_SIZE",
    "MAC_SIZE",
    "MAX_MESSAGE_SIZE",
    "PROLOGUE",
    "PROTOCOL_NAME",
    "ROTATION_INTERVAL",
    "CipherState",
    "Initiator",
    "Responder",
    "SessionKeys",
    "Transport",
    "ecdh",
    "hkdf2",
]

PROTOCOL_NAME = b"Noise_XK_secp256k1_ChaChaPoly_SHA256"
PROLOGUE = b"lightning"
HANDSHAKE_VERSION = 0
ACT_ONE_SIZE = 50  # version ‖ e.pub (33) ‖ tag (16)
ACT_TWO_SIZE = 50
ACT_THREE_SIZE = 66  # version ‖ enc(s.pub) (33 + 16) ‖ tag (16)
MAC_SIZE = 16
HEADER_SIZE = 2 + MAC_SIZE  # encrypted big-endian length + its tag
MAX_MESSAGE_SIZE = 65535  # BOLT-8's ceiling on one packet's plaintext
ROTATION_INTERVAL = 1000  # nonces per key before it rotates

_ZERO_NONCE_PREFIX = b"\x00\x00\x00\x00"
# h = SHA256(protocolName); ck = h; h = SHA256(h ‖ prologue) — the same for every session.
_INITIAL_CK = hashlib.sha256(PROTOCOL_NAME).digest()
_INITIAL_H = hashlib.sha256(_INITIAL_CK + PROLOGUE).digest()


def _nonce(n: int) -> bytes:
    """Noise's nonce: 32 zero bits then a 64-bit little-endian counter."""
    return _ZERO_NONCE_PREFIX + n.to_bytes(8, "little")


def ecdh(secret: SecretKey, point: PublicKey) -> bytes:
    """BOLT-8 ECDH: SHA256 of the compressed point `secret·point` (libsecp256k1)."""
    return hashlib.sha256(point.multiply(secret.to_bytes()).data).digest()


def hkdf2(salt: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """BOLT-8 `HKDF(salt, ikm)`: RFC 5869 with empty info, 64 bytes split in two halves."""
    out = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=b"").derive(ikm)
    return out[:32], out[32:]


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


@dataclass(frozen=True)
class SessionKeys:
    """What a completed handshake yields: both directions' keys, the chaining key, the peer.

    `sk` encrypts what we send, `rk` decrypts what we receive; both cipher
    states start with chaining key `ck` (BOLT-8's `sck = rck = ck`). The repr
    never shows key material.
    """

    sk: bytes = field(repr=False)
    rk: bytes = field(repr=False)
    ck: bytes = field(repr=False)
    remote_static: PublicKey


class CipherState:
    """One direction of the transport: key, chaining key and nonce, with BOLT-8 rotation.

    Mutable on purpose (it *is* the nonce counter); not shared between directions.
    """

    __slots__ = ("_aead", "_ck", "_key", "nonce")

    def __init__(self, key: bytes, chaining_key: bytes) -> None:
        if len(key) != 32 or len(chaining_key) != 32:
            raise ValueError("cipher key and chaining key must be 32 bytes")
        self._key = key
        self._ck = chaining_key
        self._aead = ChaCha20Poly1305(key)
        self.nonce = 0

    def __repr__(self) -> str:
        return f"CipherState(nonce={self.nonce})"

    def _advance(self) -> None:
        self.nonce += 1
        if self.nonce == ROTATION_INTERVAL:
            # ck', k' = HKDF(ck, k); n = 0 (BOLT-8 "Lightning Message Key Rotation").
            self._ck, self._key = hkdf2(self._ck, self._key)
            self._aead = ChaCha20Poly1305(self._key)
            self.nonce = 0

    def encrypt(self, plaintext: bytes) -> bytes:
        """ChaCha20-Poly1305 with empty AD at the current nonce, then advance (and rotate)."""
        out = self._aead.encrypt(_nonce(self.nonce), plaintext, None)
        self._advance()
        return out

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Inverse of `encrypt`; raises `TransportError` (and does not advance) on a bad tag."""
        try:
            out = self._aead.decrypt(_nonce(self.nonce), ciphertext, None)
        except InvalidTag:
            raise TransportError("message authentication failed") from None
        self._advance()
        return out


class Transport:
    """Post-handshake packet encryption: `lc ‖ c`, where `lc` hides the body length.

    After any decryption failure the transport refuses all further input: the
    peer's nonce stream is out of step and nothing it sends can be trusted.
    """

    __slots__ = ("_failed", "_recv", "_send", "remote_static")

    def __init__(self, keys: SessionKeys) -> None:
        self._send = CipherState(keys.sk, keys.ck)
        self._recv = CipherState(keys.rk, keys.ck)
        self._failed = False
        self.remote_static = keys.remote_static

    def __repr__(self) -> str:
        return f"Transport(remote={self.remote_static.hex()})"

    def encrypt_message(self, message: bytes) -> bytes:
        """One packet: encrypted 2-byte length (+tag) then encrypted body (+tag)."""
        size = len(message)
        if size > MAX_MESSAGE_SIZE:
            raise ValueError(
                f"a BOLT-8 packet carries at most {MAX_MESSAGE_SIZE} bytes, got {size}"
            )
        return self._send.encrypt(size.to_bytes(2, "big")) + self._send.encrypt(message)

    def decrypt_length(self, header: bytes) -> int:
        """Decrypt an 18-byte header; returns the body length (read `length + MAC_SIZE` next)."""
        self._check_usable()
        if len(header) != HEADER_SIZE:
            self._failed = True
            raise TransportError(f"packet header must be {HEADER_SIZE} bytes, got {len(header)}")
        try:
            plain = self._recv.decrypt(bytes(header))
        except TransportError:
            self._failed = True
            raise
        return int.from_bytes(plain, "big")

    def decrypt_body(self, body: bytes) -> bytes:
        """Decrypt a packet body (`length + MAC_SIZE` bytes) whose header was just read."""
        self._check_usable()
        try:
            return self._recv.decrypt(bytes(body))
        except TransportError:
            self._failed = True
            raise

    def decrypt_message(self, packet: bytes) -> bytes:
        """Decrypt one whole packet (header and body); the lengths must match exactly."""
        length = self.decrypt_length(packet[:HEADER_SIZE])
        body = packet[HEADER_SIZE:]
        if len(body) != length + MAC_SIZE:
            self._failed = True
            raise TransportError(f"packet body is {len(body)} bytes, header says {length + 16}")
        return self.decrypt_body(body)

    def _check_usable(self) -> None:
        if self._failed:
            raise NoiseStateError("transport already failed; the connection must be dropped")


class _Step(Enum):
    START = auto()
    SENT_ACT_ONE = auto()
    SENT_ACT_TWO = auto()
    DONE = auto()
    FAILED = auto()


class _Handshake:
    """Shared Noise state: chaining key `ck`, handshake hash `h`, our keys, the step."""

    def __init__(self, local_static: SecretKey, ephemeral: SecretKey | None) -> None:
        self._s = local_static
        self._e = ephemeral if ephemeral is not None else SecretKey.generate()
        self._ck = _INITIAL_CK
        self._h = _INITIAL_H
        self._temp_k2 = b""
        self._re: PublicKey | None = None
        self._step = _Step.START

    def _expect(self, step: _Step, what: str) -> None:
        if self._step is not step:
            raise NoiseStateError(f"cannot {what} in handshake state {self._step.name}")

    def _mix_key(self, ikm: bytes) -> bytes:
        self._ck, temp_k = hkdf2(self._ck, ikm)
        return temp_k

    def _encrypt_and_hash(self, key: bytes, nonce: int, plaintext: bytes) -> bytes:
        c = ChaCha20Poly1305(key).encrypt(_nonce(nonce), plaintext, self._h)
        self._h = _sha256(self._h, c)
        return c

    def _decrypt_and_hash(
        self, act: int, key: bytes, nonce: int, c: bytes, *, ciphertext: bool = False
    ) -> bytes:
        try:
            p = ChaCha20Poly1305(key).decrypt(_nonce(nonce), c, self._h)
        except InvalidTag:
            what = "encrypted static key" if ciphertext else "handshake tag"
            raise HandshakeMacError(
                act, f"{what} failed to authenticate", ciphertext=ciphertext
            ) from None
        self._h = _sha256(self._h, c)
        return p

    def _read_ephemeral_act(self, act: int, data: bytes, size: int) -> tuple[PublicKey, bytes]:
        """Split a 50-byte act into (remote ephemeral key, tag); check length and version."""
        if len(data) != size:
            raise HandshakeReadError(act, f"act {act} must be {size} bytes, got {len(data)}")
        if data[0] != HANDSHAKE_VERSION:
            raise HandshakeVersionError(act, data[0])
        try:
            re = PublicKey(bytes(data[1:34]))
        except InvalidKeyError:
            raise HandshakeKeyError(act, "ephemeral public key does not parse") from None
        return re, bytes(data[34:])

    def _fail(self) -> None:
        self._step = _Step.FAILED


class Initiator(_Handshake):
    """The dialling side: knows the responder's node key up front.

    `ephemeral` exists only so the BOLT-8 vectors can be reproduced; live code
    must leave it None (a fresh key from the OS RNG for every session).
    """

    def __init__(
        self,
        local_static: SecretKey,
        remote_static: PublicKey,
        *,
        ephemeral: SecretKey | None = None,
    ) -> None:
        super().__init__(local_static, ephemeral)
        self.remote_static = remote_static
        self._h = _sha256(self._h, remote_static.data)

    def act_one(self) -> bytes:
        """`-> e, es`: the 50-byte act one."""
        self._expect(_Step.START, "send act one")
        epub = self._e.public_key.data
        self._h = _sha256(self._h, epub)
        temp_k1 = self._mix_key(ecdh(self._e, self.remote_static))
        c = self._encrypt_and_hash(temp_k1, 0, b"")
        self._step = _Step.SENT_ACT_ONE
        return bytes([HANDSHAKE_VERSION]) + epub + c

    def receive_act_two(self, data: bytes) -> tuple[bytes, SessionKeys]:
        """Check `<- e, ee`, then produce act three (`-> s, se`) and the session keys."""
        self._expect(_Step.SENT_ACT_ONE, "receive act two")
        try:
            re, c = self._read_ephemeral_act(2, data, ACT_TWO_SIZE)
            self._h = _sha256(self._h, re.data)
            self._temp_k2 = self._mix_key(ecdh(self._e, re))
            self._decrypt_and_hash(2, self._temp_k2, 0, c)
        except HandshakeError:
            self._fail()
            raise
        c3 = self._encrypt_and_hash(self._temp_k2, 1, self._s.public_key.data)
        temp_k3 = self._mix_key(ecdh(self._s, re))
        t = ChaCha20Poly1305(temp_k3).encrypt(_nonce(0), b"", self._h)
        sk, rk = hkdf2(self._ck, b"")
        self._step = _Step.DONE
        keys = SessionKeys(sk=sk, rk=rk, ck=self._ck, remote_static=self.remote_static)
        return bytes([HANDSHAKE_VERSION]) + c3 + t, keys


class Responder(_Handshake):
    """The listening side: learns (and authenticates) the initiator's node key in act three.

    `ephemeral` exists only for the BOLT-8 vectors; leave it None in live code.
    """

    def __init__(self, local_static: SecretKey, *, ephemeral: SecretKey | None = None) -> None:
        super().__init__(local_static, ephemeral)
        self._h = _sha256(self._h, local_static.public_key.data)

    def receive_act_one(self, data: bytes) -> bytes:
        """Check `-> e, es`, then produce the 50-byte act two (`<- e, ee`)."""
        self._expect(_Step.START, "receive act one")
        try:
            re, c = self._read_ephemeral_act(1, data, ACT_ONE_SIZE)
            self._h = _sha256(self._h, re.data)
            temp_k1 = self._mix_key(ecdh(self._s, re))
            self._decrypt_and_hash(1, temp_k1, 0, c)
        except HandshakeError:
            self._fail()
            raise
        self._re = re
        epub = self._e.public_key.data
        self._h = _sha256(self._h, epub)
        self._temp_k2 = self._mix_key(ecdh(self._e, re))
        c2 = self._encrypt_and_hash(self._temp_k2, 0, b"")
        self._step = _Step.SENT_ACT_TWO
        return bytes([HANDSHAKE_VERSION]) + epub + c2

    def receive_act_three(self, data: bytes) -> SessionKeys:
        """Check `-> s, se`: decrypt and authenticate the initiator's node key; derive keys."""
        self._expect(_Step.SENT_ACT_TWO, "receive act three")
        try:
            if len(data) != ACT_THREE_SIZE:
                detail = f"act 3 must be {ACT_THREE_SIZE} bytes, got {len(data)}"
                raise HandshakeReadError(3, detail)
            if data[0] != HANDSHAKE_VERSION:
                raise HandshakeVersionError(3, data[0])
            c, t = bytes(data[1:50]), bytes(data[50:])
            rs_bytes = self._decrypt_and_hash(3, self._temp_k2, 1, c, ciphertext=True)
            try:
                rs = PublicKey(rs_bytes)
            except InvalidKeyError:
                raise HandshakeKeyError(3, "initiator's static public key does not parse") from None
            temp_k3 = self._mix_key(ecdh(self._e, rs))
            self._decrypt_and_hash(3, temp_k3, 0, t)
        except HandshakeError:
            self._fail()
            raise
        rk, sk = hkdf2(self._ck, b"")
        self._step = _Step.DONE
        return SessionKeys(sk=sk, rk=rk, ck=self._ck, remote_static=rs)
