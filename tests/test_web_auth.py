"""Login, logout, password change, language, CSRF, and the secure defaults of the web app."""

from __future__ import annotations

from conftest import csrf_of, login


def test_login_page_is_chinese_by_default(client, users):
    page = client.get("/login").get_data(as_text=True)
    assert "登录" in page and 'name="csrf_token"' in page


def test_login_and_logout(client, users):
    response = login(client, "li")
    assert response.status_code == 302
    assert "退出" in client.get("/").get_data(as_text=True)
    token = csrf_of(client, "/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/password").status_code == 302


def test_wrong_password_is_refused_and_rate_limited(client, users):
    for _ in range(5):
        assert login(client, "li", "wrong").status_code == 401
    response = login(client, "li")
    assert response.status_code == 429
    assert "too many failed logins" in response.get_data(as_text=True)


def test_post_without_csrf_token_is_refused(client, users):
    response = client.post("/login", data={"username": "li", "password": "secret-li"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_password_change(client, users):
    login(client, "li")
    token = csrf_of(client, "/password")
    bad = client.post("/password", data={"old_password": "nope", "new_password": "a-new-secret",
                                         "confirm_password": "a-new-secret", "csrf_token": token})
    assert bad.status_code == 400
    ok = client.post("/password", data={"old_password": "secret-li", "new_password": "a-new-secret",
                                        "confirm_password": "a-new-secret", "csrf_token": token})
    assert ok.status_code == 302
    client.post("/logout", data={"csrf_token": csrf_of(client, "/")})
    assert login(client, "li", "a-new-secret").status_code == 302


def test_language_switch_to_english(client, users):
    client.get("/lang/en")
    page = client.get("/login").get_data(as_text=True)
    assert "Log in" in page and 'lang="en"' in page


def test_open_redirect_is_refused(client, users):
    token = csrf_of(client)
    response = client.post("/login?next=https://evil.example/", data={"username": "li", "password": "secret-li",
                                                                      "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_security_headers_and_cookie_flags(client, users):
    response = login(client, "li")
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/").headers["X-Frame-Options"] == "DENY"
