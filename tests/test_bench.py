"""``ggzy bench`` smoke test: tiny sizes, one JSON line, every figure present; no timing assertions."""

from __future__ import annotations

import json

from engine import clock
from engine.bench import run_bench


def test_bench_prints_one_json_line_with_every_figure(ctx, fixed_clock, capsys):
    code = run_bench(ctx, json_output=True, quick=True, rounds=1, timer_count=12, openings=3)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    result = json.loads(out.splitlines()[-1])
    assert code == 0, result["problems"]
    for key in ("bare_ms_per_task", "bare_roundtrip_ms_per_task", "ggzy_sqlite_ms_per_task",
                "ggzy_sqlite_cold_ms_per_task", "ratio_vs_bare_roundtrip", "ratio_cold_vs_bare_roundtrip",
                "sweep_ms_per_timer"):
        assert isinstance(result[key], float) and result[key] > 0, key
    postgres = ctx.engine.dialect.name == "postgresql"
    assert (result["ggzy_postgres_ms_per_task"] is not None) == postgres
    assert result["target_ratio"] == 2.0
    assert result["ok"] == (result["ratio_vs_bare_roundtrip"] <= 2.0)
    assert result["sweep_timers"] == result["sweep_fired"] == 12
    assert result["problems"] == []
    opening = result["opening"]
    assert opening["bids"] == 3 and opening["target_ratio"] == 1.5
    assert opening["raw_crypto_s"] > 0 and opening["opening_s"] > 0
    assert isinstance(opening["ratio"], float) and opening["ratio"] > 0
    assert clock.current() is fixed_clock


def test_bench_runs_twice_on_one_database(ctx, capsys):
    """Deploying again is a no-op and the second sweep fires only its own timers."""
    for _ in range(2):
        assert run_bench(ctx, json_output=True, quick=True, rounds=1, timer_count=3, openings=0) == 0
        result = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert result["sweep_fired"] == 3


def test_the_cold_figure_restores_every_time_and_reuse_comes_back(ctx):
    from engine import bench, runtime

    bench.prepare(ctx)
    with runtime.restoring_every_time():
        bench.ggzy_round(ctx)
        assert runtime._WARM._entries == {}
    assert runtime._WARM.SIZE > 0
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, bench.PROCESS_KEY, {}, bench.ACTOR).id
    assert iid in runtime._WARM._entries
