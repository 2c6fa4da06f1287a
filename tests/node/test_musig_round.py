"""`musig_round`, the one MuSig2 exchange of every N-party signature, against fake peers:
honest peers get a valid BIP340 signature; a bad bundle or a silent peer blames exactly
that peer; our nonce use is persisted before our nonces exist; an abort before signing
leaves nothing of ours signed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from superscalar.crypto import schnorr
from superscalar.crypto.keys import SecretKey
from superscalar.crypto.musig import aggregate_keys
from superscalar.factory.signing import (
    AggNonceBundle,
    PartialSigBundle,
    SessionSpec,
    Signer,
    SigningPlan,
)
from superscalar.node.musig import Seat, musig_round
from superscalar.node.peers import Peer, PeerFault, PeerLink
from superscalar.wire.codec import Hex, Hex32, Message
from superscalar.wire.errors import WireTimeoutError
from superscalar.wire.messages import (
    CloseAggNonce,
    CloseNonce,
    ClosePropose,
    ClosePsig,
    JoinRequest,
)

FID = bytes(range(32))
MSG = hashlib.sha256(b"close").digest()


@dataclass
class FakeConn:
    """A client that signs honestly unless told otherwise (`tamper` rewrites its answer)."""

    signer: Signer
    tamper: Callable[[Message], Message | None] = lambda m: m
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    sent: list[Message] = field(default_factory=list)
    closed: bool = False

    async def send_message(self, msg: Message) -> None:
        self.sent.append(msg)
        answer: Message | None = None
        if isinstance(msg, ClosePropose):
            answer = CloseNonce(factory_id=Hex32(FID), bundle=Hex(self.signer.nonces().to_bytes()))
        elif isinstance(msg, CloseAggNonce):
            agg = AggNonceBundle.from_bytes(bytes(msg.bundle))
            answer = ClosePsig(factory_id=Hex32(FID), bundle=Hex(self.signer.sign(agg).to_bytes()))
        if answer is not None:
            answer = self.tamper(answer)
        if answer is not None:
            self.inbox.put_nowait(answer)

    async def receive_message(self, timeout: float | None = None) -> Message:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            raise WireTimeoutError("silent") from None


def _setup(n: int) -> tuple[SigningPlan, Signer, list[FakeConn], list[Seat], Any]:
    keys = [SecretKey(bytes([i + 1]) * 32) for i in range(n + 1)]
    keyagg = aggregate_keys([k.public_key for k in keys])
    spec = SessionSpec(7, MSG, keyagg, tuple(range(n + 1)))
    plan = SigningPlan([spec])
    conns = [FakeConn(Signer(i + 1, keys[i + 1], plan.sessions)) for i in range(n)]
    join = JoinRequest(amount_sat=1, payout_script=Hex(b"\x51"))
    seats = [Seat(Peer(c, keys[i + 1].public_key, join), i + 1) for i, c in enumerate(conns)]  # type: ignore[arg-type]
    return plan, Signer(0, keys[0], plan.sessions), conns, seats, keyagg


def _propose(_: Seat) -> Message:
    return ClosePropose(
        factory_id=Hex32(FID), payouts=(), lsp_script=Hex(b"\x51"), feerate_sat_per_kvb=1000
    )


def _run(
    plan: SigningPlan,
    ours: Signer,
    seats: list[Seat],
    events: list[str] | None = None,
    before_sign: Callable[[], None] | None = None,
    timeout: float = 2.0,
) -> dict[int, bytes]:
    log = events if events is not None else []

    class Recording:
        """Our signer, noting when our nonces and partial signatures come into being."""

        def nonces(self) -> Any:
            log.append("our nonces")
            return ours.nonces()

        def sign(self, agg: AggNonceBundle) -> Any:
            log.append("our psigs")
            return ours.sign(agg)

    return asyncio.run(
        musig_round(
            PeerLink(lambda: timeout, "close"),
            FID,
            plan,
            seats,
            {0: Recording()},  # type: ignore[dict-item]
            propose=_propose,
            nonces=CloseNonce,
            aggregate=lambda _, agg: CloseAggNonce(
                factory_id=Hex32(FID), bundle=Hex(agg.to_bytes())
            ),
            psigs=ClosePsig,
            record_nonce_use=lambda: log.append("nonce use recorded"),
            before_sign=before_sign,
        )
    )


def test_honest_peers_get_a_valid_bip340_signature() -> None:
    plan, ours, _, seats, keyagg = _setup(3)
    sigs = _run(plan, ours, seats)
    assert set(sigs) == {7}
    assert schnorr.verify(keyagg.xonly, MSG, sigs[7])


def test_nonce_use_is_recorded_before_our_nonces_exist() -> None:
    plan, ours, _, seats, _ = _setup(2)
    events: list[str] = []
    _run(plan, ours, seats, events)
    assert events == ["nonce use recorded", "our nonces", "our psigs"]


def test_a_garbled_nonce_bundle_blames_its_sender() -> None:
    plan, ours, conns, seats, _ = _setup(3)
    conns[1].tamper = lambda m: (
        CloseNonce(factory_id=Hex32(FID), bundle=Hex(b"\x00\x01"))
        if isinstance(m, CloseNonce)
        else m
    )
    with pytest.raises(PeerFault) as info:
        _run(plan, ours, seats)
    assert info.value.peer is seats[1].peer
    assert info.value.code == "close-bad-nonces"


def test_a_partial_signature_that_does_not_verify_blames_its_sender() -> None:
    plan, ours, conns, seats, _ = _setup(3)

    def forge(m: Message) -> Message:
        if not isinstance(m, ClosePsig):
            return m
        bundle = PartialSigBundle.from_bytes(bytes(m.bundle))
        ((sid, psig),) = bundle.entries
        wrong = type(psig)((int.from_bytes(psig.data, "big") + 1).to_bytes(32, "big"))
        return ClosePsig(
            factory_id=Hex32(FID),
            bundle=Hex(PartialSigBundle(bundle.signer, ((sid, wrong),)).to_bytes()),
        )

    conns[2].tamper = forge
    with pytest.raises(PeerFault) as info:
        _run(plan, ours, seats)
    assert info.value.peer is seats[2].peer
    assert info.value.code == "close-bad-psigs"


def test_a_silent_peer_is_blamed_with_a_timeout() -> None:
    plan, ours, conns, seats, _ = _setup(2)
    conns[0].tamper = lambda m: None if isinstance(m, ClosePsig) else m
    with pytest.raises(PeerFault) as info:
        _run(plan, ours, seats, timeout=0.2)
    assert info.value.peer is seats[0].peer
    assert info.value.code == "close-timeout"


def test_an_answer_of_the_wrong_kind_is_unexpected() -> None:
    plan, ours, conns, seats, _ = _setup(2)
    conns[1].tamper = lambda m: (
        ClosePsig(factory_id=Hex32(FID), bundle=Hex(b"")) if isinstance(m, CloseNonce) else m
    )
    with pytest.raises(PeerFault) as info:
        _run(plan, ours, seats)
    assert info.value.peer is seats[1].peer
    assert info.value.code == "close-unexpected"


def test_an_abort_before_signing_leaves_nothing_of_ours_signed() -> None:
    plan, ours, conns, seats, _ = _setup(2)

    def refuse() -> None:
        raise RuntimeError("channels moved")

    events: list[str] = []
    with pytest.raises(RuntimeError):
        _run(plan, ours, seats, events, before_sign=refuse)
    assert all(isinstance(c.sent[-1], CloseAggNonce) for c in conns)  # their psigs came in
    assert "our psigs" not in events
