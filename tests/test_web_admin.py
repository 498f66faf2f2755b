"""Administration pages: deploy uploads, versions with running counts, diffs, the in-browser editor, access."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
from browser import browser_login, shot
from conftest import FIXTURES, ROOT, csrf_of, deploy_texts, login
from sqlalchemy import func, select, update

from engine import runtime
from engine.actors import SYSTEM, add_user
from engine.models import DefinitionVersion, Instance
from engine.orgs import add_organisation
from web.views.admin import basename, problem_rows

BAD = FIXTURES / "bad"
DMN = (ROOT / "rules" / "review_level.dmn").read_text()
CHEAPER = DMN.replace("Decimal('4000000')", "Decimal('3000000')")
GOOD = sorted([*(ROOT / "rules").glob("*.dmn"), *(ROOT / "forms").glob("*.json"), *(ROOT / "bpmn").glob("*.bpmn")])
PROBLEM = re.compile(r'<tr class="problem"><td>(.*?)</td><td>(.*?)</td>'
                     r'<td class="element">(?:<code>)?(.*?)(?:</code>)?</td><td>(.*?)</td>', re.S)


def make_user(ctx, name: str, roles: list[str], organisation_id: int | None = None) -> None:
    with ctx.sessions.begin() as s:
        add_user(s, name, roles, password=f"pw-{name}-123", organisation_id=organisation_id)


def client_as(app, ctx, name: str, roles: list[str], organisation_id: int | None = None):
    make_user(ctx, name, roles, organisation_id)
    client = app.test_client()
    assert login(client, name, f"pw-{name}-123").status_code == 302
    return client


@pytest.fixture
def admin(app, ctx):
    return client_as(app, ctx, "admin1", ["admin"])


def upload(client, *files: tuple[str, bytes]):
    token = csrf_of(client, "/admin/deploy")
    data = {"csrf_token": token, "files": [(io.BytesIO(body), name) for name, body in files]}
    return client.post("/admin/deploy", data=data, content_type="multipart/form-data")


def post_edit(client, version_id: int, text: str, token: str | None = None):
    headers = {"X-CSRFToken": token or csrf_of(client, "/admin/versions")}
    return client.post(f"/admin/versions/{version_id}/deploy", json={"xml": text}, headers=headers)


def count_versions(ctx) -> int:
    with ctx.sessions() as s:
        return s.execute(select(func.count()).select_from(DefinitionVersion)).scalar()


def version_of(ctx, kind: str, key: str, version: int) -> DefinitionVersion:
    with ctx.sessions() as s:
        return s.execute(select(DefinitionVersion).where(
            DefinitionVersion.kind == kind, DefinitionVersion.key == key, DefinitionVersion.version == version)
        ).scalar_one()


def problems_of(page: str) -> list[tuple[str, str, str, str]]:
    return [tuple(html.unescape(cell) for cell in row) for row in PROBLEM.findall(page)]


def table_row(page: str, row_id: str) -> str:
    return re.search(rf'<tr id="{re.escape(row_id)}">(.*?)</tr>', page, re.S).group(1)


def test_problem_lines_split_into_cells():
    assert problem_rows(["a/b.bpmn:12: element fill_in: bad: very", "c.json:1: not JSON", "no files found"]) == [
        {"file": "a/b.bpmn", "line": "12", "element": "fill_in", "reason": "bad: very"},
        {"file": "c.json", "line": "1", "element": "", "reason": "not JSON"},
        {"file": "", "line": "", "element": "", "reason": "no files found"},
    ]
    assert basename("C:\\rules\\x.dmn") == basename("rules/x.dmn") == "x.dmn"


def test_upload_good_files_creates_versions_then_unchanged(ctx, admin):
    response = upload(admin, *((p.name, p.read_bytes()) for p in GOOD))
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    created = page.count('class="outcome created"')
    assert created >= len(GOOD) and created == page.count('class="outcome ') == count_versions(ctx)
    assert version_of(ctx, "process", "document_review", 1).deployed_by == "admin1"
    listing = admin.get("/admin/versions").get_data(as_text=True)
    assert "document_review" in listing and "review_level" in listing and "submit_documents.json" in listing
    again = upload(admin, *((p.name, p.read_bytes()) for p in GOOD)).get_data(as_text=True)
    assert again.count('class="outcome unchanged"') == created == count_versions(ctx)


@pytest.mark.parametrize(
    ("name", "element", "reason"),
    [
        ("not_well_formed.bpmn", None, "not well-formed"),
        ("xsd_invalid.bpmn", "bad_task", "taskk"),
        ("dangling_decision.bpmn", "classify", "no_such_decision"),
        ("unknown_lane.bpmn", "mop_floor", "janitor"),
        ("missing_form.bpmn", "fill_form", "no_such_form.json"),
        ("xxe.bpmn", None, "DOCTYPE"),
        ("billion_laughs.bpmn", None, "DOCTYPE"),
        ("import_os.bpmn", "pwn", "__import__"),
        ("open_file.bpmn", "read_passwd", "open"),
        ("bad_form.json", None, "properties/name/type"),
        ("bad_condition.bpmn", "flow_bad", "__class__"),
        ("bad_dmn_cell.dmn", "bad_cell", "__import__"),
        ("timer_escape.bpmn", "wait", "getattr"),
    ],
)
def test_each_bad_fixture_is_refused_with_file_line_and_element(ctx, admin, name, element, reason):
    response = upload(admin, (name, (BAD / name).read_bytes()))
    assert response.status_code == 400
    rows = problems_of(response.get_data(as_text=True))
    assert rows, response.get_data(as_text=True)
    assert all(file == name and int(line) >= 1 for file, line, _, _ in rows), rows
    assert any(reason in why for *_, why in rows), rows
    if element:
        assert any(found.startswith(element) for _, _, found, _ in rows), rows
    assert count_versions(ctx) == 0


def test_one_bad_file_among_good_ones_stores_nothing(ctx, admin):
    files = [(p.name, p.read_bytes()) for p in GOOD] + [("unknown_lane.bpmn", (BAD / "unknown_lane.bpmn").read_bytes())]
    response = upload(admin, *files)
    assert response.status_code == 400
    assert [row[2] for row in problems_of(response.get_data(as_text=True))] == ["mop_floor"]
    assert count_versions(ctx) == 0


def test_upload_without_files_is_refused(admin):
    response = admin.post("/admin/deploy", data={"csrf_token": csrf_of(admin, "/admin/deploy")})
    assert response.status_code == 400


def test_regulator_cannot_deploy_over_another_departments_key(app, ctx):
    with ctx.sessions.begin() as s:
        a = add_organisation(s, "dept-a", "甲局", "department").id
        b = add_organisation(s, "dept-b", "乙局", "department").id
    reg_a = client_as(app, ctx, "reg_a", ["regulator"], a)
    reg_b = client_as(app, ctx, "reg_b", ["regulator"], b)
    rule = DMN.replace("review_level", "b_rule")
    assert upload(reg_b, ("b_rule.dmn", rule.encode())).status_code == 200
    owned = version_of(ctx, "decision", "b_rule", 1)
    assert owned.department_id == b
    assert "乙局" in table_row(reg_a.get("/admin/versions").get_data(as_text=True), "row-decision-b_rule")
    changed = rule.replace("Decimal('4000000')", "Decimal('1000000')")
    refused = upload(reg_a, ("b_rule.dmn", changed.encode()))
    assert refused.status_code == 403
    assert count_versions(ctx) == 1
    assert post_edit(reg_a, owned.id, changed).status_code == 403
    assert reg_a.get(f"/admin/versions/{owned.id}/edit").status_code == 403
    assert f"/admin/versions/{owned.id}/edit" not in reg_a.get("/admin/versions").get_data(as_text=True)
    assert f"/admin/versions/{owned.id}/edit" in reg_b.get("/admin/versions").get_data(as_text=True)
    assert post_edit(reg_b, owned.id, changed).get_json()["outcomes"][0]["status"] == "created"
    assert version_of(ctx, "decision", "b_rule", 2).department_id == b


def start(ctx, n: int) -> list[int]:
    with ctx.sessions.begin() as s:
        return [runtime.start_instance(s, "document_review", {}, SYSTEM).id for _ in range(n)]


def test_versions_count_unfinished_instances_per_version(example, admin):
    first = start(example, 3)
    deploy_texts(example, {"review_level.dmn": CHEAPER})
    second = start(example, 2)
    with example.sessions.begin() as s:
        s.execute(update(Instance).where(Instance.id == first[0]).values(status="suspended"))
        s.execute(update(Instance).where(Instance.id == first[1]).values(status="completed"))
        s.execute(update(Instance).where(Instance.id == second[0]).values(status="terminated"))
    listing = admin.get("/admin/versions").get_data(as_text=True)
    process = table_row(listing, "row-process-document_review")
    assert '<span class="running">v2: 1</span>' in process and '<span class="running">v1: 2</span>' in process
    decision = table_row(listing, "row-decision-review_level")
    assert '<span class="running">v2: 1</span>' in decision and '<span class="running">v1: 2</span>' in decision
    history = admin.get("/admin/versions/process/document_review").get_data(as_text=True)
    assert '<td class="running">2</td>' in table_row(history, "v-1")
    assert '<td class="running">1</td>' in table_row(history, "v-2")
    assert "system" in table_row(history, "v-2")
    assert "2026-09-29 09:00" in table_row(history, "v-2")


def test_diff_shows_changed_lines_and_rebinding(example, admin):
    deploy_texts(example, {"review_level.dmn": CHEAPER})
    page = admin.get("/admin/versions/decision/review_level/diff?a=1&b=2").get_data(as_text=True)
    removed = [html.unescape(x) for x in re.findall(r'<span class="diff-del">(.*?)</span>', page)]
    added = [html.unescape(x) for x in re.findall(r'<span class="diff-add">(.*?)</span>', page)]
    assert removed and all("4000000" in line for line in removed)
    assert added and all("3000000" in line for line in added) and len(added) == len(removed) == 2
    assert "diff2html-ui.min.js" in page
    diff = json.loads(re.search(r'id="admin-data">(.*?)</script>', page, re.S).group(1))["diff"]
    assert diff.startswith("--- a/review_level.dmn\n+++ b/review_level.dmn\n@@ ")
    rebound = admin.get("/admin/versions/process/document_review/diff").get_data(as_text=True)
    assert "重新绑定" in rebound and 'class="changed"><code>review_level</code> v2' in rebound
    assert admin.get("/admin/versions/decision/review_level/diff?a=1&b=9").status_code == 404


def test_editor_deploys_an_edited_rule_and_rebinds_the_process(example, admin):
    decision = version_of(example, "decision", "review_level", 1)
    editor = admin.get(f"/admin/versions/{decision.id}/edit").get_data(as_text=True)
    assert "dmn-modeler.production.min.js" in editor and 'id="editor-data"' in editor
    response = post_edit(admin, decision.id, CHEAPER)
    assert response.status_code == 200, response.get_data(as_text=True)
    outcomes = {(o["kind"], o["key"]): o for o in response.get_json()["outcomes"]}
    assert {k: (o["version"], o["status"]) for k, o in outcomes.items()} == {
        ("decision", "review_level"): (2, "created"), ("process", "document_review"): (2, "rebound")}
    new_rule = version_of(example, "decision", "review_level", 2)
    assert new_rule.filename == "review_level.dmn" and new_rule.deployed_by == "admin1"
    assert new_rule.id in version_of(example, "process", "document_review", 2).dependencies
    assert outcomes[("decision", "review_level")]["url"] == f"/admin/versions/{new_rule.id}"


def test_editor_refuses_bad_xml_with_problems(example, admin):
    decision = version_of(example, "decision", "review_level", 1)
    before = count_versions(example)
    response = post_edit(admin, decision.id, DMN.replace("</decisionTable>", ""))
    assert response.status_code == 400
    (problem,) = response.get_json()["problems"]
    assert problem["file"] == "review_level.dmn" and int(problem["line"]) > 1
    assert "not well-formed" in problem["reason"]
    unsafe = post_edit(admin, decision.id, DMN.replace("'simple'", "__import__('os')"))
    assert unsafe.status_code == 400
    assert [p["element"] for p in unsafe.get_json()["problems"]] == ["rule_simple_output"]
    token = csrf_of(admin, "/admin/versions")
    assert admin.post(f"/admin/versions/{decision.id}/deploy", json=["nope"],
                      headers={"X-CSRFToken": token}).status_code == 400
    assert count_versions(example) == before


def test_editor_deploys_forms_and_processes(example, admin):
    form = version_of(example, "form", "submit_documents.json", 1)
    assert "<textarea" in admin.get(f"/admin/versions/{form.id}/edit").get_data(as_text=True)
    schema = json.loads(form.source)
    schema["title"] = "提交文件（修订）"
    outcomes = post_edit(admin, form.id, json.dumps(schema, ensure_ascii=False)).get_json()["outcomes"]
    assert {(o["key"], o["version"], o["status"]) for o in outcomes} == {
        ("submit_documents.json", 2, "created"), ("document_review", 2, "rebound")}
    process = version_of(example, "process", "document_review", 2)
    assert "bpmn-modeler.production.min.js" in admin.get(f"/admin/versions/{process.id}/edit").get_data(as_text=True)
    renamed = process.source.replace("Document review (文件审查)", "Document review (文件审查) 2026")
    outcomes = post_edit(admin, process.id, renamed).get_json()["outcomes"]
    assert [(o["key"], o["version"], o["status"]) for o in outcomes] == [("document_review", 3, "created")]


def test_version_pages_and_sources(example, admin):
    process = version_of(example, "process", "document_review", 1)
    decision = version_of(example, "decision", "review_level", 1)
    form = version_of(example, "form", "submit_documents.json", 1)
    page = admin.get(f"/admin/versions/{process.id}").get_data(as_text=True)
    assert "bpmn-navigated-viewer.production.min.js" in page
    data = json.loads(re.search(r'id="admin-data">(.*?)</script>', page, re.S).group(1))
    assert data["source"] == process.source and "<script" not in page.split('id="admin-data">')[1].split("</script>")[0]
    assert "dmn-viewer.production.min.js" in admin.get(f"/admin/versions/{decision.id}").get_data(as_text=True)
    assert '&#34;type&#34;: &#34;object&#34;' in admin.get(f"/admin/versions/{form.id}").get_data(as_text=True)
    source = admin.get(f"/admin/versions/{decision.id}/source")
    assert source.mimetype == "application/xml" and source.get_data(as_text=True) == decision.source
    assert source.headers["Content-Disposition"].startswith("attachment") and "review_level.dmn" in source.headers[
        "Content-Disposition"]
    assert admin.get(f"/admin/versions/{form.id}/source").mimetype == "application/json"
    assert admin.get("/admin/versions/99999").status_code == 404
    assert admin.get("/admin/versions/process/no_such_key").status_code == 404
    assert admin.get("/admin/versions/thing/document_review").status_code == 404


def test_posts_need_a_csrf_token(example, admin):
    decision = version_of(example, "decision", "review_level", 1)
    before = count_versions(example)
    data = {"files": [(io.BytesIO(CHEAPER.encode()), "review_level.dmn")]}
    response = admin.post("/admin/deploy", data=data, content_type="multipart/form-data")
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert admin.post(f"/admin/versions/{decision.id}/deploy", json={"xml": CHEAPER}).status_code == 400
    assert count_versions(example) == before


@pytest.mark.parametrize("role", ["staff", "tenderer", "agency", "bidder", "expert"])
def test_other_roles_are_refused(app, example, role):
    client = client_as(app, example, "someone", [role])
    decision = version_of(example, "decision", "review_level", 1)
    for path in ["/admin/deploy", "/admin/versions", f"/admin/versions/{decision.id}",
                 f"/admin/versions/{decision.id}/source", f"/admin/versions/{decision.id}/edit",
                 "/admin/versions/decision/review_level", "/admin/versions/decision/review_level/diff"]:
        assert client.get(path).status_code == 403, path
    assert post_edit(client, decision.id, CHEAPER, token=csrf_of(client, "/")).status_code == 403
    assert "/admin/versions" not in client.get("/").get_data(as_text=True)


def test_auditors_read_but_do_not_deploy(app, example):
    client = client_as(app, example, "audit1", ["auditor"])
    decision = version_of(example, "decision", "review_level", 1)
    for path in ["/admin/versions", f"/admin/versions/{decision.id}", f"/admin/versions/{decision.id}/source",
                 "/admin/versions/decision/review_level"]:
        assert client.get(path).status_code == 200, path
    listing = client.get("/admin/versions").get_data(as_text=True)
    assert "/edit" not in listing and 'href="/admin/deploy"' not in listing
    assert client.get("/admin/deploy").status_code == 403
    assert client.get(f"/admin/versions/{decision.id}/edit").status_code == 403
    assert post_edit(client, decision.id, CHEAPER).status_code == 403
    assert app.test_client().get("/admin/versions").status_code == 302


def test_pages_in_english(admin, example):
    admin.get("/lang/en")
    page = admin.get("/admin/versions").get_data(as_text=True)
    assert "Processes and rules" in page and "Unfinished instances (by version)" in page
    assert "Deploy processes, rules and forms" in admin.get("/admin/deploy").get_data(as_text=True)


def test_browser_edits_a_dmn_cell_and_deploys(page, example):
    make_user(example, "admin1", ["admin"])
    browser_login(page, "admin1", "pw-admin1-123")
    decision = version_of(example, "decision", "review_level", 1)
    page.goto(f"{page.base_url}/admin/versions/{decision.id}/edit")
    cell = page.locator("td[data-element-id='rule_simple_estimate']")
    cell.wait_for()
    shot(page, "admin-dmn-editor")
    cell.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("< Decimal('3000000')")
    page.click("#deploy-button")
    page.locator("#result tr.outcome").first.wait_for()
    assert "v2" in page.inner_text("#result")
    assert "Decimal('3000000')" in version_of(example, "decision", "review_level", 2).source
    assert version_of(example, "process", "document_review", 2)
    page.goto(page.base_url + "/admin/versions")
    shot(page, "admin-versions")
    assert page.js_errors == []


def test_browser_deploys_the_bpmn_modeler_export(page, example):
    make_user(example, "admin1", ["admin"])
    browser_login(page, "admin1", "pw-admin1-123")
    process = version_of(example, "process", "document_review", 1)
    page.goto(f"{page.base_url}/admin/versions/{process.id}/edit")
    page.locator("#canvas .djs-palette").wait_for()
    page.locator("[data-element-id='review_documents']").wait_for()
    shot(page, "admin-bpmn-modeler")
    page.click("#deploy-button")
    page.locator("#result tr.outcome").first.wait_for()
    assert "v2" in page.inner_text("#result")
    exported = version_of(example, "process", "document_review", 2).source
    assert "<spiffworkflow:calledDecisionId>review_level</spiffworkflow:calledDecisionId>" in exported
    assert exported != process.source
    assert page.js_errors == []
