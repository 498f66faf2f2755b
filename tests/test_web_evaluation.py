"""The 评标 pages: staff start and follow, experts review, score, and sign; everyone else is refused."""

from __future__ import annotations

import hashlib
import re

import pytest
from conftest import csrf_of, login
from evalkit import COMPREHENSIVE, NAMES, make_eval_world
from test_construction_tender import world  # noqa: F401 - the world fixture

from engine import audit, evaluation

REASON = "资质等级不满足招标文件要求XYZ"


@pytest.fixture
def ew(ctx, fixed_clock, world):  # noqa: F811
    return make_eval_world(ctx, fixed_clock, world, **COMPREHENSIVE)


def client_of(app, username: str):
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def post(client, url: str, data: dict, files: dict | None = None, page: str = "/evaluation"):
    data = {**data, "csrf_token": csrf_of(client, page), **(files or {})}
    return client.post(url, data=data, content_type="multipart/form-data" if files else None)


def qualification_form(ew, index: int) -> dict:
    form = {"action": "submit"}
    for bid_id in ew.bid_ids:
        for criterion in ("business_licence", "qualification", "project_manager", "credit"):
            form[f"q-{bid_id}-{criterion}"] = "pass"
    if index < 3:
        form[f"q-{ew.bid_ids[3]}-qualification"] = "fail"
        form[f"r-{ew.bid_ids[3]}-qualification"] = REASON
    return form


def test_staff_start_experts_evaluate_and_sign_and_outsiders_are_refused(app, ctx, ew):
    staff = client_of(app, "stf_web")
    page = staff.get("/evaluation").get_data(as_text=True)
    assert "LZ-2026-0001" in page and "开始评标" in page
    assert staff.post("/evaluation/start", data={"project_code": "LZ-2026-0001"}).status_code == 400  # no CSRF
    response = post(staff, "/evaluation/start", {"project_code": "LZ-2026-0001"})
    assert response.status_code == 302
    with ctx.sessions() as s:
        evaluation_id = evaluation.of_project(s, ew.project_id).id
    base = f"/evaluation/{evaluation_id}"
    assert response.headers["Location"].endswith(base + "/progress")

    experts = {name: client_of(app, name) for name in ew.members}
    first, *others = list(experts.values())
    page = first.get(base).get_data(as_text=True)
    assert all(name in page for name in NAMES) and "7,650,000.00" in page
    # A fail without a reason is refused with the reason, and nothing is kept.
    bad = {**qualification_form(ew, 0), f"r-{ew.bid_ids[3]}-qualification": ""}
    post(first, base + "/sheets/qualification", bad, page=base)
    assert "须说明理由" in first.get(base).get_data(as_text=True)
    with ctx.sessions() as s:
        assert evaluation.my_sheet(s, evaluation_id, ew.members[list(ew.members)[0]], "qualification") is None

    for index, client in enumerate(experts.values()):
        assert post(client, base + "/sheets/qualification", qualification_form(ew, index), page=base).status_code == 302
        if index == 0:
            # Another member sees neither the judgement nor its reason before everyone has submitted.
            assert REASON not in others[0].get(base).get_data(as_text=True)
            progress = staff.get(base + "/progress").get_data(as_text=True)
            assert "已提交" in progress and REASON not in progress
    page = first.get(base).get_data(as_text=True)
    assert "55.86" in page and "7,494,866.67" in page  # the computed price score and base price

    for index, client in enumerate(experts.values()):
        form = {"action": "submit"}
        for bid_id, (f2, f3) in zip(ew.bid_ids[:3], (("10" if index == 4 else "25", "9"), ("24", "8"),
                                                      ("26", "9.5")), strict=True):
            form[f"s-{bid_id}-f2"], form[f"s-{bid_id}-f3"] = f2, f3
        assert post(client, base + "/sheets/scoring", form, page=base).status_code == 302
    page = first.get(base).get_data(as_text=True)
    assert "87.09" in page and "偏离平均分" in page and "签署评标报告" in page and REASON in page
    sha = re.search(r'data-sha256="([0-9a-f]{64})"', page).group(1)
    report_json = first.get(base + "/report.json").get_data()
    assert hashlib.sha256(report_json).hexdigest() == sha

    names = list(ew.members)
    wrong = ew.sign(names[0], sha, key_of=names[1])
    post(first, base + "/sign", {}, {"signature_file": (_file(wrong), "report.sig")}, page=base)
    assert "bad signature" in first.get(base).get_data(as_text=True)
    for name, client in experts.items():
        signature = ew.sign(name, sha)
        upload = signature if name != names[1] else signature.hex().encode()  # hex text is accepted too
        assert post(client, base + "/sign", {"dissent": ""}, {"signature_file": (_file(upload), "report.sig")},
                    page=base).status_code == 302
    assert "您已于" in first.get(base).get_data(as_text=True)
    with ctx.sessions() as s:
        assert evaluation.get(s, evaluation_id).status == "complete"
        assert audit.verify(s).ok

    # Staff see progress only; the auditor sees the report; everyone off the committee is refused.
    progress = staff.get(base + "/progress").get_data(as_text=True)
    assert "已签署" in progress and "87.09" not in progress
    assert staff.get(base).status_code == 403 and staff.get(base + "/report.json").status_code == 403
    auditor = client_of(app, "aud")
    assert "87.09" in auditor.get(base + "/progress").get_data(as_text=True)
    assert auditor.get(base + "/report.json").get_data() == report_json
    outsider = client_of(app, "e_outside")
    assert outsider.get(base).status_code == 403 and outsider.get(base + "/progress").status_code == 403
    assert post(outsider, base + "/sheets/scoring", {"action": "submit"}).status_code == 403


