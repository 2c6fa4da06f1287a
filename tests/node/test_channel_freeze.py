"""A frozen channel shell (a close we signed is pending) takes no update, only reestablish."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from superscalar.channel import AddHtlc, ChannelError
from superscalar.node.channels import ChannelFrozen, ChannelShell
from superscalar.node.common import open_db
from superscalar.wire.messages import ChannelMsg

from ..channel.support import make_pair, payment_hash


def test_frozen_shell_refuses_an_add_and_keeps_its_state(tmp_path: Path) -> None:
    pair = make_pair()
    db = open_db(tmp_path)
    shell = ChannelShell(db, pair.a.secrets, b"\x01" * 32, 0, pair.a.state)
    sent: list[ChannelMsg] = []

    async def send(m: ChannelMsg) -> None:
        sent.append(m)

    shell.frozen = "a close of factory 0101 we signed is pending"
    before = shell.state
    with pytest.raises(ChannelFrozen) as exc:
        asyncio.run(shell.apply(AddHtlc(1_000_000, payment_hash(1), 2000), send))
    assert isinstance(exc.value, ChannelError) and exc.value.code == "channel-frozen"
    assert shell.state is before and sent == []
    assert db.execute("SELECT COUNT(*) FROM channels").fetchone()[0] == 0
    shell.frozen = None  # thawed (close abandoned): the same add goes through
    asyncio.run(shell.apply(AddHtlc(1_000_000, payment_hash(1), 2000), send))
    assert sent and shell.state is not before
    db.close()
