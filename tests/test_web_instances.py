"""Instance pages: the scoped list, the instance page and its diagram, status changes and retry through the web."""

from __future__ import annotations

import json
import re

import pytest
from browser import browser_login, shot
from conftest import FIXTURES, ROOT, csrf_of, deploy_paths, login
from helpers import SUBMISSION, actions, instance, only_task
from sqlalchemy import update

from engine import runtime
from engine.actors import SYSTEM, add_user
from engine.models import InboxTask
from engine.orgs import add_organisation


@pytest.fixture
def more(ctx, users):
    """Add an auditor, an admin, and a staff member of a city centre; return the centre's id."""
    with ctx.sessions.begin() as s:
        centre = add_organisation(s, "zy-centre", "张掖市公共资源交易中心", "centre", level="city")
        add_user(s, "qian", ["auditor"], password="secret-qian")
        add_user(s, "root", ["admin"], password="secret-root")
        add_user(s, "sun", ["staff"], password="secret-sun", organisation_id=centre.id)
        return centre.id


def start(ctx, actor=SYSTEM, **kwargs) -> int:
    with ctx.sessions.begin() as s:
        return runtime.start_instance(s, "document_review", {}, actor, **kwargs).id


def submitted(ctx, users, **kwargs) -> int:
    iid = start(ctx, users["zhang"], **kwargs)
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, only_task(ctx, iid).task_id, SUBMISSION, users["zhang"])
    return iid


def page_data(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="instance-data">(.*?)</script>', html,
                                re.S).group(1))


def post(client, url: str, data: dict, token_page: str = "/instances"):
    return client.post(url, data={**data, "csrf_token": csrf_of(client, token_page)})


def test_the_list_is_scoped_filtered_newest_first_and_paginated(example, users, more, fixed_clock, client):
    ids = []
    for _ in range(22):
        fixed_clock.advance(minutes=1)
        ids.append(start(example, users["zhang"]))
    elsewhere = start(example, centre_id=more)
    with example.sessions.begin() as s:
        runtime.suspend(s, ids[0], "complaint", SYSTEM)
    login(client, "li")
    first = client.get("/instances").get_data(as_text=True)
    shown = [int(n) for n in re.findall(r'<a href="/instances/(\d+)">#', first)]
    assert shown == ids[::-1][:20]
    assert elsewhere not in shown and "第 1 / 2 页，共 22 个" in first
    second = client.get("/instances?page=2").get_data(as_text=True)
    assert [int(n) for n in re.findall(r'<a href="/instances/(\d+)">#', second)] == ids[1::-1]
    suspended = client.get("/instances?status=suspended&process=document_review").get_data(as_text=True)
    assert re.findall(r'<a href="/instances/(\d+)">#', suspended) == [str(ids[0])]
    assert "没有符合条件的流程实例" in client.get("/instances?process=nope").get_data(as_text=True)
    login(client, "sun")
    centre_list = client.get("/instances").get_data(as_text=True)
    assert f'<a href="/instances/{elsewhere}">#' in centre_list