def test_scores_are_hidden_until_every_member_submits_on_the_pages(app, ctx, ew):
    with ctx.sessions.begin() as s:
        evaluation_id = evaluation.start_evaluation(s, ew.project_id, ew.world.actors["stf"]).id
    base = f"/evaluation/{evaluation_id}"
    experts = [client_of(app, name) for name in ew.members]
    for index, client in enumerate(experts):
        post(client, base + "/sheets/qualification", qualification_form(ew, index), page=base)
    form = {"action": "submit", **{f"s-{b}-f2": "29.5" for b in ew.bid_ids[:3]},
            **{f"s-{b}-f3": "7.25" for b in ew.bid_ids[:3]}}
    post(experts[0], base + "/sheets/scoring", form, page=base)
    page = experts[1].get(base).get_data(as_text=True)
    assert "29.5" not in page and "7.25" not in page and "评委提交情况" in page
    assert experts[1].get(base + "/report.json").status_code == 403
    draft = {"action": "save", f"s-{ew.bid_ids[0]}-f2": "12"}
    post(experts[1], base + "/sheets/scoring", draft, page=base)
    assert 'value="12"' in experts[1].get(base).get_data(as_text=True)
    assert 'value="12"' not in experts[0].get(base).get_data(as_text=True)
    experts[1].get("/lang/en")
    page = experts[1].get(base).get_data(as_text=True)
    assert "Qualification review" in page and "Price score (computed)" in page and "Comprehensive evaluation" in page


def _file(data: bytes):
    from io import BytesIO

    return BytesIO(data)


