"""Complaints (投诉, R17) to a project's supervising department, each its own ``complaint`` process instance.

A bidder or another interested party (投标人或者其他利害关系人) files a complaint
against a project with ``file_complaint``. Before anything is stored the filing
is checked against 《招标投标法实施条例》 §60: within 10 days after the
complainant knew or should have known (calendar days on the official calendar,
民法典 §201–§203), and — for the tender documents, the opening or the evaluation
result (§22, §44, §54) — only after an objection to the tenderer, whose answer
period does not count. The ``complaint`` instance is linked to the project
(``Instance.project_id``) and scoped to its centre and supervising department,
so only that department's regulators see and act on it.

The diagram calls three service tasks defined here: ``complaint_record`` (the
row's status as the regulator decides), ``complaint_pause_project`` and
``complaint_resume_project`` (suspend / resume the project's own instance as
the regulator, with the complaint as the reason, §62). The decision is
published with ``publish_notice`` (kind ``complaint_decision``).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, String, Text, false, func, or_, select, true
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, clock, periods, runtime
from engine.actors import SYSTEM, Actor, load_actor
from engine.db import Base, UTCDateTime
from engine.errors import FormValidationError, InvalidState, NotFound, PermissionDenied
from engine.models import DefinitionVersion, Instance, Project, StoredFile
from engine.services import ServiceCall, service

PROCESS = "complaint"
FILING_FORM = "cp_complaint.json"
FORM_FILE = Path(__file__).resolve().parent.parent / "forms" / FILING_FORM
FILING_DAYS = 10  # 条例 §60 ¶1
ANSWER_DAYS = 3  # 条例 §22, §54: the tenderer answers an objection within 3 days
LAW = "《招标投标法实施条例》"
# Matters that need an objection to the tenderer first (条例 §60 ¶2), with the article that sets the objection.
PRIOR_OBJECTION = {"prequalification_documents": "第二十二条", "tender_documents": "第二十二条",
                   "opening": "第四十四条", "evaluation_result": "第五十四条"}
MATTERS = {"prequalification_documents": "资格预审文件", "tender_documents": "招标文件", "opening": "开标",
           "evaluation_result": "评标结果", "other": "其他违法违规行为"}
COMPLAINANT_ROLES = ("bidder", "tenderer", "agency")
STATUSES = ("filed", "accepted", "refused", "decided", "withdrawn")
OPEN = ("filed", "accepted")


class Complaint(Base):
    """A complaint (投诉) against a project, handled by the project's supervising department."""

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(60), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    centre_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    complainant_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    complainant_org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    complainant_name: Mapped[str] = mapped_column(String(200))
    matter: Mapped[str] = mapped_column(String(32))
    knew_on: Mapped[date] = mapped_column(Date)
    filing_deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    objection_reference: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(16))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id"))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    filed_by: Mapped[str] = mapped_column(String(64))
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sequence: Mapped[int] = mapped_column(Integer, default=1)


def filing_schema(session: Session) -> dict[str, Any]:
    """Return the filing form: its latest deployed version, else the shipped file."""
    source = session.execute(
        select(DefinitionVersion.source)
        .where(DefinitionVersion.kind == "form", DefinitionVersion.key == FILING_FORM,
               DefinitionVersion.active.is_(True))
        .order_by(DefinitionVersion.version.desc()).limit(1)).scalar()
    return json.loads(source if source is not None else FORM_FILE.read_text(encoding="utf-8"))


def filing_deadline(knew_on: date, matter: str, raised_on: date | None = None,
                    answered_on: date | None = None) -> datetime:
    """Return the end of the filing period: 10 days after knowing, plus an objection's answer period (§60)."""
    excluded = 0
    if matter in PRIOR_OBJECTION and raised_on is not None:
        answered = answered_on or raised_on + timedelta(days=ANSWER_DAYS)
        excluded = max((answered - max(raised_on, knew_on)).days, 0)
    start = datetime.combine(knew_on, time(12), clock.SHANGHAI)
    return periods.to_datetime(periods.add_days(start, FILING_DAYS + excluded))


