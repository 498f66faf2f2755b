"""The hash-chained audit log: intact chains verify; any edit, deletion or reordering is found."""

from __future__ import annotations

import threading

from sqlalchemy import delete, select, update

from engine import audit
from engine.cli import main
from engine.models import AuditEvent


def fill(ctx, n=5) -> None:
    for i in range(n):
        with ctx.sessions.begin() as s:
            audit.append(s, actor="li", action="test.event", instance_id=i, payload={"i": i, "note": "见证"})


def check(ctx):
    with ctx.sessions() as s:
        return audit.verify(s)


def test_intact_chain_verifies(ctx):
    fill(ctx)
    result = check(ctx)
    assert result.ok and result.count == 5


def test_edited_payload_is_found(ctx):
    fill(ctx)
    with ctx.sessions.begin() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(payload='{"i":99}'))
    result = check(ctx)
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_edited_actor_is_found(ctx):
    fill(ctx)
    with ctx.sessions.begin() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="someone-else"))
    assert check(ctx).first_bad_seq == 2


def test_deleted_event_is_found(ctx):
    fill(ctx)
    with ctx.sessions.begin() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 4))
    result = check(ctx)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_deleted_tail_is_found(ctx):
    fill(ctx)
    with ctx.sessions.begin() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    assert not check(ctx).ok


def test_reordered_events_are_found(ctx):
    fill(ctx)
    with ctx.sessions.begin() as s:
        two, three = (s.get(AuditEvent, n) for n in (2, 3))
        swap = {k: getattr(two, k) for k in ("at", "actor", "action", "instance_id", "payload", "prev_hash", "hash")}
        for key in swap:
            setattr(two, key, getattr(three, key))
            setattr(three, key, swap[key])
    assert check(ctx).first_bad_seq == 2


def test_concurrent_appends_never_fork_the_chain(ctx):
    def worker(n):
        for i in range(10):
            with ctx.sessions.begin() as s:
                audit.append(s, actor=f"w{n}", action="test.event", payload={"i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    result = check(ctx)
    assert result.ok and result.count == 40
    with ctx.sessions() as s:
        assert list(s.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars()) == list(range(1, 41))


def test_cli_audit_verify_exit_codes(ctx, config, monkeypatch, capsys):
    monkeypatch.setenv("GGZY_HOME", str(config.home))
    if config.database_url:
        monkeypatch.setenv("DATABASE_URL", config.database_url)
    fill(ctx)
    assert main(["audit", "verify"]) == 0
    with ctx.sessions.begin() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(action="tampered"))
    assert main(["audit", "verify", "--json"]) == 1
    assert '"first_bad_seq": 2' in capsys.readouterr().out
