"""Personal API tokens: created once in plaintext, stored as sha256 only, resolved, revoked; the tokens page."""

from __future__ import annotations

import hashlib
import re

import pytest
from conftest import csrf_of, login
from sqlalchemy import select

from engine import tokens
from engine.actors import add_user, load_actor
from engine.db import Base
from engine.errors import EngineError, NotFound, PermissionDenied
from engine.models import ApiToken, AuditEvent, User


def _make(ctx, username: str = "zhang", name: str = "ci") -> tuple[int, str]:
    with ctx.sessions.begin() as s:
        user_id = s.execute(select(User.id).where(User.username == username)).scalar_one()
        token, plaintext = tokens.create_token(s, user_id, name)
        return token.id, plaintext


def _user(ctx, plaintext: str) -> str | None:
    with ctx.sessions.begin() as s:
        user = tokens.user_for_token(s, plaintext)
        return user.username if user else None


def test_token_is_shown_once_and_only_its_sha256_is_stored(ctx, users):
    token_id, plaintext = _make(ctx)
    assert re.fullmatch(r"ggzy_[A-Za-z0-9_-]{43}", plaintext)
    with ctx.sessions() as s:
        row = s.get(ApiToken, token_id)
        assert row.token_sha256 == hashlib.sha256(plaintext.encode()).hexdigest()
        assert row.last_used_at is None and row.revoked_at is None
    secret = plaintext.removeprefix(tokens.PREFIX)
    with ctx.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for values in conn.execute(table.select()):
                assert secret not in repr(tuple(values)), table.name


def test_tokens_differ_and_are_listed_newest_first(ctx, users):
    first = _make(ctx, name="first")
    second = _make(ctx, name="second")
    _make(ctx, "li", name="other user's")
    assert first[1] != second[1]
    with ctx.sessions() as s:
        zhang = load_actor(s, "zhang")
        assert [t.name for t in tokens.list_tokens(s, zhang.user_id)] == ["second", "first"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_token_needs_a_name(ctx, users, name):
    with ctx.sessions.begin() as s, pytest.raises(EngineError, match="needs a name"):
        tokens.create_token(s, load_actor(s, "zhang").user_id, name)


def test_only_active_users_get_tokens(ctx, users):
    with ctx.sessions.begin() as s, pytest.raises(NotFound):
        tokens.create_token(s, 9999, "nobody")


def test_user_for_token_resolves_live_tokens_only(ctx, users, fixed_clock):
    token_id, plaintext = _make(ctx)
    assert _user(ctx, plaintext) == "zhang"
    assert _user(ctx, plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert _user(ctx, plaintext.removeprefix(tokens.PREFIX)) is None
    assert _user(ctx, plaintext + "x" * 100) is None
    assert _user(ctx, "") is None
    with ctx.sessions.begin() as s:
        tokens.revoke(s, token_id, load_actor(s, "zhang"))
    assert _user(ctx, plaintext) is None


def test_a_deactivated_users_tokens_stop_working(ctx, users):
    _, plaintext = _make(ctx)
    with ctx.sessions.begin() as s:
        s.execute(select(User).where(User.username == "zhang")).scalar_one().active = False
    assert _user(ctx, plaintext) is None


def test_last_used_at_is_kept_to_the_minute(ctx, users, fixed_clock):
    token_id, plaintext = _make(ctx)

    def last_used():
        with ctx.sessions() as s:
            return s.get(ApiToken, token_id).last_used_at

    _user(ctx, plaintext)
    first = last_used()
    assert first == fixed_clock.now()
    fixed_clock.advance(seconds=30)
    _user(ctx, plaintext)
    assert last_used() == first
    fixed_clock.advance(seconds=31)
    _user(ctx, plaintext)
    assert last_used() == fixed_clock.now()


def test_owner_and_admin_may_revoke_others_may_not(ctx, users):
    with ctx.sessions.begin() as s:
        add_user(s, "root", ["admin"], password="secret-root")
    mine, _ = _make(ctx, name="mine")
    theirs, _ = _make(ctx, name="theirs")
    with ctx.sessions.begin() as s, pytest.raises(PermissionDenied, match="only revoke their own"):
        tokens.revoke(s, mine, load_actor(s, "li"))
    with ctx.sessions.begin() as s:
        assert tokens.revoke(s, mine, load_actor(s, "zhang")).revoked_at is not None
        assert tokens.revoke(s, theirs, load_actor(s, "root")).revoked_at is not None
    with ctx.sessions.begin() as s, pytest.raises(NotFound):
        tokens.revoke(s, 9999, load_actor(s, "root"))


def test_create_and_revoke_are_audited_without_the_secret(ctx, users):
    token_id, plaintext = _make(ctx)
    with ctx.sessions.begin() as s:
        tokens.revoke(s, token_id, load_actor(s, "zhang"))
        tokens.revoke(s, token_id, load_actor(s, "zhang"))
    with ctx.sessions() as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.action.like("token.%"))
                           .order_by(AuditEvent.seq)).scalars().all()
        digest = s.get(ApiToken, token_id).token_sha256
    assert [(e.action, e.actor) for e in events] == [("token.create", "zhang"), ("token.revoke", "zhang")]
    for event in events:
        assert f'"token_id":{token_id}' in event.payload
        assert plaintext not in event.payload and digest not in event.payload


# --- the page ----------------------------------------------------------------------------------------------


def test_tokens_page_needs_a_login(client, users):
    response = client.get("/account/tokens")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_create_shows_the_plaintext_once(client, ctx, users):
    login(client, "zhang")
    page = client.get("/account/tokens")
    assert page.status_code == 200 and "还没有令牌" in page.get_data(as_text=True)
    response = client.post("/account/tokens", data={"name": "电子交易系统", "csrf_token": csrf_of(client, "/")})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    plaintext = re.search(r'<code id="new-token">(ggzy_[^<]+)</code>', html).group(1)
    assert _user(ctx, plaintext) == "zhang"
    again = client.get("/account/tokens").get_data(as_text=True)
    assert "电子交易系统" in again and plaintext not in again


def test_create_without_a_name_is_refused(client, users):
    login(client, "zhang")
    response = client.post("/account/tokens", data={"name": " ", "csrf_token": csrf_of(client, "/")})
    assert response.status_code == 400
    assert "needs a name" in response.get_data(as_text=True)


def test_create_without_csrf_token_is_refused(client, users):
    login(client, "zhang")
    assert client.post("/account/tokens", data={"name": "x"}).status_code == 400


def test_revoke_from_the_page(client, ctx, users):
    token_id, plaintext = _make(ctx, name="old script")
    login(client, "zhang")
    response = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(client, "/")})
    assert response.status_code == 302
    page = client.get("/account/tokens").get_data(as_text=True)
    assert "old script" in page and "已吊销" in page
    assert _user(ctx, plaintext) is None


def test_revoking_someone_elses_token_is_forbidden(client, ctx, users):
    token_id, plaintext = _make(ctx, "li")
    login(client, "zhang")
    response = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(client, "/")})
    assert response.status_code == 403
    assert _user(ctx, plaintext) == "li"


def test_tokens_page_in_english(client, users):
    login(client, "zhang")
    client.get("/lang/en")
    page = client.get("/account/tokens").get_data(as_text=True)
    assert "API tokens" in page and "No tokens yet" in page