def file_complaint(session: Session, actor: Actor, data: dict[str, Any]) -> Complaint:
    """File a complaint against the project named by ``data['project_code']`` and start its process.

    Refuses (FormValidationError, keyed by field, nothing stored) a late filing (§60 ¶1), a complaint about
    §22/§44/§54 matters without a prior objection (§60 ¶2), and evidence files that were never uploaded.
    """
    errors = _schema_errors(filing_schema(session), data)
    if not (actor.username == SYSTEM.username or any(actor.has_role(r) for r in COMPLAINANT_ROLES)):
        raise PermissionDenied(f"{actor.username} 不是投标人或者其他利害关系人，不能投诉（{LAW}第六十条）")
    project = None
    if "project_code" not in errors:
        project = session.execute(select(Project).where(Project.code == data["project_code"])
                                  .with_for_update()).scalar_one_or_none()
        if project is None:
            errors["project_code"] = [f"没有交易编码为 {data['project_code']} 的项目"]
    if project is not None:
        _check_party(actor, project)
    dates = {key: _date(data.get(key)) for key in ("knew_on", "objection_raised_on", "objection_answered_on")}
    deadline = _check_period(data, dates, errors)
    _check_evidence(session, data.get("evidence") or [], errors)
    if errors or project is None or deadline is None:
        raise FormValidationError("投诉不能受理 (the complaint is refused): " + ", ".join(sorted(errors)), errors)
    return _create(session, actor, project, data, dates, deadline)


def _check_period(data: dict[str, Any], dates: dict[str, date | None],
                  errors: dict[str, list[str]]) -> datetime | None:
    knew_on, raised_on, answered_on = dates["knew_on"], dates["objection_raised_on"], dates["objection_answered_on"]
    matter = data.get("matter")
    if knew_on is None or "matter" in errors:
        return None
    today = clock.local_now().date()
    if knew_on > today:
        errors.setdefault("knew_on", []).append("知道或者应当知道之日不能晚于今天")
        return None
    if matter in PRIOR_OBJECTION:
        if not str(data.get("objection_reference") or "").strip() or raised_on is None:
            errors.setdefault("objection_reference", []).append(
                f"就{MATTERS[matter]}投诉的，应当先向招标人提出异议（{LAW}第六十条第二款、{PRIOR_OBJECTION[matter]}）；"
                "请填写异议编号或说明和提出异议之日")
            return None
        if raised_on > today or (answered_on is not None and not raised_on <= answered_on <= today):
            errors.setdefault("objection_answered_on", []).append("异议的提出和答复日期须不晚于今天，且答复不早于提出")
            return None
    deadline = filing_deadline(knew_on, matter, raised_on, answered_on)
    if clock.now() >= deadline:
        last = periods.last_day(deadline).isoformat()
        extra = "（异议答复期间不计算在内）" if matter in PRIOR_OBJECTION else ""
        errors.setdefault("knew_on", []).append(
            f"投诉已超过期限：应当自知道或者应当知道之日（{knew_on.isoformat()}）起 10 日内{extra}提出，"
            f"即最迟 {last} 24:00（{LAW}第六十条）")
        return None
    return deadline


def _check_party(actor: Actor, project: Project) -> None:
    """Bidders may complain about any project; tenderers and agencies only about their own."""
    if actor.username == SYSTEM.username or actor.has_role("bidder"):
        return
    org = actor.organisation_id
    if org is not None and org in (project.tenderer_id, project.agency_id):
        return
    raise PermissionDenied(f"{actor.username} 不是项目 {project.code} 的投标人或者其他利害关系人（{LAW}第六十条）",
                           project=project.id)


def _check_evidence(session: Session, evidence: list[Any], errors: dict[str, list[str]]) -> None:
    for index, item in enumerate(evidence):
        value = item.get("file") if isinstance(item, dict) else None
        sha = value.get("sha256") if isinstance(value, dict) else None
        row = session.get(StoredFile, sha) if isinstance(sha, str) else None
        if isinstance(sha, str) and (row is None or row.size != value.get("size")):
            errors.setdefault(f"evidence/{index}/file", []).append(f"文件 {sha[:12]}… 未上传")


def _create(session: Session, actor: Actor, project: Project, data: dict[str, Any], dates: dict[str, date | None],
            deadline: datetime) -> Complaint:
    sequence = (session.execute(select(func.max(Complaint.sequence)).where(Complaint.project_id == project.id))
                .scalar() or 0) + 1
    now = clock.now()
    complaint = Complaint(
        number=f"{project.code}-TS{sequence:02d}", sequence=sequence, project_id=project.id,
        centre_id=project.centre_id, department_id=project.department_id, complainant_user_id=actor.user_id,
        complainant_org_id=actor.organisation_id, complainant_name=data["complainant_name"].strip(),
        matter=data["matter"], knew_on=dates["knew_on"], filing_deadline=deadline,
        objection_reference=(data.get("objection_reference") or "").strip() or None, status="filed",
        details={k: v for k, v in data.items() if k != "project_code"}, filed_by=actor.username, filed_at=now)
    session.add(complaint)
    session.flush()
    audit.append(session, actor=actor.username, action="complaint.file", project_id=project.id,
                 payload={"complaint_id": complaint.id, "number": complaint.number, "matter": complaint.matter,
                          "knew_on": complaint.knew_on.isoformat(), "filing_deadline": deadline.isoformat(),
                          "evidence": [e["file"]["sha256"] for e in data.get("evidence") or []]})
    start = {**{k: v for k, v in data.items() if k not in ("project_code",)},
             "complaint_id": complaint.id, "complaint_number": complaint.number, "project_id": project.id,
             "project_code": project.code, "project_name": project.name, "matter_label": MATTERS[complaint.matter],
             "objection_reference": complaint.objection_reference or "",
             "objection_raised_on": data.get("objection_raised_on", ""),
             "objection_answered_on": data.get("objection_answered_on", ""),
             "filing_deadline": deadline.astimezone(clock.SHANGHAI).isoformat(),
             "filed_at": now.astimezone(clock.SHANGHAI).isoformat()}
    instance = runtime.start_instance(
        session, PROCESS, start, actor, centre_id=project.centre_id, department_id=project.department_id,
        project_id=project.id, tenderer_id=project.tenderer_id, agency_id=project.agency_id,
        category=project.category, title=f"投诉 {complaint.number}：{project.name}")
    complaint.instance_id = instance.id
    session.flush()
    return complaint


