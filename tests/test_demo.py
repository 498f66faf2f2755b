"""The demo seed: organisations, one user per role, instances in several states."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from engine.actors import check_password
from engine.demo import DEMO_USERS, seed
from engine.models import Instance, User


def test_demo_seeds_every_state(ctx, monkeypatch):
    monkeypatch.setenv("GGZY_DEMO_PASSWORD", "demo-pass-1")
    logins = seed(ctx)
    assert [login.username for login in logins] == [u[0] for u in DEMO_USERS]
    with ctx.sessions() as s:
        statuses = Counter(s.execute(select(Instance.status)).scalars())
        admin = s.execute(select(User).where(User.username == "admin")).scalar_one()
        assert check_password(admin.password_hash, "demo-pass-1")
    assert statuses == Counter({"running": 3, "completed": 1, "suspended": 1})
    again = seed(ctx)
    assert {login.password for login in again} == {"(unchanged)"}
