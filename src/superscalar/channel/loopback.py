"""Two channel sides wired together in memory: the channel core without a network.

A `LoopbackChannel` plays the node shell for both ends of one channel — it
applies events with `step`, keeps each side's latest state, queues every
`SendMessage` for the other side (in order, like a BOLT-8 stream) and keeps
the other effects for inspection. Tests, the benchmark and the in-process demo
use it; a daemon does the same over a socket and a database.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .config import ChannelConfig, Funding
from .keys import ChannelSecrets
from .messages import (
    Effect,
    Event,
    Message,
    PersistRevokedCommitment,
    PersistState,
    SendMessage,
    SignCommitment,
)
from .revocation import RevokedCommitment
from .state import ChannelState, Transition, accept_open, has_changes_to_sign, open_message, step

__all__ = ["LoopbackChannel", "Side"]


@dataclass
class Side:
    """One end: its secrets, latest state, inbox and the effects it has produced."""

    name: str
    secrets: ChannelSecrets
    state: ChannelState
    inbox: deque[Message] = field(default_factory=deque)
    notices: list[Effect] = field(default_factory=list)
    revoked: dict[int, RevokedCommitment] = field(default_factory=dict)


class LoopbackChannel:
    """Both sides of one channel, with message delivery under the caller's control."""

    def __init__(self, a: Side, b: Side) -> None:
        self.a = a
        self.b = b

    @classmethod
    def open(
        cls,
        funding: Funding,
        config: ChannelConfig,
        seeds: tuple[bytes, bytes],
        balances_msat: tuple[int, int],
        close_scripts: tuple[bytes, bytes],
        *,
        names: tuple[str, str] = ("a", "b"),
        chain_height: int = 0,
        secrets: tuple[ChannelSecrets, ChannelSecrets] | None = None,
    ) -> LoopbackChannel:
        """Run the open flow: exchange parameters, sign both commitments 0.

        `secrets` (instead of `seeds`) fixes the funding keys, e.g. to the parties'
        factory keys when the channel sits on a real factory leaf output.
        """
        if secrets is None:
            secrets = (ChannelSecrets.from_seed(seeds[0]), ChannelSecrets.from_seed(seeds[1]))
        opens = [
            open_message(
                s,
                funding,
                config,
                is_initiator=(i == 0),
                balance_msat=balances_msat[i],
                close_script=close_scripts[i],
            )
            for i, s in enumerate(secrets)
        ]
        opened = [
            accept_open(secrets[i], funding, opens[i], opens[1 - i], chain_height=chain_height)
            for i in (0, 1)
        ]
        pair = cls(*(Side(names[i], secrets[i], opened[i].state) for i in (0, 1)))
        for side, transition in zip((pair.a, pair.b), opened, strict=True):
            for effect in transition.effects:
                if isinstance(effect, SendMessage):
                    pair.other(side).inbox.append(effect.message)
        pair.deliver_all()
        return pair

    def other(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    def apply(self, side: Side, event: Event) -> Transition:
        """Step `side`; on success adopt its new state and route its effects."""
        transition = step(side.secrets, side.state, event)
        side.state = transition.state
        peer = self.other(side)
        for effect in transition.effects:
            if isinstance(effect, SendMessage):
                peer.inbox.append(effect.message)
            elif isinstance(effect, PersistRevokedCommitment):
                side.revoked[effect.revoked.number] = effect.revoked
            elif not isinstance(effect, PersistState):
                side.notices.append(effect)
        return transition

    def deliver(self, side: Side) -> Transition | None:
        """Hand `side` the oldest message waiting for it."""
        if not side.inbox:
            return None
        return self.apply(side, side.inbox.popleft())

    def deliver_all(self) -> None:
        while self.a.inbox or self.b.inbox:
            for side in (self.a, self.b):
                while side.inbox:
                    self.deliver(side)

    def settle(self) -> None:
        """Deliver and sign until both sides have nothing left to say."""
        while True:
            self.deliver_all()
            progressed = False
            for side in (self.a, self.b):
                if has_changes_to_sign(side.state):
                    self.apply(side, SignCommitment())
                    progressed = True
            if not progressed and not (self.a.inbox or self.b.inbox):
                return
