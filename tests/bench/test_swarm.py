"""The swarm benchmark at N=4: real LSP and client daemons, sane numbers."""

from __future__ import annotations

from superscalar.bench import swarm


def test_swarm_four_clients_fund_open_and_pay_each_other() -> None:
    result = swarm.run_sizes([4], max_workers=2)
    n4 = result["ceremony"]["n4"]
    assert "error" not in n4, n4
    assert n4["clients"] == 4
    assert n4["worker_processes"] == 2
    assert 0 < n4["lsp_ceremony_seconds"] <= n4["wall_seconds_until_all_funded"] < 60
    assert n4["wall_seconds_until_all_funded"] <= n4["wall_seconds_until_all_channels_open"]
    assert 10 < n4["lsp_peak_rss_mb"] < 2000
    assert 0 < n4["client_peak_rss_mb_each"] < 2000
    assert n4["payments_settled"] == 4 * swarm.payments_per_client(4)
    assert n4["payments_failed"] == 0
    assert n4["payments_per_second"] > 0
