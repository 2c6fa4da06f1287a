"""Random interleavings of adds, fulfills, fails, signatures and deliveries, both directions.

Properties: a command a side accepts is never refused by its peer; a refused
command leaves the state object untouched; every commitment either side holds
pays exactly the funding amount; after delivering everything and signing until
quiet, both sides hold identical views of both commitments, and the balances
are exactly what the accepted payments say.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from superscalar.channel import (
    AddHtlc,
    ChannelConfig,
    ChannelError,
    Event,
    FailHtlc,
    FulfillHtlc,
    Side,
    SignCommitment,
    local_commitment,
    remote_commitment,
)

from .support import HEIGHT, make_pair, payment_hash, preimage

CONFIG = ChannelConfig(
    to_self_delay=6, min_cltv_delta=10, max_accepted_htlcs=6, channel_reserve_sat=10_000
)
BALANCES = (600_000_000, 400_000_000)


@dataclass
class Model:
    offerer: str
    amount: int
    outcome: str = "pending"


class ChannelUpdates(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = make_pair(config=CONFIG, balances=BALANCES)
        self.sides = {"a": self.pair.a, "b": self.pair.b}
        self.payments: dict[tuple[str, int], Model] = {}
        self.hashes: dict[tuple[str, int], int] = {}
        self.counter = 0

    def _try(self, side: Side, event: Event) -> bool:
        before = side.state
        snapshot = repr(before)
        try:
            self.pair.apply(side, event)
        except ChannelError:
            assert side.state is before and repr(before) == snapshot
            return False
        return True

    @rule(
        who=st.sampled_from("ab"),
        amount=st.one_of(st.integers(1_000, 400_000), st.integers(400_000, 150_000_000)),
        lag=st.integers(0, 9),
    )
    def add(self, who: str, amount: int, lag: int) -> None:
        side = self.sides[who]
        self.counter += 1
        htlc_id = side.state.local_next_htlc_id
        if self._try(side, AddHtlc(amount, payment_hash(self.counter), HEIGHT + 20 + lag)):
            self.payments[(who, htlc_id)] = Model(who, amount)
            self.hashes[(who, htlc_id)] = self.counter

    @rule(who=st.sampled_from("ab"), pick=st.integers(0, 50), fulfill=st.booleans())
    def settle(self, who: str, pick: int, fulfill: bool) -> None:
        offerer = "b" if who == "a" else "a"
        pending = [
            k for k, m in self.payments.items() if m.offerer == offerer and m.outcome == "pending"
        ]
        if not pending:
            return
        key = pending[pick % len(pending)]
        n = self.hashes[key]
        event: Event = FulfillHtlc(key[1], preimage(n)) if fulfill else FailHtlc(key[1], b"nope")
        if self._try(self.sides[who], event):
            self.payments[key].outcome = "fulfilled" if fulfill else "failed"

    @rule(who=st.sampled_from("ab"))
    def sign(self, who: str) -> None:
        self._try(self.sides[who], SignCommitment())

    @rule(who=st.sampled_from("ab"))
    def deliver(self, who: str) -> None:
        self.pair.deliver(self.sides[who])  # must never raise: the peer only sends valid updates

    @invariant()
    def every_commitment_pays_exactly_the_funding_amount(self) -> None:
        for side in (self.pair.a, self.pair.b):
            for commitment in (local_commitment(side.state), remote_commitment(side.state)):
                assert commitment.tx.total_out == self.pair.a.state.funding.amount_sat
                assert commitment.spec.total_msat == self.pair.a.state.funding.amount_msat

    def teardown(self) -> None:
        self.pair.settle()
        a, b = self.pair.a.state, self.pair.b.state
        assert a.local_commit is not None and b.local_commit is not None
        assert a.local_commit.spec == b.remote_commit.spec
        assert b.local_commit.spec == a.remote_commit.spec
        assert local_commitment(a).txid == remote_commitment(b).txid
        assert local_commitment(b).txid == remote_commitment(a).txid
        expected = BALANCES[0]
        for m in self.payments.values():
            if m.offerer == "a" and m.outcome in ("fulfilled", "pending"):
                expected -= m.amount  # paid to bob, or still locked in the HTLC
            elif m.offerer == "b" and m.outcome == "fulfilled":
                expected += m.amount
        assert a.local_commit.spec.to_local_msat == expected
        pending = sum(1 for m in self.payments.values() if m.outcome == "pending")
        assert len(a.local_commit.spec.htlcs) == pending


TestChannelUpdates = ChannelUpdates.TestCase
TestChannelUpdates.settings = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
