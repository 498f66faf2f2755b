"""The task page: instructions, every form widget, per-field errors, completion, conflicts, uploads, groups."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from io import BytesIO
from urllib.parse import quote
from uuid import UUID

import pytest
from conftest import FIXTURES, csrf_of, deploy_paths, login
from helpers import actions, instance, only_task, open_tasks
from sqlalchemy import select

from engine import instructions, runtime
from engine.actors import SYSTEM, add_user
from engine.models import StoredFile

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32


@pytest.fixture
def ui(ctx, users):
    """Deploy the widget and sandbox test processes."""
    deploy_paths(ctx, FIXTURES / "forms_ui")
    return ctx


def start(ctx, key: str = "ui_widgets", data: dict | None = None) -> int:
    with ctx.sessions.begin() as s:
        return runtime.start_instance(s, key, {"project_name": "城区道路改造", **(data or {})}, SYSTEM).id


def task_data(ctx, instance_id: int, task_id: str) -> dict:
    with ctx.sessions() as s:
        return dict(runtime.load(s, instance_id).workflow.get_task_from_id(UUID(task_id)).data)


def valid_form(**overrides) -> dict:
    """Return a complete, valid posting of the widget form (a fresh upload each time)."""
    form = {
        "project_name": "城区道路改造", "project_code": "GZ-2026", "open_date": "2026-10-20",
        "deadline": "2026-10-19T17:30", "amount": "1200000.50", "summary": "道路、排水与照明。", "note": "",
        "section_count": "2", "bond_rate": "1.5", "procurement_method": "open", "qualification": "post",
        "regions": ["甘州区", "高台县"], "_group.sections": ["0"], "sections.0.name": "一标段",
        "sections.0.budget": "600000", "sections.0.lots": "2",
        "tender_file": (BytesIO(PDF), "招标文件.pdf", "application/pdf"),
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def post(client, url: str, form: dict):
    return client.post(url, data={**form, "csrf_token": csrf_of(client, "/")}, content_type="multipart/form-data")


def field_error(page: str, dom_id: str) -> str:
    found = re.search(rf'id="{dom_id}-error"[^>]*>([^<]*)<', page)
    return found.group(1) if found else ""


# Instructions (engine.instructions).

def test_instructions_render_markdown_over_the_data():
    rendered = instructions.render("### 标题\n\n项目：**{{ name }}**，共 {{ n }} 个标段", {"name": "道路", "n": 2})
    assert rendered.notice is None
    assert "<h3>标题</h3>" in rendered.html and "<strong>道路</strong>" in rendered.html and "共 2 个" in rendered.html


@pytest.mark.parametrize("value", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"])
def test_instructions_escape_html_in_data_and_in_markdown(value):
    rendered = instructions.render("{{ v }}\n\n<script>alert(2)</script>", {"v": value})
    assert "<script" not in rendered.html and "<img" not in rendered.html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in rendered.html


def test_instructions_show_data_as_text_not_markdown():
    rendered = instructions.render("{{ v }}", {"v": "**bold** [link](javascript:alert(1)) # h"})
    assert "<strong>" not in rendered.html and "<a " not in rendered.html
    assert "**bold** [link](javascript:alert(1)) # h" in rendered.html


@pytest.mark.parametrize("template", ["{{ ''.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
                                      "{{ cycler.__init__.__globals__ }}", "{{ items.append(1) }}"])
def test_instructions_sandbox_refuses_escapes(template):
    rendered = instructions.render(template, {"items": [1]})
    assert rendered.notice and "sandbox" in rendered.notice
    assert "&lt;class" not in rendered.html and "subprocess" not in rendered.html


@pytest.mark.parametrize("template", ["{{ 1 / 0 }}", "{% if %}", "{{ x.y.z }}x{{ 'a' + 1 }}"])
def test_broken_instructions_are_a_notice_with_the_raw_text(template):
    rendered = instructions.render(template, {})
    assert rendered.notice and "template failed" in rendered.notice
    assert rendered.html.startswith("<p>")


def test_missing_values_print_nothing():
    assert instructions.render("a{{ missing }}b", {}).html == "<p>ab</p>\n"


# The page.

def test_every_widget_is_rendered_from_the_schema(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    login(client, "zhang")
    response = client.get(f"/tasks/{task.task_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<h1>填写申报信息</h1>" in page and "表单控件测试 Form widgets" in page and "ui_widgets" in page
    assert f'href="/instances/{iid}"' in page
    assert 'enctype="multipart/form-data"' in page and 'name="csrf_token"' in page
    assert re.search(r'<label for="f-project_name">项目名称 <abbr class="required"', page)
    assert "与招标文件封面一致。" in page
    assert re.search(r'id="f-project_code" name="project_code" type="text"[^>]*pattern="\^\[A-Z\]\{2\}', page)
    assert re.search(r'id="f-open_date" name="open_date" type="date"', page)
    assert re.search(r'id="f-deadline" name="deadline" type="datetime-local"', page)
    assert re.search(r'id="f-amount" name="amount" type="text"[^>]*inputmode="decimal"', page)
    assert re.search(r'<textarea id="f-summary" name="summary"', page)
    assert re.search(r'<textarea id="f-note" name="note"', page)
    assert 'id="f-section_count" name="section_count" type="number" value="" required step="1" min="1" max="20"' in page
    assert re.search(r'id="f-bond_rate" name="bond_rate" type="number"[^>]*step="any"', page)
    assert re.search(r'<select id="f-procurement_method" name="procurement_method" required', page)
    assert '<option value="open" >公开招标</option>' in page
    assert re.search(r'type="radio" name="qualification" value="pre"', page) and "资格后审" in page
    assert re.search(r'id="f-joint_bid" name="joint_bid" type="checkbox"', page)
    assert re.search(r'type="checkbox" name="regions" value="临泽县"', page)
    assert re.search(r'id="f-tender_file" name="tender_file" type="file" accept="application/pdf"', page)
    assert "不超过 4.0 KB" in page
    assert re.search(r'<fieldset class="group" id="f-sections">', page)
    assert 'name="_group.sections" value="0"' in page and 'id="f-sections-0-name"' in page
    assert 'name="_add" value="sections"' in page
    assert "为必填项" in page


def test_instructions_on_the_page_are_safe(ui, client):
    iid = start(ui, data={"project_name": "<script>alert(1)</script>"})
    login(client, "zhang")
    page = client.get(f"/tasks/{only_task(ui, iid).task_id}").get_data(as_text=True)
    assert '<section class="instructions"' in page and "<h3>填写申报信息</h3>" in page
    assert "<strong>&lt;script&gt;alert(1)&lt;/script&gt;</strong>" in page
    assert "&lt;script&gt;alert(&quot;md&quot;)&lt;/script&gt;" in page
    assert "<script>alert" not in page


def test_sandbox_escape_in_a_diagram_is_a_notice_not_a_500(ui, client):
    iid = start(ui, "ui_sandbox")
    login(client, "li")
    response = client.get(f"/tasks/{only_task(ui, iid).task_id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "任务说明中的模板无法执行" in page and "sandbox" in page
    assert "&lt;class" not in page and "subprocess" not in page


def test_task_without_a_form_completes_with_the_button(ui, client):
    iid = start(ui, "ui_sandbox")
    task = only_task(ui, iid)
    login(client, "li")
    response = post(client, f"/tasks/{task.task_id}", {})
    assert response.status_code == 302
    assert instance(ui, iid).status == "completed"


def test_the_statutory_due_time_is_shown_and_highlighted(ui, client):
    iid = start(ui)
    with ui.sessions.begin() as s:
        runtime.complete_task(s, only_task(ui, iid).task_id, _engine_data(s), SYSTEM)
    review = only_task(ui, iid)
    login(client, "li")
    page = client.get(f"/tasks/{review.task_id}").get_data(as_text=True)
    assert re.search(r'<time datetime="2026-09-30T16:00:00\+00:00" class="due near">2026-09-30 24:00</time>', page)
    assert '<span class="badge near">即将到期</span>' in page
    assert "请审核 <strong>城区道路改造</strong> 的申报信息（2 个标段）" in page


def _engine_data(session) -> dict:
    """Return valid form data whose file was stored (the engine refuses forged file references)."""
    if session.get(StoredFile, "0" * 64) is None:
        session.add(StoredFile(sha256="0" * 64, size=1, media_type="application/pdf", original_name="a.pdf",
                               uploaded_by="system"))
        session.flush()
    return {"project_name": "城区道路改造", "project_code": "GZ-2026", "open_date": "2026-10-20",
            "deadline": "2026-10-19T17:30:00+08:00", "amount": "100", "section_count": 2,
            "procurement_method": "open", "qualification": "pre",
            "tender_file": {"sha256": "0" * 64, "name": "a.pdf", "size": 1, "media_type": "application/pdf"},
            "sections": [{"name": "一标段", "budget": "100"}]}


# Completing.

def test_completing_converts_types_moves_the_inbox_on_and_redirects(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    login(client, "zhang")
    response = post(client, f"/tasks/{task.task_id}", valid_form())
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == f"/instances/{iid}"
    with client.session_transaction() as session:
        assert session["_flashes"][0][1] == "已办理：填写申报信息"
    (review,) = open_tasks(ui, iid)
    assert (review.element_id, review.role) == ("review", "staff")
    data = task_data(ui, iid, review.task_id)
    assert data["section_count"] == 2 and data["bond_rate"] == 1.5 and data["joint_bid"] is False
    assert data["amount"] == Decimal("1200000.50")
    assert data["deadline"] == "2026-10-19T17:30:00+08:00" and data["open_date"] == "2026-10-20"
    assert data["regions"] == ["甘州区", "高台县"] and data["qualification"] == "post"
    assert data["sections"] == [{"name": "一标段", "budget": Decimal("600000"), "lots": 2}]
    assert "note" not in data and "joint_lead" not in data
    sha = hashlib.sha256(PDF).hexdigest()
    assert data["tender_file"] == {"sha256": sha, "name": "招标文件.pdf", "size": len(PDF),
                                   "media_type": "application/pdf"}
    assert actions(ui, iid)[-1] == "task.complete"


def test_completing_redirects_to_the_inbox_when_more_work_waits(ui, client):
    first, _second = start(ui), start(ui)
    login(client, "zhang")
    response = post(client, f"/tasks/{only_task(ui, first).task_id}", valid_form())
    assert response.headers["Location"] == "/inbox"


def test_per_field_errors_keep_the_input_and_change_nothing(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    login(client, "zhang")
    form = valid_form(project_name="", project_code="gz-1", section_count="两个", amount="1.234", deadline="明天",
                      **{"sections.0.budget": "", "sections.0.name": "一标段（保留）"})
    response = post(client, f"/tasks/{task.task_id}", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "表单有误" in page
    assert field_error(page, "f-project_name") == "此项为必填项"
    assert field_error(page, "f-project_code") == "格式不正确"
    assert field_error(page, "f-section_count") == "请输入整数"
    assert field_error(page, "f-amount") == "格式不正确"
    assert field_error(page, "f-deadline") == "请输入日期和时间"
    assert field_error(page, "f-sections-0-budget") == "此项为必填项"
    assert re.search(r'id="f-project_code"[^>]*value="gz-1"', page)
    assert re.search(r'id="f-section_count"[^>]*value="两个"', page)
    assert re.search(r'id="f-sections-0-name"[^>]*value="一标段（保留）"', page)
    assert re.search(r'id="f-project_code"[^>]*aria-describedby="f-project_code-help f-project_code-error" '
                     r'aria-invalid="true"', page)
    assert 'value="甘州区"\n          checked' in page or re.search(r'value="甘州区"\s+checked', page)
    assert only_task(ui, iid).task_id == task.task_id
    assert actions(ui, iid) == ["instance.start"]


def test_engine_validation_errors_are_per_field(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    login(client, "zhang")
    response = post(client, f"/tasks/{task.task_id}", valid_form(section_count="99", bond_rate="5"))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_error(page, "f-section_count") == "不能大于 20"
    assert field_error(page, "f-bond_rate") == "不能大于 2"
    assert re.search(r'id="f-section_count"[^>]*value="99"', page)


def test_if_then_rules_are_enforced(ui, client):
    iid = start(ui)
    login(client, "zhang")
    response = post(client, f"/tasks/{only_task(ui, iid).task_id}", valid_form(joint_bid="true"))
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "f-joint_lead") == "此项为必填项"
    assert post(client, f"/tasks/{only_task(ui, iid).task_id}",
                valid_form(joint_bid="true", joint_lead="须具备市政一级资质")).status_code == 302
    review = only_task(ui, iid)
    login(client, "li")
    response = post(client, f"/tasks/{review.task_id}", {"decision": "return", "comments": ""})
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "f-comments") == "此项为必填项"
    assert post(client, f"/tasks/{review.task_id}", {"decision": "return", "comments": "补充资质"}).status_code == 302
    assert instance(ui, iid).status == "completed"


def test_someone_else_completing_first_is_a_409_naming_them(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    with ui.sessions.begin() as s:
        add_user(s, "sun", ["tenderer"], password="secret-sun", display_name="孙经理")
    login(client, "zhang")
    token = csrf_of(client, f"/tasks/{task.task_id}")
    other = client.application.test_client()
    login(other, "sun")
    assert post(other, f"/tasks/{task.task_id}", valid_form()).status_code == 302
    response = client.post(f"/tasks/{task.task_id}", data={**valid_form(), "csrf_token": token},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "该任务已由 孙经理（sun） 于 2026-09-29 09:00 办理完毕" in page
    assert client.get(f"/tasks/{task.task_id}").status_code == 409


def test_wrong_role_or_scope_is_refused_even_to_view(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    login(client, "li")
    assert client.get(f"/tasks/{task.task_id}").status_code == 403
    assert post(client, f"/tasks/{task.task_id}", valid_form()).status_code == 403
    bidder = client.application.test_client()
    login(bidder, "chen")
    assert bidder.get(f"/tasks/{task.task_id}").status_code == 403
    assert only_task(ui, iid).task_id == task.task_id


def test_unknown_task_is_404_and_anonymous_goes_to_login(ui, client):
    assert "/login" in client.get("/tasks/00000000-0000-0000-0000-000000000000").headers["Location"]
    login(client, "zhang")
    assert client.get("/tasks/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/tasks/not-a-uuid").status_code == 404


def test_csrf_token_is_required(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    login(client, "zhang")
    response = client.post(f"/tasks/{task.task_id}", data=valid_form(), content_type="multipart/form-data")
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert only_task(ui, iid).task_id == task.task_id


# Uploads.

def test_upload_is_stored_by_sha256_and_downloadable(ui, client):
    iid = start(ui)
    login(client, "zhang")
    assert post(client, f"/tasks/{only_task(ui, iid).task_id}", valid_form()).status_code == 302
    sha = hashlib.sha256(PDF).hexdigest()
    path = ui.config.files_dir / sha[:2] / sha[2:4] / sha
    assert path.read_bytes() == PDF
    with ui.sessions() as s:
        row = s.get(StoredFile, sha)
        assert (row.size, row.media_type, row.original_name, row.uploaded_by) == (
            len(PDF), "application/pdf", "招标文件.pdf", "zhang")
    assert "file.store" in _all_actions(ui)
    with client.get(f"/files/{sha}") as response:
        assert response.status_code == 200 and response.data == PDF
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("attachment;") and "filename*=UTF-8''" + quote("招标文件.pdf") in disposition
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Type"] == "application/pdf"
    staff = client.application.test_client()
    login(staff, "li")
    with staff.get(f"/files/{sha}") as response:
        assert response.status_code == 200
    bidder = client.application.test_client()
    login(bidder, "chen")
    assert bidder.get(f"/files/{sha}").status_code == 403
    assert staff.get("/files/" + "f" * 64).status_code == 404
    assert staff.get("/files/../../etc/passwd").status_code == 404


def _all_actions(ctx) -> list[str]:
    from engine.models import AuditEvent

    with ctx.sessions() as s:
        return list(s.execute(select(AuditEvent.action)).scalars())


@pytest.mark.parametrize(("field", "upload", "message"), [
    ("tender_file", (PDF + b"%" * 5000, "big.pdf", "application/pdf"), "文件过大：5.0 KB，上限为 4.0 KB"),
    ("tender_file", (PNG, "scan.png", "image/png"), "不接受此类文件（image/png）；可上传：application/pdf"),
    ("attachment", (PNG, "report.pdf", "application/pdf"), "文件内容（image/png）与其扩展名或声明的类型"),
    ("attachment", (b"MZ\x90\x00\x03" + b"\x00" * 60, "tool.exe", "application/octet-stream"), "不接受此类文件"),
    ("attachment", (b"", "empty.txt", "text/plain"), "文件为空"),
])
def test_uploads_are_checked_by_size_and_sniffed_type(ui, client, field, upload, message):
    iid = start(ui)
    login(client, "zhang")
    data, name, media_type = upload
    response = post(client, f"/tasks/{only_task(ui, iid).task_id}",
                    valid_form(**{field: (BytesIO(data), name, media_type)}))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in field_error(page, f"f-{field}")
    with ui.sessions() as s:
        assert s.get(StoredFile, hashlib.sha256(data).hexdigest()) is None


def test_an_upload_is_kept_when_the_form_goes_back(ui, client):
    iid = start(ui)
    task = only_task(ui, iid)
    login(client, "zhang")
    response = post(client, f"/tasks/{task.task_id}", valid_form(project_code="bad"))
    page = response.get_data(as_text=True)
    sha = hashlib.sha256(PDF).hexdigest()
    assert response.status_code == 400
    assert f'name="_kept.tender_file" value="{sha}:招标文件.pdf"' in page
    assert f'<a href="/files/{sha}">招标文件.pdf</a>' in page
    assert re.search(r'id="f-tender_file" name="tender_file" type="file" accept="application/pdf"\s+>', page)
    form = valid_form(tender_file=None, **{"_kept.tender_file": f"{sha}:招标文件.pdf"})
    assert post(client, f"/tasks/{task.task_id}", form).status_code == 302
    assert task_data(ui, iid, only_task(ui, iid).task_id)["tender_file"]["sha256"] == sha


def test_a_kept_file_must_be_the_users_own(ui, client):
    with ui.sessions.begin() as s:
        s.add(StoredFile(sha256="a" * 64, size=3, media_type="application/pdf", original_name="x.pdf",
                         uploaded_by="someone"))
    iid = start(ui)
    login(client, "zhang")
    response = post(client, f"/tasks/{only_task(ui, iid).task_id}",
                    valid_form(tender_file=None, **{"_kept.tender_file": "a" * 64 + ":x.pdf"}))
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "f-tender_file") == "此项为必填项"


# Repeatable groups, without JavaScript.

def test_groups_are_added_and_removed_on_the_server(ui, client):
    iid = start(ui)
    url = f"/tasks/{only_task(ui, iid).task_id}"
    login(client, "zhang")
    response = post(client, url, valid_form(_add="sections"))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r'id="f-sections-0-name"[^>]*value="一标段"', page)
    assert 'id="f-sections-1-name"' in page and "第 2 项" in page
    assert 'name="_remove" value="sections/1"' in page
    def three(**extra):
        return valid_form(**{"_group.sections": ["0", "1", "2"], "sections.1.name": "二标段", "sections.1.budget": "1",
                             "sections.2.name": "三标段", "sections.2.budget": "2"}, **extra)

    page = post(client, url, three(_remove="sections/0")).get_data(as_text=True)
    assert re.search(r'id="f-sections-0-name"[^>]*value="二标段"', page)
    assert re.search(r'id="f-sections-1-name"[^>]*value="三标段"', page)
    assert 'id="f-sections-2-name"' not in page
    page = post(client, url, three(_add="sections")).get_data(as_text=True)
    assert 'id="f-sections-2-name"' in page and 'id="f-sections-3-name"' not in page  # maxItems is 3
    assert 'name="_add" value="sections"' not in page
    response = post(client, url, three())
    assert response.status_code == 302
    data = task_data(ui, iid, only_task(ui, iid).task_id)
    assert [s["name"] for s in data["sections"]] == ["一标段", "二标段", "三标段"]


def test_group_errors_sit_next_to_the_field_and_limits_are_enforced(ui, client):
    iid = start(ui)
    url = f"/tasks/{only_task(ui, iid).task_id}"
    login(client, "zhang")
    form = valid_form(**{"_group.sections": ["0", "5"], "sections.5.name": "二标段", "sections.5.budget": "x",
                         "sections.5.lots": "0"})
    page = post(client, url, form).get_data(as_text=True)
    assert field_error(page, "f-sections-1-budget") == "格式不正确"
    assert field_error(page, "f-sections-1-lots") == "不能小于 1"
    page = post(client, url, valid_form(**{"_group.sections": None})).get_data(as_text=True)
    assert field_error(page, "f-sections") == "至少需要 1 项"


# The shipped example, in both languages.

def test_the_example_process_round_trip_prefills_a_returned_form(example, users, client):
    with example.sessions.begin() as s:
        iid = runtime.start_instance(s, "document_review", {}, SYSTEM).id
    login(client, "zhang")
    url = f"/tasks/{only_task(example, iid).task_id}"
    page = client.get(url).get_data(as_text=True)
    assert "<h3>提交文件</h3>" in page and "5 个工作日" in page
    form = {"project_name": "张掖市甘州区道路改造工程", "page_count": "120", "estimate": "4500000.10", "summary": ""}
    assert post(client, url, form).status_code == 302
    review = only_task(example, iid)
    staff = client.application.test_client()
    login(staff, "li")
    page = staff.get(f"/tasks/{review.task_id}").get_data(as_text=True)
    assert re.search(r'class="due[^"]*">2026-10-12 24:00</time>', page)
    response = post(staff, f"/tasks/{review.task_id}", {"decision": "return"})
    assert field_error(response.get_data(as_text=True), "f-comments") == "此项为必填项"
    assert post(staff, f"/tasks/{review.task_id}", {"decision": "return", "comments": "请补充页码"}).status_code == 302
    page = client.get(f"/tasks/{only_task(example, iid).task_id}").get_data(as_text=True)
    assert re.search(r'id="f-project_name"[^>]*value="张掖市甘州区道路改造工程"', page)
    assert re.search(r'id="f-page_count"[^>]*value="120"', page)
    assert re.search(r'id="f-estimate"[^>]*value="4500000.10"', page)


def test_the_page_and_its_messages_in_english(ui, client):
    iid = start(ui)
    login(client, "zhang")
    client.get("/lang/en")
    response = post(client, f"/tasks/{only_task(ui, iid).task_id}", valid_form(project_name="", section_count="x"))
    page = response.get_data(as_text=True)
    assert "Statutory deadline" in page and ">Submit</button>" in page
    assert field_error(page, "f-project_name") == "This field is required"
    assert field_error(page, "f-section_count") == "Enter a whole number"
    assert "项目名称" in page  # labels come from the schema


def test_lists_of_lines_and_nested_objects(ui, client):
    iid = start(ui)
    url = f"/tasks/{only_task(ui, iid).task_id}"
    login(client, "zhang")
    page = client.get(url).get_data(as_text=True)
    assert re.search(r'<textarea id="f-lot_numbers" name="lot_numbers" rows="4"', page) and "每行一项" in page
    assert re.search(r'<fieldset class="object" id="f-contact">\s*<legend>联系人</legend>', page)
    assert 'id="f-contact-name" name="contact.name"' in page
    response = post(client, url, valid_form(lot_numbers="1\r\n\r\n2\r\nx", **{"contact.phone": "123"}))
    page = response.get_data(as_text=True)
    assert field_error(page, "f-lot_numbers") == "第 3 行：请输入整数"
    response = post(client, url, valid_form(lot_numbers="1\n0", **{"contact.phone": "123"}))
    page = response.get_data(as_text=True)
    assert field_error(page, "f-lot_numbers") == "不能小于 1"
    assert field_error(page, "f-contact-name") == "此项为必填项"
    assert field_error(page, "f-contact-phone") == "格式不正确"
    assert re.search(r'id="f-lot_numbers"[^>]*>1\n0</textarea>', page)
    response = post(client, url, valid_form(lot_numbers="3\n5", **{"contact.name": "王工", "contact.phone": ""}))
    assert response.status_code == 302
    data = task_data(ui, iid, only_task(ui, iid).task_id)
    assert data["lot_numbers"] == [3, 5] and data["contact"] == {"name": "王工"}


def test_huge_numbers_are_refused_before_conversion(ui, client):
    iid = start(ui)
    login(client, "zhang")
    response = post(client, f"/tasks/{only_task(ui, iid).task_id}", valid_form(section_count="1e999999999"))
    assert field_error(response.get_data(as_text=True), "f-section_count") == "数值超出范围"
