"""Random update sequences with random disconnects: reestablish always brings both views together.

Extends the random-updates machine with a `reconnect` rule: part of the
messages in flight are delivered, the rest are lost, both sides reestablish.
The model follows what the core reports: an add dropped as uncommitted is
failed (`OutgoingHtlcFailed`), a settle dropped as uncommitted is announced
again (`IncomingHtlcCommitted`) and is pending until settled anew. The
machine's invariants (every commitment pays exactly the funding amount) and
teardown (identical views, balances exactly as the model says) still hold.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from superscalar.channel import IncomingHtlcCommitted, OutgoingHtlcFailed, Reestablish

from .test_random_updates import ChannelUpdates


class ChannelUpdatesWithReconnects(ChannelUpdates):
    @rule(keep_a=st.integers(0, 4), keep_b=st.integers(0, 4))
    def reconnect(self, keep_a: int, keep_b: int) -> None:
        for side, keep in ((self.pair.a, keep_a), (self.pair.b, keep_b)):
            for _ in range(min(keep, len(side.inbox))):
                self.pair.deliver(side)
        self.pair.a.inbox.clear()
        self.pair.b.inbox.clear()
        for name, side in self.sides.items():
            side.notices.clear()
            t = self.pair.apply(side, Reestablish())
            for e in t.effects:
                if isinstance(e, OutgoingHtlcFailed):
                    self.payments[(name, e.htlc.id)].outcome = "dropped"
        for name, side in self.sides.items():
            t = self.pair.deliver(side)  # the peer's reestablish; must never raise
            assert t is not None and not side.state.reestablishing
            offerer = "b" if name == "a" else "a"
            for e in t.effects:
                if isinstance(e, IncomingHtlcCommitted):
                    self.payments[(offerer, e.htlc.id)].outcome = "pending"


TestChannelUpdatesWithReconnects = ChannelUpdatesWithReconnects.TestCase
TestChannelUpdatesWithReconnects.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
