"""Signing plans, sparse MuSig2 bundles and an in-process ceremony driver.

A *session* is one MuSig2 signature: one message (a BIP341 key-path sighash)
under one tweaked key aggregate, signed by a fixed set of participants
(0 = LSP, p ≥ 1 = client position p − 1). A *plan* is the set of sessions of
one ceremony — the whole tree at creation, a subtree on an advance, one
transaction for a cooperative close.

Bundles are sparse: a participant sends nonces and partial signatures only for
the sessions it is in, i.e. for the nodes on its own root→leaf path (the LSP
is in all of them). For a tree of depth d that is 2(d+1) entries per client,
O(N log N) over the factory, never O(N × nodes). The coordinator (the LSP)
refuses a bundle that misses or adds a session, verifies every partial
signature as it arrives and blames its sender, so one bad client is named
rather than making the whole aggregate fail.

Rounds (DESIGN: PROPOSE → NONCES → PSIGS → READY):

1. each `Signer.nonces()` → `NonceBundle` to the coordinator;
2. `Coordinator.aggregate_nonces()` → one `AggNonceBundle` per signer (BIP327
   lets an untrusted aggregator do this: a wrong aggregate only yields an
   invalid signature, never a forgery);
3. each `Signer.sign(agg)` → `PartialSigBundle` (its secret nonces are consumed
   here and can never sign again);
4. `Coordinator.finalize()` → a BIP340 signature per session, each checked.

Bundles have a compact, strict binary encoding (`to_bytes`/`from_bytes`) so
their sizes can be measured and the wire layer can carry them as opaque bytes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from ..bitcoin.tx import TxDecodeError, encode_varint, read_varint
from ..crypto import schnorr
from ..crypto.errors import CryptoError
from ..crypto.keys import PublicKey, SecretKey
from ..crypto.musig import (
    AggregateNonce,
    KeyAggContext,
    PartialSignature,
    PublicNonce,
    SecretNonce,
    SigningSession,
    aggregate_nonces,
    generate_nonce,
)
from .errors import BundleError, SigningError
from .tree import FactoryTree, SignedTree

__all__ = [
    "AggNonceBundle",
    "CeremonyResult",
    "Coordinator",
    "NonceBundle",
    "PartialSigBundle",
    "SessionSpec",
    "SignatureBundle",
    "Signer",
    "SigningPlan",
    "run_ceremony",
    "sign_tree",
]


@dataclass(frozen=True)
class SessionSpec:
    """One MuSig2 signature to make: message, tweaked aggregate, and who signs (keyagg order)."""

    id: int
    msg: bytes
    keyagg: KeyAggContext
    signers: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.signers) != len(self.keyagg.pubkeys) or len(set(self.signers)) != len(
            self.signers
        ):
            raise SigningError("session signers must match the aggregated keys", session=self.id)


class SigningPlan:
    """Which participant signs which session, for one ceremony."""

    __slots__ = ("_by_id", "_by_signer", "sessions")

    def __init__(self, sessions: Iterable[SessionSpec]) -> None:
        ordered = tuple(sorted(sessions, key=lambda s: s.id))
        by_id = {s.id: s for s in ordered}
        if len(by_id) != len(ordered):
            raise SigningError("duplicate session id in plan")
        by_signer: dict[int, list[int]] = {}
        for s in ordered:
            for p in s.signers:
                by_signer.setdefault(p, []).append(s.id)
        self.sessions = ordered
        self._by_id = by_id
        self._by_signer = {p: tuple(ids) for p, ids in sorted(by_signer.items())}

    @classmethod
    def for_tree(
        cls,
        tree: FactoryTree,
        txs: Iterable[int] | None = None,
        extra: Iterable[SessionSpec] = (),
    ) -> SigningPlan:
        """Sessions for tree txs `txs` (default: all), keyed by tx index, plus `extra` ones."""
        keys = participant_index(tree.shape.spec.lsp, [c.key for c in tree.shape.spec.clients])
        chosen = range(len(tree.txs)) if txs is None else txs
        specs = [
            SessionSpec(
                i,
                tree.txs[i].sighash,
                tree.txs[i].spent_output.signing,
                tuple(keys[k.data] for k in tree.txs[i].spent_output.keys),
            )
            for i in chosen
        ]
        return cls([*specs, *extra])

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(self._by_signer)

    def session(self, session_id: int) -> SessionSpec:
        try:
            return self._by_id[session_id]
        except KeyError:
            raise SigningError("no such session in the plan", session=session_id) from None

    def sessions_for(self, participant: int) -> tuple[int, ...]:
        """The session ids `participant` takes part in, ascending (empty if none)."""
        return self._by_signer.get(participant, ())

    def __len__(self) -> int:
        return len(self.sessions)


def participant_index(lsp: PublicKey, clients: Sequence[PublicKey]) -> dict[bytes, int]:
    """Compressed key → participant index (0 = LSP, p = client position p − 1)."""
    index = {lsp.data: 0}
    index.update((k.data, p + 1) for p, k in enumerate(clients))
    return index


# -- bundles ------------------------------------------------------------------------

V = TypeVar("V")


@dataclass(frozen=True)
class _Bundle(Generic[V]):
    """`signer` plus (session id, value) entries, ascending by session id."""

    signer: int
    entries: tuple[tuple[int, V], ...]

    _SIZE: ClassVar[int] = 0
    _WHAT: ClassVar[str] = ""

    def __post_init__(self) -> None:
        ids = [sid for sid, _ in self.entries]
        if any(b <= a for a, b in itertools.pairwise(ids)):
            raise BundleError(
                f"{self._WHAT} entries must be in ascending session order", signer=self.signer
            )

    @staticmethod
    def _value_bytes(value: V) -> bytes:
        raise NotImplementedError

    @staticmethod
    def _parse_value(data: bytes) -> V:
        raise NotImplementedError

    def as_dict(self) -> dict[int, V]:
        return dict(self.entries)

    def session_ids(self) -> tuple[int, ...]:
        return tuple(sid for sid, _ in self.entries)

    def to_bytes(self) -> bytes:
        out = [encode_varint(self.signer), encode_varint(len(self.entries))]
        for sid, value in self.entries:
            out += [encode_varint(sid), self._value_bytes(value)]
        return b"".join(out)

    @classmethod
    def _decode(cls, data: bytes) -> tuple[int, list[tuple[int, V]]]:
        signer: int | None = None
        try:
            signer, pos = read_varint(data, 0)
            count, pos = read_varint(data, pos)
            if count * (1 + cls._SIZE) > len(data) - pos:
                raise BundleError(f"{cls._WHAT} count exceeds the data", signer=signer)
            entries = []
            for _ in range(count):
                sid, pos = read_varint(data, pos)
                raw = data[pos : pos + cls._SIZE]
                if len(raw) != cls._SIZE:
                    raise BundleError(f"truncated {cls._WHAT}", signer=signer)
                pos += cls._SIZE
                try:
                    entries.append((sid, cls._parse_value(raw)))
                except CryptoError as exc:
                    raise BundleError(f"invalid {cls._WHAT}", signer=signer, session=sid) from exc
        except TxDecodeError as exc:
            raise BundleError(f"malformed {cls._WHAT} bundle: {exc}", signer=signer) from exc
        if pos != len(data):
            raise BundleError(f"trailing bytes after {cls._WHAT} bundle", signer=signer)
        return signer, entries


@dataclass(frozen=True)
class NonceBundle(_Bundle[PublicNonce]):
    """Round 1, signer → coordinator: one public nonce per session on the signer's path."""

    _SIZE: ClassVar[int] = 66
    _WHAT: ClassVar[str] = "public nonce"

    @staticmethod
    def _value_bytes(value: PublicNonce) -> bytes:
        return value.data

    @staticmethod
    def _parse_value(data: bytes) -> PublicNonce:
        return PublicNonce(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> NonceBundle:
        signer, entries = cls._decode(data)
        return cls(signer, tuple(entries))


@dataclass(frozen=True)
class AggNonceBundle(_Bundle[AggregateNonce]):
    """Round 2, coordinator → signer: the aggregate nonce of each of the signer's sessions."""

    _SIZE: ClassVar[int] = 66
    _WHAT: ClassVar[str] = "aggregate nonce"

    @staticmethod
    def _value_bytes(value: AggregateNonce) -> bytes:
        return value.data

    @staticmethod
    def _parse_value(data: bytes) -> AggregateNonce:
        return AggregateNonce(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> AggNonceBundle:
        signer, entries = cls._decode(data)
        return cls(signer, tuple(entries))


@dataclass(frozen=True)
class PartialSigBundle(_Bundle[PartialSignature]):
    """Round 2 reply, signer → coordinator: one partial signature per session."""

    _SIZE: ClassVar[int] = 32
    _WHAT: ClassVar[str] = "partial signature"

    @staticmethod
    def _value_bytes(value: PartialSignature) -> bytes:
        return value.data

    @staticmethod
    def _parse_value(data: bytes) -> PartialSignature:
        return PartialSignature(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> PartialSigBundle:
        signer, entries = cls._decode(data)
        return cls(signer, tuple(entries))


@dataclass(frozen=True)
class SignatureBundle(_Bundle[bytes]):
    """Round 3, coordinator → signer: the final signatures of the signer's sessions."""

    _SIZE: ClassVar[int] = 64
    _WHAT: ClassVar[str] = "signature"

    @staticmethod
    def _value_bytes(value: bytes) -> bytes:
        return value

    @staticmethod
    def _parse_value(data: bytes) -> bytes:
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> SignatureBundle:
        signer, entries = cls._decode(data)
        return cls(signer, tuple(entries))


def _expect_sessions(bundle: _Bundle[V], expected: tuple[int, ...], what: str) -> None:
    got = bundle.session_ids()
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        raise BundleError(
            f"{what} bundle does not cover exactly the signer's sessions "
            f"(missing {missing[:5]}, unexpected {extra[:5]})",
            signer=bundle.signer,
        )


def _check_sender(bundle: _Bundle[V], sender: int | None) -> None:
    """A bundle must claim the participant its authenticated connection belongs to."""
    if sender is not None and bundle.signer != sender:
        raise BundleError(f"bundle claims signer {bundle.signer} but came from", signer=sender)


# -- participants -------------------------------------------------------------------


class Signer:
    """One participant: generates one nonce per session once, signs once, then is spent.

    `sessions` are what this participant agreed to sign — for a client, the
    sessions of its verified path view (`view.VerifiedView.sessions`), never
    whatever the coordinator sends later.
    """

    __slots__ = ("_key", "_secnonces", "participant", "sessions")

    def __init__(
        self, participant: int, secret_key: SecretKey, sessions: Iterable[SessionSpec]
    ) -> None:
        self.participant = participant
        self._key = secret_key
        self.sessions = {s.id: s for s in sorted(sessions, key=lambda s: s.id)}
        pub = secret_key.public_key
        for s in self.sessions.values():
            try:
                pos = s.signers.index(participant)
            except ValueError:
                raise SigningError("signer is not in this session", session=s.id) from None
            if s.keyagg.pubkeys[pos] != pub:
                raise SigningError("secret key does not match the session's key", session=s.id)
        self._secnonces: dict[int, SecretNonce] | None = None

    def nonces(self) -> NonceBundle:
        """Fresh nonces for every session. Only once: a second round needs a new Signer."""
        if self._secnonces is not None:
            raise SigningError("nonces were already generated", signer=self.participant)
        key, pub = self._key, self._key.public_key
        secnonces: dict[int, SecretNonce] = {}
        entries = []
        for sid, s in self.sessions.items():
            sec, public = generate_nonce(pub, secret_key=key, keyagg=s.keyagg, msg=s.msg)
            secnonces[sid] = sec
            entries.append((sid, public))
        self._secnonces = secnonces
        return NonceBundle(self.participant, tuple(entries))

    def sign(self, agg: AggNonceBundle) -> PartialSigBundle:
        """Consume the secret nonces and return one partial signature per session."""
        if self._secnonces is None:
            raise SigningError("sign() before nonces()", signer=self.participant)
        if agg.signer != self.participant:
            raise BundleError("aggregate nonces addressed to another signer", signer=agg.signer)
        _expect_sessions(agg, tuple(self.sessions), "aggregate nonce")
        entries = []
        for sid, aggnonce in agg.entries:
            s = self.sessions[sid]
            session = SigningSession(s.keyagg, aggnonce, s.msg)
            entries.append((sid, session.sign(self._secnonces[sid], self._key)))
        return PartialSigBundle(self.participant, tuple(entries))


class Coordinator:
    """The LSP's aggregator: checks every bundle against the plan and blames bad input."""

    def __init__(self, plan: SigningPlan) -> None:
        self.plan = plan
        self._nonces: dict[int, list[PublicNonce | None]] = {
            s.id: [None] * len(s.signers) for s in plan.sessions
        }
        self._position = {s.id: {p: i for i, p in enumerate(s.signers)} for s in plan.sessions}
        self._have_nonces: set[int] = set()
        self._sessions: dict[int, SigningSession] | None = None
        self._psigs: dict[int, list[PartialSignature | None]] = {}
        self._have_psigs: set[int] = set()

    def missing_nonces(self) -> tuple[int, ...]:
        return tuple(p for p in self.plan.participants if p not in self._have_nonces)

    def missing_partial_sigs(self) -> tuple[int, ...]:
        return tuple(p for p in self.plan.participants if p not in self._have_psigs)

    def add_nonces(self, bundle: NonceBundle, sender: int | None = None) -> None:
        """Take one signer's nonces; `sender` is who the transport says sent them."""
        signer = bundle.signer
        _check_sender(bundle, sender)
        if signer in self._have_nonces:
            raise BundleError("nonces already received", signer=signer)
        if self._sessions is not None:
            raise BundleError("nonce round is over", signer=signer)
        _expect_sessions(bundle, self.plan.sessions_for(signer), "nonce")
        for sid, nonce in bundle.entries:
            self._nonces[sid][self._position[sid][signer]] = nonce
        self._have_nonces.add(signer)

    def aggregate_nonces(self) -> dict[int, AggNonceBundle]:
        """After every nonce is in: one aggregate-nonce bundle per participant."""
        missing = self.missing_nonces()
        if missing:
            raise SigningError(f"nonces missing from {len(missing)} signers", signer=missing[0])
        sessions: dict[int, SigningSession] = {}
        for s in self.plan.sessions:
            nonces = [n for n in self._nonces[s.id] if n is not None]
            sessions[s.id] = SigningSession(s.keyagg, aggregate_nonces(nonces), s.msg)
            self._psigs[s.id] = [None] * len(s.signers)
        self._sessions = sessions
        return {
            p: AggNonceBundle(p, tuple((sid, sessions[sid].aggnonce) for sid in ids))
            for p, ids in ((p, self.plan.sessions_for(p)) for p in self.plan.participants)
        }

    def add_partial_sigs(self, bundle: PartialSigBundle, sender: int | None = None) -> None:
        """Verify each partial signature; the first bad one raises, naming signer and session."""
        signer = bundle.signer
        _check_sender(bundle, sender)
        if self._sessions is None:
            raise BundleError("partial signatures before the nonce round finished", signer=signer)
        if signer in self._have_psigs:
            raise BundleError("partial signatures already received", signer=signer)
        _expect_sessions(bundle, self.plan.sessions_for(signer), "partial signature")
        for sid, psig in bundle.entries:
            pos = self._position[sid][signer]
            nonce = self._nonces[sid][pos]
            key = self.plan.session(sid).keyagg.pubkeys[pos]
            if nonce is None or not self._sessions[sid].verify(psig, nonce, key):
                raise SigningError("invalid partial signature", signer=signer, session=sid)
        for sid, psig in bundle.entries:
            self._psigs[sid][self._position[sid][signer]] = psig
        self._have_psigs.add(signer)

    def finalize(self) -> dict[int, bytes]:
        """Aggregate every session; each result is checked as a BIP340 signature."""
        missing = self.missing_partial_sigs()
        if missing or self._sessions is None:
            raise SigningError(
                f"partial signatures missing from {len(missing)} signers",
                signer=missing[0] if missing else None,
            )
        out: dict[int, bytes] = {}
        for s in self.plan.sessions:
            psigs = [p for p in self._psigs[s.id] if p is not None]
            sig = self._sessions[s.id].aggregate(psigs)
            if not schnorr.verify(s.keyagg.xonly, s.msg, sig):  # pragma: no cover
                raise SigningError("aggregate signature does not verify", session=s.id)
            out[s.id] = sig
        return out

    def signature_bundles(self, signatures: Mapping[int, bytes]) -> dict[int, SignatureBundle]:
        """Round 3: each participant's final signatures (its path only)."""
        return {
            p: SignatureBundle(
                p, tuple((sid, signatures[sid]) for sid in self.plan.sessions_for(p))
            )
            for p in self.plan.participants
        }


# -- in-process ceremony ---------------------------------------------------------------


@dataclass(frozen=True)
class CeremonyResult:
    """Signatures by session id, plus what went over the (simulated) wire and how long it took."""

    signatures: dict[int, bytes]
    bytes_sent: dict[str, int]
    """Total encoded bytes per message kind: nonces, aggnonces, psigs, signatures."""
    max_client_bytes: dict[str, int]
    """Largest single client bundle per kind (the LSP's own bundles are excluded)."""
    seconds: dict[str, float] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]


def run_ceremony(
    plan: SigningPlan,
    secret_keys: Mapping[int, SecretKey],
    *,
    signers: Mapping[int, Signer] | None = None,
    tamper: Callable[[PartialSigBundle], PartialSigBundle] | None = None,
    progress: Progress | None = None,
) -> CeremonyResult:
    """Sign every session of `plan` with simulated participants, through encoded bundles.

    Each participant is a `Signer` holding only its own key and sessions
    (pass `signers` to use ones built from verified client views); every
    bundle is encoded and decoded as it would be on the wire; the coordinator
    verifies every partial signature. `tamper` may alter bundles in flight
    (tests use it to check blame). `progress(stage, done, total)` is called
    as participants are processed.
    """
    say = progress or (lambda _s, _d, _t: None)
    participants = plan.participants
    total = len(participants)
    if signers is None:
        signers = {
            p: Signer(p, secret_keys[p], [plan.session(i) for i in plan.sessions_for(p)])
            for p in participants
        }
    coordinator = Coordinator(plan)
    sent = {"nonces": 0, "aggnonces": 0, "psigs": 0, "signatures": 0}
    biggest = dict.fromkeys(sent, 0)
    seconds: dict[str, float] = {}

    def count(kind: str, participant: int, data: bytes) -> bytes:
        sent[kind] += len(data)
        if participant != 0:
            biggest[kind] = max(biggest[kind], len(data))
        return data

    start = time.perf_counter()
    for done, p in enumerate(participants, 1):
        wire = count("nonces", p, signers[p].nonces().to_bytes())
        coordinator.add_nonces(NonceBundle.from_bytes(wire))
        if done % 256 == 0 or done == total:
            say("nonces", done, total)
    aggs = coordinator.aggregate_nonces()
    seconds["nonces"] = time.perf_counter() - start

    start = time.perf_counter()
    for done, p in enumerate(participants, 1):
        agg = AggNonceBundle.from_bytes(count("aggnonces", p, aggs[p].to_bytes()))
        bundle = signers[p].sign(agg)
        if tamper is not None:
            bundle = tamper(bundle)
        coordinator.add_partial_sigs(
            PartialSigBundle.from_bytes(count("psigs", p, bundle.to_bytes()))
        )
        if done % 256 == 0 or done == total:
            say("partial signatures", done, total)
    seconds["psigs"] = time.perf_counter() - start

    start = time.perf_counter()
    signatures = coordinator.finalize()
    for p, sig_bundle in coordinator.signature_bundles(signatures).items():
        count("signatures", p, sig_bundle.to_bytes())
    seconds["aggregate"] = time.perf_counter() - start
    return CeremonyResult(signatures, sent, biggest, seconds)


def sign_tree(
    tree: FactoryTree, secret_keys: Mapping[int, SecretKey], progress: Progress | None = None
) -> SignedTree:
    """Sign every transaction of `tree` in-process (tests, benchmarks, demos)."""
    result = run_ceremony(SigningPlan.for_tree(tree), secret_keys, progress=progress)
    return SignedTree(tree, tuple(result.signatures[i] for i in range(len(tree.txs))))
