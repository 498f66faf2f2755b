"""The JSON API: bearer tokens only, every endpoint, errors as JSON with the right status, the OpenAPI document."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import login
from helpers import SUBMISSION, instance
from sqlalchemy import func, select

from engine import tokens
from engine.actors import add_user, load_actor
from engine.models import InboxTask, Instance, User
from engine.orgs import add_organisation, uscc_check_char
from web.bench import api as api_bench

ENDPOINTS = {
    "/api/v1/instances": {"post"},
    "/api/v1/instances/{instance_id}": {"get"},
    "/api/v1/tasks": {"get"},
    "/api/v1/tasks/{task_id}": {"get"},
    "/api/v1/tasks/{task_id}/complete": {"post"},
}


@pytest.fixture
def keys(ctx, users) -> dict[str, str]:
    """Return a bearer token per example user."""
    with ctx.sessions.begin() as s:
        return {name: tokens.create_token(s, actor.user_id, "tests")[1] for name, actor in users.items()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start(client, token: str, **body) -> dict:
    response = client.post("/api/v1/instances", json={"process": "document_review", **body}, headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_openapi_document_describes_every_endpoint(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"] == "3.0.3" and doc["info"]["title"] == "ggzy API"
    assert {path: set(ops) - {"parameters"} for path, ops in doc["paths"].items()} == ENDPOINTS
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "a personal token from /account/tokens"}
    assert doc["security"] == [{"bearerAuth": []}]
    complete = doc["paths"]["/api/v1/tasks/{task_id}/complete"]["post"]
    assert {"200", "400", "401", "403", "404", "409"} <= set(complete["responses"])
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            refs.update(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    for ref in refs:
        _, section, kind, name = ref.split("/")
        assert name in doc[section][kind], ref


def test_every_endpoint_happy_path(client, example, keys):
    started = start(client, keys["zhang"], title="道路改造文件审查")
    assert started["status"] == "running" and started["version"] == 1 and started["title"] == "道路改造文件审查"
    (task,) = started["tasks"]
    assert task["element_id"] == "submit_documents" and task["role"] == "tenderer"

    listed = client.get("/api/v1/tasks", headers=bearer(keys["zhang"]))
    assert listed.status_code == 200
    assert [t["task_id"] for t in listed.get_json()] == [task["task_id"]]
    assert json.loads(listed.headers["X-Pagination"])["total"] == 1

    detail = client.get(f"/api/v1/tasks/{task['task_id']}", headers=bearer(keys["zhang"])).get_json()
    assert detail["form_key"] == "submit_documents.json"
    assert detail["form"]["required"] == ["project_name", "page_count", "estimate"]

    done = client.post(f"/api/v1/tasks/{task['task_id']}/complete", json={"data": SUBMISSION},
                       headers=bearer(keys["zhang"]))
    assert done.status_code == 200
    body = done.get_json()
    assert [t["element_id"] for t in body["tasks"]] == ["review_documents"]
    assert body["revision"] > started["revision"]

    shown = client.get(f"/api/v1/instances/{started['id']}", headers=bearer(keys["zhang"]))
    assert shown.status_code == 200
    shown = shown.get_json()
    assert shown["status"] == "running" and shown["process"] == "document_review"
    assert shown["version_id"] == instance(example, started["id"]).process_version_id
    assert shown["next_timer_at"] is not None
    assert [t["role"] for t in shown["tasks"]] == ["staff"]
    assert client.get("/api/v1/tasks", headers=bearer(keys["zhang"])).get_json() == []
    assert [t["element_id"] for t in client.get("/api/v1/tasks", headers=bearer(keys["li"])).get_json()] == [
        "review_documents"]


def test_start_returns_the_location_of_the_instance(client, example, keys):
    response = client.post("/api/v1/instances", json={"process": "document_review", "data": {"note": "x"}},
                           headers=bearer(keys["zhang"]))
    assert response.status_code == 201
    assert response.headers["Location"].endswith(f"/api/v1/instances/{response.get_json()['id']}")


def test_tasks_claimed_by_someone_else_are_not_mine(client, ctx, example, keys):
    started = start(client, keys["zhang"])
    done = client.post(f"/api/v1/tasks/{started['tasks'][0]['task_id']}/complete", json={"data": SUBMISSION},
                       headers=bearer(keys["zhang"])).get_json()
    (review,) = done["tasks"]
    with ctx.sessions.begin() as s:
        s.get(InboxTask, review["task_id"]).assignee_id = load_actor(s, "wang").user_id

    def listed(name):
        return [t["task_id"] for t in client.get("/api/v1/tasks", headers=bearer(keys[name])).get_json()]

    assert listed("wang") == [review["task_id"]]
    assert listed("li") == []


def test_tasks_are_paginated(client, example, keys):
    ids = [start(client, keys["zhang"])["tasks"][0]["task_id"] for _ in range(3)]
    first = client.get("/api/v1/tasks?page_size=2", headers=bearer(keys["zhang"]))
    second = client.get("/api/v1/tasks?page_size=2&page=2", headers=bearer(keys["zhang"]))
    assert json.loads(first.headers["X-Pagination"]) == {"total": 3, "total_pages": 2, "first_page": 1,
                                                         "last_page": 2, "page": 1, "next_page": 2}
    assert sorted(t["task_id"] for t in first.get_json() + second.get_json()) == sorted(ids)
    bad = client.get("/api/v1/tasks?page=0", headers=bearer(keys["zhang"]))
    assert bad.status_code == 400 and "page" in bad.get_json()["details"]


def test_invalid_form_data_is_400_with_field_details(client, example, keys):
    task_id = start(client, keys["zhang"])["tasks"][0]["task_id"]
    response = client.post(f"/api/v1/tasks/{task_id}/complete",
                           json={"data": {**SUBMISSION, "page_count": 0, "estimate": "12.345"}},
                           headers=bearer(keys["zhang"]))
    assert response.status_code == 400
    body = response.get_json()
    assert body["status"] == 400
    assert set(body["details"]) == {"page_count", "estimate"}
    assert client.get(f"/api/v1/tasks/{task_id}", headers=bearer(keys["zhang"])).status_code == 200


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"process"}),
    ({"process": "document_review", "colour": "red"}, {"colour"}),
    ({"process": "document_review", "data": []}, {"data"}),
    ({"process": "document_review", "centre_id": "1"}, {"centre_id"}),
    ({"process": "document_review", "centre_id": 999}, {"centre_id"}),
    ({"process": "document_review", "data": {"_secret": 1}}, {"(form)"}),
])
def test_invalid_start_request_is_400_with_field_details(client, example, keys, body, fields):
    response = client.post("/api/v1/instances", json=body, headers=bearer(keys["zhang"]))
    assert response.status_code == 400
    assert set(response.get_json()["details"]) == fields
    with example.sessions() as s:
        assert s.execute(select(func.count()).select_from(Instance)).scalar_one() == 0


def test_malformed_json_is_400(client, example, keys):
    response = client.post("/api/v1/instances", data="{not json",
                           headers={**bearer(keys["zhang"]), "Content-Type": "application/json"})
    assert response.status_code == 400 and response.get_json()["details"]


def test_start_with_organisations(client, example, ctx):
    with ctx.sessions.begin() as s:
        centre = add_organisation(s, "zy-centre", "张掖市公共资源交易中心", "centre", level="city")
        dept = add_organisation(s, "dept-zjj", "张掖市住房和城乡建设局", "department")
        uscc = "91620700MA7" + "ABCDEF"
        company = add_organisation(s, "acme", "甲公司", "company", uscc=uscc + uscc_check_char(uscc))
        add_user(s, "acme_user", ["tenderer"], organisation_id=company.id)
        add_user(s, "zy_staff", ["staff"], organisation_id=centre.id)
        ids = {"centre": centre.id, "dept": dept.id, "company": company.id}
        key = tokens.create_token(s, load_actor(s, "acme_user").user_id, "t")[1]
    started = start(client, key, centre_id=ids["centre"], department_id=ids["dept"])
    row = instance(ctx, started["id"])
    assert (row.centre_id, row.department_id, row.tenderer_id) == (ids["centre"], ids["dept"], ids["company"])
    wrong_kind = client.post("/api/v1/instances", json={"process": "document_review", "centre_id": ids["dept"]},
                             headers=bearer(key))
    assert wrong_kind.status_code == 400 and set(wrong_kind.get_json()["details"]) == {"centre_id"}


def test_wrong_role_is_403(client, example, keys):
    started = start(client, keys["zhang"])
    task_id = started["tasks"][0]["task_id"]
    refused = client.post(f"/api/v1/tasks/{task_id}/complete", json={"data": SUBMISSION}, headers=bearer(keys["li"]))
    assert refused.status_code == 403
    assert "does not hold role 'tenderer'" in refused.get_json()["error"]
    assert client.get(f"/api/v1/tasks/{task_id}", headers=bearer(keys["li"])).status_code == 403
    assert client.post("/api/v1/instances", json={"process": "document_review"},
                       headers=bearer(keys["chen"])).status_code == 403
    assert client.get(f"/api/v1/instances/{started['id']}", headers=bearer(keys["chen"])).status_code == 403


def test_instance_of_another_organisation_is_403(client, example, ctx, keys):
    with ctx.sessions.begin() as s:
        county = add_organisation(s, "gt-centre", "高台县公共资源交易中心", "centre", level="county")
        s.get(User, load_actor(s, "li").user_id).organisation_id = county.id
        other = add_organisation(s, "zy-centre", "张掖市公共资源交易中心", "centre", level="city").id
        s.get(User, load_actor(s, "wang").user_id).organisation_id = other
    started = start(client, keys["zhang"], centre_id=other)
    assert client.get(f"/api/v1/instances/{started['id']}", headers=bearer(keys["li"])).status_code == 403
    assert client.get(f"/api/v1/instances/{started['id']}", headers=bearer(keys["wang"])).status_code == 200


def test_double_completion_is_409(client, example, keys):
    task_id = start(client, keys["zhang"])["tasks"][0]["task_id"]
    path = f"/api/v1/tasks/{task_id}/complete"
    assert client.post(path, json={"data": SUBMISSION}, headers=bearer(keys["zhang"])).status_code == 200
    again = client.post(path, json={"data": SUBMISSION}, headers=bearer(keys["zhang"]))
    assert again.status_code == 409
    assert "already completed by zhang" in again.get_json()["error"]


def test_unknown_things_are_404(client, example, keys):
    headers = bearer(keys["zhang"])
    assert client.get("/api/v1/instances/999", headers=headers).status_code == 404
    assert client.get("/api/v1/tasks/no-such-task", headers=headers).status_code == 404
    assert client.post("/api/v1/tasks/no-such-task/complete", json={}, headers=headers).status_code == 404
    missing = client.post("/api/v1/instances", json={"process": "no_such_process"}, headers=headers)
    assert missing.status_code == 404 and missing.get_json()["status"] == 404
    assert client.get("/api/v1/nothing-here", headers=headers).status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer ggzy_nonsense", "Basic emhhbmc6c2VjcmV0",
                                           "ggzy_not-even-a-scheme"])
def test_missing_or_bad_token_is_401(client, example, keys, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ggzy"'
    assert response.is_json
    assert client.post("/api/v1/instances", json={"process": "document_review"}, headers=headers).status_code == 401


def test_revoked_token_is_401(client, ctx, example, keys):
    assert client.get("/api/v1/tasks", headers=bearer(keys["zhang"])).status_code == 200
    with ctx.sessions.begin() as s:
        zhang = load_actor(s, "zhang")
        (token,) = tokens.list_tokens(s, zhang.user_id)
        tokens.revoke(s, token.id, zhang)
    assert client.get("/api/v1/tasks", headers=bearer(keys["zhang"])).status_code == 401


def test_token_use_is_recorded(client, ctx, example, keys, fixed_clock):
    client.get("/api/v1/tasks", headers=bearer(keys["zhang"]))
    with ctx.sessions() as s:
        (token,) = tokens.list_tokens(s, load_actor(s, "zhang").user_id)
        assert token.last_used_at == fixed_clock.now()


def test_session_cookie_alone_does_not_authenticate_the_api(client, ctx, example, users):
    assert login(client, "zhang").status_code == 302
    assert client.get("/account/tokens").status_code == 200
    assert client.get("/api/v1/tasks").status_code == 401
    refused = client.post("/api/v1/instances", json={"process": "document_review"})
    assert refused.status_code == 401
    with ctx.sessions() as s:
        assert s.execute(select(func.count()).select_from(Instance)).scalar_one() == 0


def test_api_calls_set_no_cookie(client, example, keys):
    response = client.post("/api/v1/instances", json={"process": "document_review"}, headers=bearer(keys["zhang"]))
    assert response.status_code == 201
    assert "Set-Cookie" not in response.headers


# --- the bench (gunicorn serving web:create_app() on a throw-away SQLite database) -----------------------


def test_api_bench_reports_every_figure():
    result = api_bench.run(json_output=True, quick=True, rounds=1, instances=2)
    for key in ("api_instances_per_s", "direct_instances_per_s", "ratio", "api_ms_per_request"):
        assert isinstance(result[key], float) and result[key] > 0, key
    for key in ("api_cpu_ms_per_instance", "direct_cpu_ms_per_instance", "cpu_ratio"):
        assert result[key] is None or result[key] > 0, key
    assert result["target_ratio"] == 1.5
    assert result["ok"] == (result["ratio"] <= 1.5)


def test_api_bench_always_stops_its_server(tmp_path):
    context, _, _ = api_bench.prepare(tmp_path)
    context.engine.dispose()
    with pytest.raises(RuntimeError, match="interrupted"), api_bench.serve(tmp_path) as server:
        assert server.cpu_seconds() is None or server.cpu_seconds() > 0
        raise RuntimeError("interrupted")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