def withdraw_complaint(session: Session, complaint_id: int, actor: Actor, reason: str) -> Complaint:
    """Withdraw an open complaint as its complainant: its process ends and a pause it ordered is lifted."""
    complaint = _locked(session, complaint_id)
    if not is_complainant(actor, complaint):
        raise PermissionDenied(f"只有投诉人可以撤回投诉 {complaint.number}", complaint=complaint_id)
    if not (reason or "").strip():
        raise InvalidState("撤回投诉须说明理由 (a reason is required)", complaint=complaint_id)
    if complaint.status not in OPEN:
        raise InvalidState(f"投诉 {complaint.number} 已{_STATUS_TEXT[complaint.status]}，不能撤回",
                           complaint=complaint_id)
    text = f"投诉人撤回投诉 {complaint.number}：{reason.strip()}"
    instance = session.get(Instance, complaint.instance_id) if complaint.instance_id else None
    if instance is not None and instance.status in (*runtime.ACTIVE, "suspended", "error"):
        runtime.terminate(session, instance.id, text, SYSTEM)
    _resume(session, complaint, text, SYSTEM)
    _set_status(session, complaint, "withdrawn", actor.username, reason.strip())
    return complaint


_STATUS_TEXT = {"filed": "提交", "accepted": "受理", "refused": "不予受理", "decided": "作出处理决定",
                "withdrawn": "撤回"}


def _set_status(session: Session, complaint: Complaint, status: str, actor: str, reason: str,
                **changes: Any) -> None:
    previous = complaint.status
    complaint.status, complaint.status_reason = status, reason
    for key, value in changes.items():
        setattr(complaint, key, value)
    if status in ("refused", "decided", "withdrawn"):
        complaint.closed_at = clock.now()
    session.flush()
    audit.append(session, actor=actor, action=f"complaint.{status}", instance_id=complaint.instance_id,
                 project_id=complaint.project_id,
                 payload={"complaint_id": complaint.id, "number": complaint.number, "from": previous,
                          "reason": reason, **{k: v for k, v in changes.items() if k != "accepted_at"}})


def _locked(session: Session, complaint_id: int) -> Complaint:
    complaint = session.execute(select(Complaint).where(Complaint.id == complaint_id).with_for_update()
                                .execution_options(populate_existing=True)).scalar_one_or_none()
    if complaint is None:
        raise NotFound(f"没有投诉 {complaint_id}", complaint=complaint_id)
    return complaint


def _resume(session: Session, complaint: Complaint, reason: str, actor: Actor) -> bool:
    """Resume the project's instance if this complaint paused it and it is still suspended."""
    if not complaint.paused:
        return False
    complaint.paused = False
    project = session.get(Project, complaint.project_id)
    instance = session.get(Instance, project.instance_id) if project.instance_id else None
    resumed = instance is not None and instance.status == "suspended"
    if resumed:
        runtime.resume(session, instance.id, reason[:2000], actor)
    session.flush()
    return resumed


@service("complaint_record")
def record(call: ServiceCall, status: str, reason: str = "", outcome: str | None = None,
           notice_id: int | None = None) -> dict[str, Any]:
    """Service task: record the regulator's acceptance, refusal or decision on the complaint row (audited)."""
    if status not in ("accepted", "refused", "decided"):
        raise InvalidState(f"a complaint cannot be recorded as {status!r}")
    complaint = _complaint_of(call)
    changes: dict[str, Any] = {}
    if status == "accepted":
        changes["accepted_at"] = clock.now()
    if status == "decided":
        changes.update(outcome=outcome, notice_id=notice_id)
    _set_status(call.session, complaint, status, call.actor, str(reason or "")[:4000], **changes)
    return {"status": status, "at": clock.now().astimezone(clock.SHANGHAI).isoformat()}


