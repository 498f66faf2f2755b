"""The inbox page: access, Chinese first, tabs, counts, due highlighting, filters, pages; claim, release, reassign."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from browser import browser_login, shot
from conftest import csrf_of, login
from test_worklist import build_world, deploy_review, make_task, start, task_of

from engine import clock, runtime

LOGINS = ("a1", "a2", "lead_a", "b1", "bidder1", "auditor")
ROW = re.compile(r'<tr id="task-([^"]+)" class="([^"]*)"')


@pytest.fixture
def review(ctx):
    return deploy_review(ctx)


@pytest.fixture
def world(review):
    return build_world(review, LOGINS)


def rows(html: str) -> dict[str, str]:
    """Return the task rows of an inbox page: task id -> row classes."""
    return dict(ROW.findall(html))


def page_of(client, path: str = "/inbox") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def post(client, path: str, data: dict | None = None, *, htmx: bool = False, token: bool = True):
    form = {"next": "/inbox?tab=roles", **(data or {})}
    if token:
        form["csrf_token"] = csrf_of(client, "/inbox")
    return client.post(path, data=form, headers={"HX-Request": "true"} if htmx else {})


# --- access ---------------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login(client, world):
    response = client.get("/inbox?tab=roles")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/inbox")


def test_auditors_have_no_inbox(client, review, world):
    task = task_of(review, start(review, world))
    login(client, "auditor")
    assert client.get("/inbox").status_code == 403
    assert post(client, f"/inbox/{task}/claim").status_code == 403
    assert "待办任务" not in page_of(client, "/")


def test_the_inbox_is_in_the_navigation_of_those_who_work(client, world):
    login(client, "a1")
    assert 'href="/inbox"' in page_of(client, "/")


# --- the page -----------------------------------------------------------------------------------------------


def test_page_is_chinese_and_opens_on_the_tab_with_work(client, review, world):
    tasks = {task_of(review, start(review, world)) for _ in range(2)}
    task_of(review, start(review, world, centre="centre_b"))
    login(client, "a1")
    html = page_of(client)
    assert "<h1>待办任务</h1>" in html and "我的任务" in html and "我角色的任务" in html
    assert set(rows(html)) == tasks
    assert re.search(r'aria-current="page">我角色的任务 <span class="count">2</span>', html)
    assert '我的任务 <span class="count">0</span>' in html
    assert "审查文件 Review documents" in html and "道路改造工程 centre_a" in html and "工程建设" in html
    assert f'href="/tasks/{sorted(tasks)[0]}"' in html
    assert "2026-10-12 24:00" in html  # five working days across National Day, shown in Shanghai time
    assert html.count(">领取</button>") == 2


def test_english_catalog(client, review, world):
    start(review, world)
    login(client, "a1")
    client.get("/lang/en")
    html = page_of(client)
    assert "<h1>Open tasks</h1>" in html and "My tasks" in html and "Tasks for my roles" in html and ">Claim<" in html


def test_overdue_and_near_rows_are_highlighted(client, review, world, fixed_clock):
    due_soon = task_of(review, start(review, world))
    with review.sessions.begin() as s:
        later = make_task(s, start(review, world, submit=False),
                          due_at=datetime.fromisoformat("2026-10-30T00:00:00+08:00")).task_id
    login(client, "a1")
    fixed_clock.set(datetime.fromisoformat("2026-10-12T09:00:00+08:00"))
    html = page_of(client, "/inbox?tab=roles")
    assert rows(html) == {due_soon: "near", later: ""}
    assert '<span class="badge near">即将到期</span>' in html and "badge overdue" not in html
    fixed_clock.advance(days=1)
    html = page_of(client, "/inbox?tab=roles")
    assert rows(html) == {due_soon: "overdue", later: ""}
    assert '<span class="badge overdue">已超期</span>' in html and "已超期 1 项" in html


def test_filters_narrow_the_list(client, review, world):
    iid = start(review, world, submit=False)
    with review.sessions.begin() as s:
        bought = make_task(s, iid, category="procurement", title="采购文件审查").task_id
        late = make_task(s, iid, due_at=clock.now()).task_id
    login(client, "a1")
    assert set(rows(page_of(client, "/inbox?tab=roles&category=procurement"))) == {bought}
    html = page_of(client, "/inbox?tab=roles&overdue=1")
    assert set(rows(html)) == {late} and 'value="1" checked' in html and "清除筛选" in html
    assert set(rows(page_of(client, "/inbox?tab=roles&due_within=3"))) == {late}
    for value in ("soon", "%C2%B2", "-1"):  # "²" is a digit to Python, not a number of days
        bad = client.get(f"/inbox?tab=roles&due_within={value}")
        assert bad.status_code == 400 and "参数 due_within 应为非负整数" in bad.get_data(as_text=True)
    assert client.get("/inbox?tab=everything").status_code == 400


def test_pages_of_fifty(client, review, world):
    iid = start(review, world, submit=False)
    with review.sessions.begin() as s:
        for _ in range(60):
            make_task(s, iid)
    login(client, "a1")
    first = page_of(client, "/inbox?tab=roles&category=construction")
    assert len(rows(first)) == 50 and "第 1 页，共 2 页" in first and "上一页" not in first
    assert 'href="/inbox?tab=roles&amp;page=2&amp;category=construction" rel="next"' in first
    second = page_of(client, "/inbox?tab=roles&page=2&category=construction")
    assert len(rows(second)) == 10 and "上一页" in second and "下一页" not in second
    assert client.get("/inbox?tab=roles&page=0").status_code == 400


def test_bidders_see_their_assigned_steps(client, review, world):
    iid = start(review, world)
    with review.sessions.begin() as s:
        own = make_task(s, iid, role="bidder", assignee_id=world.actors["bidder1"].user_id).task_id
        make_task(s, iid, role="bidder", assignee_id=world.actors["bidder2"].user_id)
    login(client, "bidder1")
    html = page_of(client)
    assert set(rows(html)) == {own} and ">办理</a>" in html and "退回" not in html


# --- actions ------------------------------------------------------------------------------------------------


def test_claim_needs_the_csrf_token(client, review, world):
    iid = start(review, world)
    login(client, "a1")
    response = post(client, f"/inbox/{task_of(review, iid)}/claim", token=False)
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert set(rows(page_of(client, "/inbox?tab=roles"))) == {task_of(review, iid)}


def test_claim_and_release_without_javascript(client, review, world):
    task = task_of(review, start(review, world))
    login(client, "a1")
    response = post(client, f"/inbox/{task}/claim")
    assert response.status_code == 302 and response.headers["Location"] == "/inbox?tab=roles"
    assert "已领取任务：审查文件 Review documents" in page_of(client, "/inbox?tab=roles")
    mine = page_of(client, "/inbox?tab=mine")
    assert set(rows(mine)) == {task} and ">退回</button>" in mine
    assert post(client, f"/inbox/{task}/unclaim").status_code == 302
    assert "已退回角色待办" in page_of(client, "/inbox?tab=mine")
    assert set(rows(page_of(client, "/inbox?tab=roles"))) == {task}


def test_claim_with_htmx_answers_the_updated_row(client, review, world):
    task = task_of(review, start(review, world))
    login(client, "a1")
    response = post(client, f"/inbox/{task}/claim", htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and html.lstrip().startswith(f'<tr id="task-{task}"')
    assert ">退回</button>" in html and "已领取任务" in html and "<html" not in html
    assert response.headers["X-Inbox-Row"] == "1" and response.headers["HX-Trigger"] == "inbox-changed"


def test_a_refused_claim_says_who_holds_the_task(client, app, review, world):
    task = task_of(review, start(review, world))
    login(client, "a1")
    post(client, f"/inbox/{task}/claim")
    other = app.test_client()
    login(other, "a2")
    refused = post(other, f"/inbox/{task}/claim", htmx=True)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409 and refused.headers["X-Inbox-Row"] == "1"
    assert "already claimed by a1 同志 (a1)" in html and "<html" not in html
    page = post(other, f"/inbox/{task}/claim")
    assert page.status_code == 409 and "already claimed by a1 同志 (a1)" in page.get_data(as_text=True)


def test_a_lead_reassigns_to_a_colleague(client, app, review, world):
    task = task_of(review, start(review, world))
    login(client, "lead_a")
    html = page_of(client, "/inbox?tab=roles")
    options = re.findall(r'<option value="([^"]+)">', html.split('name="to"')[1].split("</select>")[0])
    assert options == ["a1", "a2", "lead_a"]
    response = post(client, f"/inbox/{task}/reassign", {"to": "a2"}, htmx=True)
    assert response.status_code == 200 and "办理人：a2 同志" in response.get_data(as_text=True)
    colleague = app.test_client()
    login(colleague, "a2")
    assert set(rows(page_of(colleague, "/inbox?tab=mine"))) == {task}
    assert 'name="to"' not in page_of(colleague, "/inbox?tab=mine")
    assert post(colleague, f"/inbox/{task}/reassign", {"to": "a1"}).status_code == 403
    missing = post(client, f"/inbox/{task}/reassign", {"to": ""})
    assert missing.status_code == 400 and "请选择要分派给的人员" in missing.get_data(as_text=True)


def test_a_task_completed_meanwhile_answers_a_gone_row(client, review, world):
    task = task_of(review, start(review, world))
    login(client, "a1")
    with review.sessions.begin() as s:
        runtime.complete_task(s, task, {"decision": "approve"}, world.actors["a2"])
    response = post(client, f"/inbox/{task}/claim", htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 409 and f'<tr id="task-{task}" class="gone">' in html
    assert "already completed by a2" in html
    assert post(client, "/inbox/no-such-task/claim", htmx=True).status_code == 404


def test_redirects_stay_on_the_inbox(client, review, world):
    task = task_of(review, start(review, world))
    login(client, "a1")
    response = post(client, f"/inbox/{task}/claim", {"next": "https://evil.example/inbox"})
    assert response.headers["Location"] == "/inbox"


# --- in the browser -------------------------------------------------------------------------------------------


def test_claim_in_the_browser_swaps_the_row_and_the_counts(page, review, world):
    from playwright.sync_api import expect

    tasks = [task_of(review, start(review, world)) for _ in range(3)]
    browser_login(page, "lead_a", "secret-lead_a")
    page.goto(page.base_url + "/inbox")
    row = page.locator(f"#task-{tasks[0]}")
    row.get_by_role("button", name="领取").click()
    expect(row.get_by_role("button", name="退回")).to_be_visible()
    expect(row).to_contain_text("已领取任务")
    expect(page.locator("#inbox-tabs")).to_contain_text("我的任务 1")
    expect(page.locator("#inbox-tabs")).to_contain_text("我角色的任务 2")
    shot(page, "inbox")
    assert page.js_errors == []


# --- the bench ----------------------------------------------------------------------------------------------------


def test_bench_runs_and_every_inbox_query_reads_an_index(monkeypatch, capsys):
    """A smoke run at tiny sizes: every figure present, no query reading the table; no timing assertions."""
    from web.bench import inbox as bench

    monkeypatch.setattr(bench, "SIZES", {True: (1_500, 1_000)})
    monkeypatch.setattr(bench, "LOADS", {True: 1})
    monkeypatch.setattr(bench, "WARMUP", 0)
    result = bench.run(json_output=True, quick=True)
    assert capsys.readouterr().out == ""
    assert (result["small_tasks"], result["large_tasks"], result["target_ratio"]) == (1_000, 1_500, 3.0)
    assert result["small_ms"] > 0 and result["large_ms"] > 0 and result["ratio"] > 0
    assert result["inbox_queries"] >= 4 and result["unindexed_queries"] == []
    assert result["ok"] == (result["ratio"] <= 3.0)
