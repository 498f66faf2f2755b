"""Demo complaints (投诉): one awaiting acceptance, one decided with its decision published.

``seed_demo_complaints`` runs on the current clock after the demo projects exist: a
bidder files two complaints against a running project; the supervising department
accepts, investigates and decides the second (dismissed, no pause), so the public
list of complaint decisions is not empty and the regulator's inbox holds the first.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from engine import clock, complaints, files, runtime
from engine.actors import load_actor
from engine.context import Context
from engine.models import InboxTask, Instance, Project

EVIDENCE = b"%PDF-1.7\n% demo complaint evidence\n"
STEPS = (
    ("accept_complaint", {"acceptance": "accept", "order_pause": False,
                          "acceptance_reason": "投诉人为投标人，投诉在法定期限内，材料齐全，予以受理。"}),
    ("investigate", {"investigation_findings": "调取了资格审查记录和评标委员会的评审意见，询问了招标代理机构。",
                     "excluded_working_days": 0, "next_step": "decide"}),
    ("decide_complaint", {"outcome": "dismissed", "measures": "",
                          "decision_text": "经查，资格审查标准与招标文件一致，评标委员会按规定的标准和方法评审，"
                                           "投诉事项缺乏事实依据，驳回投诉。"}),
)


def seed_demo_complaints(ctx: Context, *, complainant: str = "bidder", regulator: str = "regulator",
                         project_code: str | None = None) -> list[str]:
    """File the demo complaints against a running project (the first one, unless named); return their numbers."""
    with ctx.sessions.begin() as s:
        query = (select(Project).join(Instance, Instance.id == Project.instance_id)
                 .where(Instance.status.in_(runtime.ACTIVE)).order_by(Project.id))
        if project_code is not None:
            query = query.where(Project.code == project_code)
        project = s.execute(query.limit(1)).scalar_one_or_none()
        if project is None:
            return []
        actor = load_actor(s, complainant)
        stored = files.store(s, EVIDENCE, "现场记录.pdf", "application/pdf", actor, config=ctx.config)
        knew_on = (clock.local_now().date() - timedelta(days=2)).isoformat()
        base = {"project_code": project.code, "complainant_name": "孙涛（某建设集团）", "knew_on": knew_on,
                "complainant_contact": "孙涛 0936-8000000", "matter": "other",
                "evidence": [{"title": "现场记录", "file": files.value_of(stored)}]}
        waiting = complaints.file_complaint(s, actor, {
            **base, "facts": "招标代理机构工作人员在投标截止前向个别投标人透露其他投标人的名称。",
            "grounds": "《招标投标法》第二十二条：招标人不得向他人透露已获取招标文件的潜在投标人的名称、数量。",
            "claims": "调查处理，责令改正。"})
        decided = complaints.file_complaint(s, actor, {
            **base, "facts": "资格审查中以不合理条件排斥本公司。",
            "grounds": "《招标投标法实施条例》第三十二条。", "claims": "责令重新进行资格审查。"})
        numbers, decided_instance = [waiting.number, decided.number], decided.instance_id
    for element, data in STEPS:
        with ctx.sessions.begin() as s:
            task = s.execute(select(InboxTask).where(InboxTask.instance_id == decided_instance,
                                                     InboxTask.element_id == element)).scalar_one()
            runtime.complete_task(s, task.task_id, data, load_actor(s, regulator))
    return numbers