@service("complaint_pause_project")
def pause_project(call: ServiceCall, reason: str = "") -> dict[str, Any]:
    """Service task: suspend the project's instance as the regulator who ordered it (条例 §62)."""
    complaint = _complaint_of(call)
    project = call.session.get(Project, complaint.project_id)
    instance = call.session.get(Instance, project.instance_id) if project.instance_id else None
    at = clock.now().astimezone(clock.SHANGHAI).isoformat()
    if complaint.paused:
        return {"paused": True, "at": at, "note": "已暂停"}
    if instance is None or instance.status not in runtime.ACTIVE:
        note = f"项目流程{'不存在' if instance is None else '状态为 ' + instance.status}，无需暂停"
        audit.append(call.session, actor=call.actor, action="complaint.pause_skipped", instance_id=call.instance_id,
                     project_id=complaint.project_id, payload={"complaint_id": complaint.id, "note": note})
        return {"paused": False, "at": at, "note": note}
    text = f"投诉 {complaint.number}：行政监督部门责令暂停招标投标活动（{LAW}第六十二条）：{reason}"
    runtime.suspend(call.session, instance.id, text[:2000], _regulator(call))
    complaint.paused = True
    call.session.flush()
    return {"paused": True, "at": at, "instance_id": instance.id}


@service("complaint_resume_project")
def resume_project(call: ServiceCall, reason: str = "") -> dict[str, Any]:
    """Service task: resume the project's instance if this complaint paused it."""
    complaint = _complaint_of(call)
    text = f"投诉 {complaint.number} 已作出处理决定，恢复招标投标活动：{reason}"
    return {"resumed": _resume(call.session, complaint, text, _regulator(call))}


def _complaint_of(call: ServiceCall) -> Complaint:
    """Return the complaint this instance was started for; refuse an instance started any other way."""
    complaint_id = call.data.get("complaint_id")
    complaint = _locked(call.session, complaint_id) if isinstance(complaint_id, int) else None
    if complaint is None or complaint.instance_id != call.instance_id:
        raise InvalidState(f"instance {call.instance_id} was not started by filing a complaint "
                           "(engine.complaints.file_complaint)", instance=call.instance_id)
    return complaint


def _regulator(call: ServiceCall) -> Actor:
    return load_actor(call.session, call.actor)


def complaint_clause(actor: Actor):
    """Return the WHERE clause limiting complaints to the actor's scope."""
    if actor.username == SYSTEM.username or actor.has_role("admin") or actor.has_role("auditor"):
        return true()
    org = actor.organisation_id
    for role, column in (("regulator", Complaint.department_id), ("staff", Complaint.centre_id)):
        if actor.has_role(role):
            return column == org if org is not None else false()
    own = [Complaint.complainant_user_id == actor.user_id] if actor.user_id is not None else []
    if org is not None:
        own.append(Complaint.complainant_org_id == org)
        if actor.has_role("tenderer") or actor.has_role("agency"):
            own.append(Complaint.project_id.in_(select(Project.id).where(
                or_(Project.tenderer_id == org, Project.agency_id == org))))
    return or_(*own) if own else false()


def list_complaints(session: Session, actor: Actor, *, project_id: int | None = None) -> list[Complaint]:
    """Return the complaints in the actor's scope (of one project, if given), newest first."""
    query = select(Complaint).where(complaint_clause(actor))
    if project_id is not None:
        query = query.where(Complaint.project_id == project_id)
    return list(session.execute(query.order_by(Complaint.filed_at.desc(), Complaint.id.desc())).scalars())


def get_complaint(session: Session, actor: Actor, complaint_id: int) -> Complaint:
    """Return one complaint the actor may see, or raise NotFound / PermissionDenied."""
    complaint = session.get(Complaint, complaint_id)
    if complaint is None:
        raise NotFound(f"没有投诉 {complaint_id}", complaint=complaint_id)
    if not session.execute(select(Complaint.id).where(Complaint.id == complaint_id,
                                                      complaint_clause(actor))).first():
        raise PermissionDenied(f"{actor.username} 不能查看投诉 {complaint.number}", complaint=complaint_id)
    return complaint


def is_complainant(actor: Actor, complaint: Complaint) -> bool:
    """Tell whether the actor filed the complaint (or belongs to the complaining organisation)."""
    return ((actor.user_id is not None and actor.user_id == complaint.complainant_user_id)
            or (actor.organisation_id is not None and actor.organisation_id == complaint.complainant_org_id))


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _schema_errors(schema: dict[str, Any], values: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in sorted(Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
                        .iter_errors(values), key=lambda e: list(map(str, e.path))):
        path = "/".join(map(str, error.absolute_path))
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path = "/".join(filter(None, [path, missing]))
        errors.setdefault(path or "(form)", []).append(error.message)
    return errors

