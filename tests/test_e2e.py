"""End to end in Debian's Chromium: the pages people use, with screenshots under tests/artifacts/."""

from __future__ import annotations

from browser import browser_login, shot


def test_login_home_and_language_switch(page, users):
    page.goto(page.base_url + "/login")
    assert page.inner_text("h1") == "登录"
    shot(page, "login")
    browser_login(page, "li", "secret-li")
    assert "退出" in page.inner_text("header")
    page.click("text=English")
    assert "Log out" in page.inner_text("header")
    shot(page, "home-en")
    page.click("text=中文")
    assert "退出" in page.inner_text("header")
    assert page.js_errors == []