def test_the_page_shows_markers_timers_tasks_data_and_trail(example, users, client):
    iid = submitted(example, users)
    login(client, "li")
    response = client.get(f"/instances/{iid}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    data = page_data(html)
    assert data["url"] == f"/instances/{iid}/diagram.bpmn"
    assert data["markers"]["active"] == ["review_documents", "review_overdue"]
    assert "submit_documents" in data["markers"]["done"]
    assert ["classify_review", "review_documents"] in data["markers"]["flows"]
    assert data["timers"] == [{"element": "review_overdue", "label": "到期 2026-10-12 24:00"}]
    task = only_task(example, iid)
    assert f'href="/tasks/{task.task_id}"' in html
    assert "document_review</code> v1" in html
    assert 'data-field="review_level"' in html and "4500000.10" in html
    assert "instance.start" in html and "task.complete" in html
    assert f'action="/instances/{iid}/suspend"' in html and 'name="reason" required' in html
    assert "vendor/bpmn-js/bpmn-navigated-viewer.production.min.js" in html and "js/instance.js" in html


def test_the_tenderer_sees_only_the_fields_of_its_own_forms(example, users, client):
    iid = submitted(example, users)
    with example.sessions.begin() as s:
        runtime.complete_task(s, only_task(example, iid).task_id, {"decision": "return", "comments": "缺少资质证明"},
                              users["li"])
    login(client, "zhang")
    html = client.get(f"/instances/{iid}").get_data(as_text=True)
    assert 'data-field="project_name"' in html
    assert 'data-field="review_level"' not in html and 'data-field="comments"' not in html
    assert "缺少资质证明" not in html
    assert "instance-actions" not in html


def test_the_auditor_reads_everything_without_action_forms(example, users, more, client):
    iid = submitted(example, users, centre_id=more)
    login(client, "qian")
    html = client.get(f"/instances/{iid}").get_data(as_text=True)
    assert 'data-field="review_level"' in html
    assert "instance-actions" not in html and "/suspend" not in html
    assert client.get(f"/instances/{iid}/diagram.bpmn").status_code == 200
    token = csrf_of(client, f"/instances/{iid}")
    assert client.post(f"/instances/{iid}/suspend", data={"reason": "x", "csrf_token": token}).status_code == 403


def test_viewers_out_of_scope_are_refused(example, users, more, client):
    iid = submitted(example, users, centre_id=more)
    assert client.get(f"/instances/{iid}").status_code == 302
    assert "/login" in client.get(f"/instances/{iid}/diagram.bpmn").headers["Location"]
    login(client, "li")
    assert client.get(f"/instances/{iid}").status_code == 403
    assert client.get(f"/instances/{iid}/diagram.bpmn").status_code == 403
    assert client.get("/instances/999999").status_code == 404
    login(client, "sun")
    assert client.get(f"/instances/{iid}").status_code == 200


def test_bidders_see_an_instance_only_where_a_step_is_theirs(example, users, client):
    iid = submitted(example, users)
    login(client, "chen")
    assert client.get(f"/instances/{iid}").status_code == 403
    assert f'href="/instances/{iid}"' not in client.get("/instances").get_data(as_text=True)
    with example.sessions.begin() as s:
        s.execute(update(InboxTask).where(InboxTask.instance_id == iid).values(assignee_id=users["chen"].user_id))
    assert client.get(f"/instances/{iid}").status_code == 200
    assert client.get(f"/instances/{iid}/diagram.bpmn").status_code == 200


def test_the_diagram_is_the_instances_pinned_version(example, users, client, tmp_path):
    old = start(example, users["zhang"])
    changed = (ROOT / "bpmn" / "document_review.bpmn").read_text().replace("审查文件 Review documents",
                                                                           "审查文件（第二版）")
    (tmp_path / "document_review.bpmn").write_text(changed)
    (outcome,) = deploy_paths(example, tmp_path / "document_review.bpmn")
    assert outcome.version == 2
    new = start(example, users["zhang"])
    login(client, "li")
    response = client.get(f"/instances/{old}/diagram.bpmn")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert "审查文件 Review documents" in response.get_data(as_text=True)
    assert "第二版" not in response.get_data(as_text=True)
    assert "审查文件（第二版）" in client.get(f"/instances/{new}/diagram.bpmn").get_data(as_text=True)
    assert "document_review</code> v1" in client.get(f"/instances/{old}").get_data(as_text=True)
    assert "document_review</code> v2" in client.get(f"/instances/{new}").get_data(as_text=True)


def test_suspend_resume_terminate_need_a_reason_and_are_audited(example, users, client):
    iid = submitted(example, users)
    login(client, "zhao")
    url = f"/instances/{iid}"
    assert client.post(url + "/suspend", data={"reason": "complaint"}).status_code == 400
    missing = post(client, url + "/suspend", {"reason": "  "})
    assert missing.status_code == 400 and "reason is required" in missing.get_data(as_text=True)
    assert instance(example, iid).status == "running"
    assert post(client, url + "/suspend", {"reason": "投诉处理期间暂停"}).status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "流程实例已暂停" in page and "投诉处理期间暂停" in page and "/resume" in page
    assert instance(example, iid).status == "suspended"
    assert post(client, url + "/suspend", {"reason": "again"}).status_code == 409
    assert post(client, url + "/resume", {"reason": ""}).status_code == 400
    assert post(client, url + "/resume", {"reason": "投诉已驳回"}).status_code == 302
    assert instance(example, iid).status == "running"
    assert post(client, url + "/terminate", {"reason": "项目取消"}).status_code == 302
    row = instance(example, iid)
    assert (row.status, row.status_reason) == ("terminated", "项目取消")
    assert actions(example, iid)[-3:] == ["instance.suspend", "instance.resume", "instance.terminate"]
    assert "instance.terminate" in client.get(url).get_data(as_text=True)


def test_tenderers_may_not_change_an_instances_status(example, users, client):
    iid = submitted(example, users)
    login(client, "zhang")
    assert post(client, f"/instances/{iid}/suspend", {"reason": "mine"}).status_code == 403
    assert instance(example, iid).status == "running"


def test_retry_of_an_errored_instance_with_corrected_data(ctx, users, client):
    deploy_paths(ctx, FIXTURES / "forms", FIXTURES / "failing_script.bpmn")
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "failing_script", {}, SYSTEM).id
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, only_task(ctx, iid).task_id, {"divisor": 0}, SYSTEM)
    login(client, "zhao")
    html = client.get(f"/instances/{iid}").get_data(as_text=True)
    assert "ZeroDivisionError" in html and page_data(html)["markers"]["error"] == ["divide"]
    assert "/retry" not in html
    assert post(client, f"/instances/{iid}/retry", {}).status_code == 403
    login(client, "li")
    assert "/retry" in client.get(f"/instances/{iid}").get_data(as_text=True)
    assert post(client, f"/instances/{iid}/retry", {"data": "[1]"}).status_code == 400
    again = post(client, f"/instances/{iid}/retry", {})
    assert again.status_code == 302 and instance(ctx, iid).status == "error"
    assert "重试后仍然出错" in client.get(f"/instances/{iid}").get_data(as_text=True)
    assert post(client, f"/instances/{iid}/retry", {"data": '{"divisor": 4}'}).status_code == 302
    assert instance(ctx, iid).status == "running"
    assert only_task(ctx, iid).element_id == "show_result"
    assert actions(ctx, iid).count("instance.retry") == 2


def test_the_pages_have_an_english_catalog(example, users, client):
    iid = start(example, users["zhang"])
    login(client, "li")
    client.get("/lang/en")
    assert "Process instances" in client.get("/instances").get_data(as_text=True)
    page = client.get(f"/instances/{iid}").get_data(as_text=True)
    assert "Audit trail" in page and "Suspend" in page


def test_the_diagram_renders_with_the_active_task_marked(example, users, page):
    iid = submitted(example, users)
    browser_login(page, "li", "secret-li")
    page.goto(f"{page.base_url}/instances/{iid}")
    page.wait_for_selector("#instance-diagram[data-ready=true]")
    assert page.locator('.djs-element.ggzy-active[data-element-id="review_documents"]').count() == 1
    assert page.locator('.djs-element.ggzy-done[data-element-id="submit_documents"]').count() == 1
    assert page.locator('.djs-element.ggzy-done[data-element-id="flow_classify_review"]').count() == 1
    assert "2026-10-12 24:00" in page.inner_text(".ggzy-timer-overlay")
    shot(page, "instance-review")
    assert page.js_errors == []