def test_an_expert_scores_and_signs_the_report_in_the_browser(page, ctx, ew, tmp_path):
    from browser import browser_login, shot
    from test_evaluation import qualify, score_all

    with ctx.sessions.begin() as s:
        evaluation_id = evaluation.start_evaluation(s, ew.project_id, ew.world.actors["stf"]).id
    qualify(ctx, ew, evaluation_id)
    score_all(ctx, ew, evaluation_id, skip=4)
    name = list(ew.members)[4]
    key_file = tmp_path / "expert.key.pem"
    key_file.write_bytes(ew.keys[name])

    browser_login(page, name, "secret-" + name)
    page.goto(f"{page.base_url}/evaluation/{evaluation_id}")
    form = page.locator("form.evaluation-scoring")
    for bid_id, (f2, f3) in zip(ew.bid_ids[:3], (("10", "9"), ("24", "8"), ("26", "9.5")), strict=True):
        form.locator(f"input[name='s-{bid_id}-f2']").fill(f2)
        form.locator(f"input[name='s-{bid_id}-f3']").fill(f3)
    assert form.locator(f"tr[data-bid='{ew.bid_ids[0]}'] .score-total").inner_text() == "74.86"  # 10 + 9 + 55.86
    shot(page, "evaluation-scoring")
    form.locator("button[value=submit]").click()
    page.wait_for_selector("form.report-sign")
    sign = page.locator("form.report-sign")
    sign.locator("input.sign-key").set_input_files(str(key_file))
    shot(page, "evaluation-summary")
    sign.locator("button[type=submit]").click()
    page.wait_for_selector(".evaluation-signed")
    assert page.js_errors == []
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        signature = evaluation.signatures_of(s, evaluation.report_of(s, row))[-1]
        assert signature.expert_id == ew.members[name].user_id and row.status == "signing"


def test_a_draw_prepared_after_the_opening_always_avoids_the_rounds_bidders(app, ew):
    """Staff tick no company: the draw page still excludes every bidder of the latest opening (条例 §46)."""
    from engine import draw

    client = app.test_client()
    assert login(client, "stf_web", "secret-stf_web").status_code == 302
    response = client.post("/draws/new", data={
        "csrf_token": csrf_of(client, "/draws/new"), "project_id": ew.project_id,
        "evaluation_at": "2026-10-21T09:00", "nonce": "web-after-opening-01"})
    assert response.status_code == 302, response.get_data(as_text=True)
    draw_id = int(re.search(r"/draws/(\d+)$", response.headers["Location"]).group(1))
    with ew.run.ctx.sessions() as s:
        excluded = s.get(draw.Draw, draw_id).inputs["excluded_organisation_ids"]
    assert excluded == sorted(b.organisation_id for b in ew.run.market.bidders)


def test_staff_replace_a_member_on_the_progress_page_and_others_are_refused(app, ctx, ew):
    from engine import draw
    from engine.models import User

    with ctx.sessions.begin() as s:
        evaluation_id = evaluation.start_evaluation(s, ew.project_id, ew.world.actors["stf"]).id
    base = f"/evaluation/{evaluation_id}"
    gone = list(ew.members.values())[2]
    staff = client_of(app, "stf_web")
    page = staff.get(base + "/progress").get_data(as_text=True)
    assert "更换评委" in page and 'name="grounds"' in page and "第四十八条" in page
    form = {"expert_id": gone.user_id, "grounds": "health", "reason": "评标中突发疾病，送医"}
    assert staff.post(base + "/replace", data=form).status_code == 400  # no CSRF token
    expert = client_of(app, list(ew.members)[0])
    assert post(expert, base + "/replace", form, page=base).status_code == 403
    assert post(client_of(app, "aud"), base + "/replace", form, page=base + "/progress").status_code == 403
    response = post(staff, base + "/replace", {**form, "reason": ""}, page=base + "/progress")
    assert response.status_code == 302
    assert "须说明理由" in staff.get(base + "/progress").get_data(as_text=True)
    response = post(staff, base + "/replace", {**form, "expert_id": ew.outsider.user_id}, page=base + "/progress")
    assert "不是评标" in staff.get(response.headers["Location"]).get_data(as_text=True)
    with ctx.sessions() as s:
        assert gone.user_id in evaluation.get(s, evaluation_id).members  # nothing was changed so far
    assert post(staff, base + "/replace", form, page=base + "/progress").status_code == 302
    page = staff.get(base + "/progress").get_data(as_text=True)
    assert "更换评委记录" in page and "评标中突发疾病，送医" in page and "待确认的替补评委" in page
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        seat_id = row.replacements[0]["new_seat_id"]
    assert client_of(app, list(ew.members)[2]).get(base).status_code == 403  # no longer on the committee
    with ctx.sessions() as s:
        drawn = s.get(User, s.get(draw.DrawSeat, seat_id).expert_id).username
    newcomer = client_of(app, drawn)
    page = newcomer.get("/evaluation").get_data(as_text=True)
    assert "替补评委确认" in page and f'data-seat="{seat_id}"' in page
    assert newcomer.get(base).status_code == 403  # not on the committee before confirming
    assert post(expert, f"/evaluation/seats/{seat_id}", {"action": "accept"}).status_code == 403  # not theirs
    response = post(newcomer, f"/evaluation/seats/{seat_id}", {"action": "accept"})
    assert response.status_code == 302 and response.headers["Location"].endswith(base)
    page = newcomer.get(base).get_data(as_text=True)
    assert "evaluation-qualification" in page and "提交资格审查" in page
    assert "替补评委确认" not in newcomer.get("/evaluation").get_data(as_text=True)
    progress = staff.get(base + "/progress").get_data(as_text=True)
    assert "替补已确认" in progress and "待确认的替补评委" not in progress
    assert staff.get(f"/draws/{ew.draw_id}").status_code == 200  # the draw page shows the replaced seat
    assert client_of(app, "aud").get(f"/draws/{ew.draw_id}/replay").status_code == 200


def test_a_reopened_evaluation_shows_its_review_and_the_superseded_report(app, ctx, ew):
    from test_evaluation import qualify, reopen, score_all, sign_all

    with ctx.sessions.begin() as s:
        evaluation_id = evaluation.start_evaluation(s, ew.project_id, ew.world.actors["stf"]).id
    qualify(ctx, ew, evaluation_id)
    score_all(ctx, ew, evaluation_id)
    first_sha = sign_all(ctx, ew, evaluation_id)
    with ctx.sessions.begin() as s:
        reopen(s, ew, reason="第一中标候选人业绩造假XYZ")
    base = f"/evaluation/{evaluation_id}"
    expert = client_of(app, list(ew.members)[0])
    page = expert.get(base).get_data(as_text=True)
    assert "第 1 次复核" in page and "第一中标候选人业绩造假XYZ" in page and "已被取代" in page
    assert first_sha in page and "已按您在上次评审中的意见预填" in page and 'value="pass" checked' in page
    staff = client_of(app, "stf_web")
    page = staff.get(base + "/progress").get_data(as_text=True)
    assert "第 1 次复核" in page and "已被取代" in page and "尚未形成" in page and "87.09" not in page
    assert staff.get(base + "/report.json?review=0").status_code == 403
    auditor = client_of(app, "aud")
    old = auditor.get(base + "/report.json?review=0")
    assert old.status_code == 200 and hashlib.sha256(old.get_data()).hexdigest() == first_sha
    assert auditor.get(base + "/report.json?review=5").status_code == 404


def test_a_review_in_the_browser_staff_progress_and_the_expert_s_prefilled_sheet(page, ctx, ew):
    from browser import browser_login, shot
    from test_evaluation import qualify, reopen, score_all, sign_all

    with ctx.sessions.begin() as s:
        evaluation_id = evaluation.start_evaluation(s, ew.project_id, ew.world.actors["stf"]).id
    qualify(ctx, ew, evaluation_id)
    score_all(ctx, ew, evaluation_id)
    sign_all(ctx, ew, evaluation_id)
    with ctx.sessions.begin() as s:
        reopen(s, ew, reason="第一中标候选人业绩造假")
    base = f"{page.base_url}/evaluation/{evaluation_id}"
    browser_login(page, "stf_web", "secret-stf_web")
    page.goto(base + "/progress")
    text = page.locator("main").inner_text()
    assert "第 1 次复核" in text and "已被取代" in text and "更换评委" in text
    shot(page, "evaluation-review-progress")
    page.context.clear_cookies()
    name = list(ew.members)[0]
    browser_login(page, name, "secret-" + name)
    page.goto(base)
    assert "已按您在上次评审中的意见预填" in page.locator("main").inner_text()
    assert page.locator("form.evaluation-qualification input[value=pass]:checked").count() > 0
    shot(page, "evaluation-review-expert")
    assert page.js_errors == []
