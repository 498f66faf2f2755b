"""Trading projects (交易项目, R4, R12): registration under the catalog, trading codes, no trading elsewhere, stages.

A tenderer, or an agency acting for one, registers a project; the deployed
trading catalog decides its level, centre, supervising department and process;
the project gets a trading code (centre + year + sequence) and its process
starts at acceptance. A project the catalog says must be traded on the
platform can never be closed as traded elsewhere ("平台之外无交易").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from lxml import etree
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import false, func, or_, select, true
from sqlalchemy.orm import Session

from engine import audit, catalog, clock, credit, runtime, scope
from engine.actors import SYSTEM, Actor
from engine.errors import EngineError, FormValidationError, InvalidState, NotFound, PermissionDenied
from engine.models import AuditEvent, DefinitionVersion, Instance, Organisation, Project, StoredFile, TaskLog
from engine.xmlsafe import NS, parse_xml

REGISTRATION_FORM = "project_registration.json"
FORM_FILE = Path(__file__).resolve().parent.parent / "forms" / REGISTRATION_FORM
TENDERER_KINDS = ("company", "department")
MAX_ESTIMATE = Decimal("1e16")
STAGES = ("acceptance", "organisation", "witness")
# Short centre prefixes of trading codes; other centres use their code in capitals.
CODE_PREFIXES = {"zy-centre": "ZY", "zy-ganzhou": "GZ", "zy-linze": "LZ", "zy-gaotai": "GT", "zy-shandan": "SD",
                 "zy-minle": "ML", "zy-sunan": "SN"}
_STEP_TAGS = frozenset({"task", "userTask", "manualTask", "serviceTask", "scriptTask", "businessRuleTask",
                        "sendTask", "receiveTask", "callActivity", "intermediateCatchEvent", "intermediateThrowEvent"})
_RANK = ("pending", "cancelled", "done", "open", "error")


@dataclass(frozen=True)
class Step:
    """One step of a stage and how far it got."""

    element_id: str
    name: str
    lane: str | None
    status: str
    completed_by: str | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class Stage:
    """One of the three stages (三段式) with its steps; ``status`` is pending, open, done, error or cancelled."""

    key: str
    name: str
    status: str
    steps: tuple[Step, ...]


def registration_schema(session: Session) -> dict[str, Any]:
    """Return the registration form: its latest deployed version, else the shipped file."""
    source = session.execute(
        select(DefinitionVersion.source)
        .where(DefinitionVersion.kind == "form", DefinitionVersion.key == REGISTRATION_FORM,
               DefinitionVersion.active.is_(True))
        .order_by(DefinitionVersion.version.desc()).limit(1)).scalar()
    return json.loads(source if source is not None else FORM_FILE.read_text(encoding="utf-8"))


def register_project(
    session: Session, actor: Actor, *, name: str, location_code: str, category: str, sub_type: str,
    estimate: Decimal | str, funding: str, tenderer_code: str, agency_code: str | None = None,
    contacts: dict[str, Any], documents: list[dict[str, Any]],
) -> Project:
    """Register a project, let the catalog place it, give it a trading code and start its process.

    Every field is checked against the registration form and the organisations and files it names; the
    errors come back together, keyed by field path. ``estimate`` is Decimal (a numeric string is read exactly).
    """
    values = {"name": name, "location_code": location_code, "category": category, "sub_type": sub_type,
              "estimate": _amount_text(estimate), "funding": funding, "tenderer_code": tenderer_code,
              "contacts": contacts, "documents": documents}
    if agency_code:
        values["agency_code"] = agency_code
    orgs, amount = _validate(session, values, estimate)
    tenderer, agency = orgs["tenderer_code"], orgs.get("agency_code")
    _check_registrant(actor, tenderer, agency)
    for party in filter(None, (tenderer, agency)):
        credit.ensure_not_sanctioned(session, party.id, at=clock.now(), action="登记交易项目")
    decision = catalog.decide(session, category=category, sub_type=sub_type, estimate=amount, funding=funding,
                              location_code=location_code)
    centre = _org(session, decision.centre_code)
    department = _org(session, decision.department_code)
    project = Project(
        code=allocate_code(session, centre), name=name.strip(), category=category, sub_type=sub_type,
        location_id=orgs["location_code"].id, estimate=amount, funding=funding, tenderer_id=tenderer.id,
        agency_id=agency.id if agency else None, centre_id=centre.id, department_id=department.id,
        must_trade=decision.must_trade, process_key=decision.process_key, status="registered",
        contacts=dict(contacts), documents=list(documents), details={"catalog": _decision_dict(decision)},
        registered_by=actor.username, registered_at=clock.now())
    session.add(project)
    session.flush()
    audit.append(session, actor=actor.username, action="project.register", project_id=project.id,
                 payload={**values, "estimate": amount, "code": project.code, "catalog": _decision_dict(decision)})
    project.instance_id = _start(session, actor, project, decision, location_code).id
    session.flush()
    return project


def _validate(session: Session, values: dict[str, Any], estimate: Any) -> tuple[dict[str, Organisation], Decimal]:
    """Check every field; raise one FormValidationError naming all the fields that are wrong."""
    errors = _schema_errors(registration_schema(session), values)
    if isinstance(values["name"], str) and not values["name"].strip():
        errors.setdefault("name", ["项目名称不能为空"])
    orgs = _resolve(session, values, errors)
    amount = _amount(estimate, errors)
    if errors:
        raise FormValidationError("项目登记信息有误 (registration is invalid): " + ", ".join(sorted(errors)), errors)
    return orgs, amount


def _start(session: Session, actor: Actor, project: Project, decision: catalog.CatalogDecision,
           location_code: str) -> Instance:
    """Start the catalog's process for the project, at acceptance, with the agreed start data."""
    start = {"project_id": project.id, "project_code": project.code, "project_name": project.name,
             "category": project.category, "sub_type": project.sub_type, "estimate": project.estimate,
             "funding": project.funding, "location": location_code, "centre_level": decision.level}
    return runtime.start_instance(session, decision.process_key, start, actor, project_id=project.id,
                                  centre_id=project.centre_id, department_id=project.department_id,
                                  tenderer_id=project.tenderer_id, agency_id=project.agency_id,
                                  category=project.category, title=project.name)


def code_prefix(centre: Organisation) -> str:
    """Return the trading-code prefix of a centre (ZY, LZ, ...)."""
    return CODE_PREFIXES.get(centre.code) or "".join(c for c in centre.code.upper() if c.isalnum())


def allocate_code(session: Session, centre: Organisation) -> str:
    """Return the centre's next trading code for the current (Shanghai) year, e.g. ``LZ-2026-0001``.

    The centre's row is locked (FOR NO KEY UPDATE, which rows referencing it do not wait for) until the
    caller commits, so two registrations at one centre never read the same last code; SQLite serializes
    writers at BEGIN IMMEDIATE. ``projects.code`` is unique besides.
    """
    session.execute(select(Organisation.id).where(Organisation.id == centre.id).with_for_update(key_share=True))
    stem = f"{code_prefix(centre)}-{clock.local_now().year}-"
    last = session.execute(
        select(Project.code).where(Project.code.like(stem + "%"))
        .order_by(func.length(Project.code).desc(), Project.code.desc()).limit(1)).scalar()
    return f"{stem}{int(last.removeprefix(stem)) + 1 if last else 1:04d}"


def close_as_traded_elsewhere(session: Session, project_id: int, reason: str, actor: Actor) -> Project:
    """Close a project the catalog does not require on the platform; refuse one it does (平台之外无交易)."""
    project = session.execute(select(Project).where(Project.id == project_id).with_for_update()).scalar_one_or_none()
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    if not (reason or "").strip():
        raise EngineError("请填写理由 (a reason is required)", field="reason")
    check_close(actor, project)
    if project.status == "closed_elsewhere":
        raise InvalidState(f"项目 {project.code} 已登记为平台外交易", project=project_id)
    now_says = catalog.decide(session, category=project.category, sub_type=project.sub_type,
                              estimate=project.estimate, funding=project.funding,
                              location_code=session.get(Organisation, project.location_id).code)
    if project.must_trade or now_says.must_trade:
        basis = now_says.basis if now_says.must_trade else project.details.get("catalog", {}).get("basis", "")
        raise InvalidState(f"平台之外无交易：项目 {project.code} 依交易目录必须进入平台交易，"
                           f"不得在平台外交易（{basis}）", project=project_id)
    instance = session.get(Instance, project.instance_id) if project.instance_id else None
    if instance is not None and instance.status in (*runtime.ACTIVE, "suspended", "error"):
        manager = actor if scope.allows(scope.check_manage_instance, actor, instance) else SYSTEM
        runtime.terminate(session, instance.id, f"平台外交易（{actor.username}）：{reason.strip()}", manager)
    project.status = "closed_elsewhere"
    project.details = {**project.details, "closed_elsewhere": {"reason": reason.strip(), "by": actor.username,
                                                               "at": clock.now().isoformat()}}
    audit.append(session, actor=actor.username, action="project.close_elsewhere", project_id=project.id,
                 instance_id=project.instance_id,
                 payload={"code": project.code, "reason": reason.strip(), "catalog": _decision_dict(now_says)})
    session.flush()
    return project


def project_clause(actor: Actor):
    """Return the WHERE clause limiting projects to the actor's scope, as ``engine.scope`` limits instances."""
    if actor.username == SYSTEM.username or actor.has_role("admin") or actor.has_role("auditor"):
        return true()
    org = actor.organisation_id
    if org is None:
        return false()
    for role, column in (("staff", Project.centre_id), ("regulator", Project.department_id),
                         ("tenderer", Project.tenderer_id), ("agency", Project.agency_id)):
        if actor.has_role(role):
            return column == org
    return false()


def list_projects(session: Session, actor: Actor, *, status: str | None = None, page: int = 1,
                  per_page: int = 20) -> tuple[list[Project], int]:
    """Return one page of the projects in the actor's scope, newest first, and their total."""
    query = select(Project).where(project_clause(actor))
    if status:
        query = query.where(Project.status == status)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(Project.registered_at.desc(), Project.id.desc())
                           .limit(per_page).offset((max(page, 1) - 1) * per_page)).scalars().all()
    return list(rows), total


def get_project(session: Session, actor: Actor, project_id: int) -> Project:
    """Return a project the actor may see, by scope on its instance (on the project itself when it has none)."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    instance = session.get(Instance, project.instance_id) if project.instance_id else None
    if instance is not None:
        scope.check_view_instance(actor, instance)
    elif not session.execute(select(Project.id).where(Project.id == project_id, project_clause(actor))).first():
        raise PermissionDenied(f"项目 {project.code} 属于其他机构的业务", project=project_id)
    return project


def project_trail(session: Session, project: Project) -> list[AuditEvent]:
    """Return the audit events of a project and of its instance, in order."""
    where = AuditEvent.project_id == project.id
    if project.instance_id is not None:
        where = or_(where, AuditEvent.instance_id == project.instance_id)
    return list(session.execute(select(AuditEvent).where(where).order_by(AuditEvent.seq)).scalars())


def project_stages(session: Session, loaded: runtime.Loaded) -> list[Stage]:
    """Return the stages of an instance's process version with each step's status (from the engine's state)."""
    version = session.get(DefinitionVersion, loaded.instance.process_version_id)
    states: dict[str, str] = {}
    for task in loaded.workflow.get_tasks():
        bpmn_id = task.task_spec.bpmn_id
        if bpmn_id is not None:
            states[bpmn_id] = max(states.get(bpmn_id, "pending"), _state(task), key=_RANK.index)
    done = {row.element_id: row for row in session.execute(
        select(TaskLog).where(TaskLog.instance_id == loaded.instance.id).order_by(TaskLog.completed_at)).scalars()}
    return [Stage(key, name, states.get(element_id, "pending"), tuple(
        Step(step_id, step_name, lane, states.get(step_id, "pending"),
             done[step_id].completed_by if step_id in done else None,
             done[step_id].completed_at if step_id in done else None)
        for step_id, step_name, lane in steps))
        for key, element_id, name, steps in stage_elements(version.id, version.sha256, version.filename,
                                                           version.source)]


@lru_cache(maxsize=64)
def stage_elements(version_id: int, sha256: str, filename: str, source: str) -> tuple:
    """Map a process version's stages (sub-processes ``stage_<key>``) to their steps (id, name, lane), in order."""
    root = parse_xml(source.encode("utf-8"), filename, max_bytes=1 << 30)
    lanes = {(ref.text or "").strip(): lane.get("name") for lane in root.iterfind(".//bpmn:lane", NS)
             for ref in lane.iterfind("bpmn:flowNodeRef", NS)}
    stages = []
    for key in STAGES:
        node = root.find(f".//bpmn:subProcess[@id='stage_{key}']", NS)
        if node is None:
            continue
        steps = tuple((child.get("id"), child.get("name") or child.get("id"), _lane(child, lanes))
                      for child in node.iter(etree.Element)
                      if etree.QName(child).localname in _STEP_TAGS and child.get("id"))
        stages.append((key, node.get("id"), node.get("name") or key, steps))
    return tuple(stages)


def _lane(node: etree._Element, lanes: dict[str, str | None]) -> str | None:
    while node is not None:
        if node.get("id") in lanes:
            return lanes[node.get("id")]
        node = node.getparent()
    return None


def _state(task: Any) -> str:
    if task.has_state(TaskState.ERROR):
        return "error"
    if task.has_state(TaskState.READY | TaskState.STARTED | TaskState.WAITING):
        return "open"
    if task.has_state(TaskState.COMPLETED):
        return "done"
    return "cancelled" if task.has_state(TaskState.CANCELLED) else "pending"


def _amount_text(estimate: Any) -> Any:
    return format(estimate, "f") if isinstance(estimate, Decimal) and estimate.is_finite() else estimate


def _amount(estimate: Any, errors: dict[str, list[str]]) -> Decimal:
    """Return the estimate as an exact, positive amount of at most two decimals, or record why not."""
    try:
        amount = estimate if isinstance(estimate, Decimal) else Decimal(estimate if isinstance(estimate, str) else "x")
    except InvalidOperation:
        amount = Decimal("NaN")
    if "estimate" in errors:
        return amount
    if not amount.is_finite():
        errors.setdefault("estimate", []).append("估算价必须是以元为单位的金额，例如 4000000.00")
    elif amount <= 0 or amount >= MAX_ESTIMATE:
        errors.setdefault("estimate", []).append("估算价必须大于 0 且小于 10^16 元")
    elif amount != amount.quantize(Decimal("0.01")):
        errors.setdefault("estimate", []).append("估算价最多两位小数（分）")
    return amount


def _schema_errors(schema: dict[str, Any], values: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in sorted(Draft202012Validator(schema).iter_errors(values), key=lambda e: list(map(str, e.path))):
        path = "/".join(map(str, error.absolute_path))
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path = "/".join(filter(None, [path, missing]))
        errors.setdefault(path or "(form)", []).append(error.message)
    return errors


def _resolve(session: Session, values: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Organisation]:
    """Look up the organisations and files named by the form; record every one that is missing or wrong."""
    wanted = {"location_code": (("centre",), "县区分中心"), "tenderer_code": (TENDERER_KINDS, "招标人"),
              "agency_code": (("agency",), "招标代理机构")}
    found = {}
    for field, (kinds, what) in wanted.items():
        code = values.get(field)
        if not isinstance(code, str) or not code or field in errors:
            continue
        org = session.execute(select(Organisation).where(Organisation.code == code)).scalar_one_or_none()
        if org is None or org.kind not in kinds or (field == "location_code" and org.level != "county"):
            errors.setdefault(field, []).append(f"{code!r} 不是已登记的{what}")
        else:
            found[field] = org
    for index, document in enumerate(values.get("documents") or []):
        sha = (document.get("file") or {}).get("sha256") if isinstance(document, dict) else None
        if isinstance(sha, str) and session.get(StoredFile, sha) is None:
            errors.setdefault(f"documents/{index}/file", []).append(f"文件 {sha[:12]}… 未上传")
    return found


def _check_registrant(actor: Actor, tenderer: Organisation, agency: Organisation | None) -> None:
    if actor.username == SYSTEM.username or actor.has_role("admin"):
        return
    if actor.has_role("agency") and agency is not None and agency.id == actor.organisation_id:
        return
    if actor.has_role("tenderer") and tenderer.id == actor.organisation_id:
        return
    raise PermissionDenied(f"{actor.username} 只能为本单位登记项目，或以本代理机构名义代理登记 "
                           "(register for your own organisation, or as the agency acting for it)")


def check_close(actor: Actor, project: Project) -> None:
    """Refuse unless the actor may close the project: its tenderer or agency, staff of its centre, admins."""
    org = actor.organisation_id
    if actor.username == SYSTEM.username or actor.has_role("admin") \
            or (actor.has_role("staff") and org == project.centre_id) \
            or (actor.has_role("tenderer") and org == project.tenderer_id) \
            or (actor.has_role("agency") and org is not None and org == project.agency_id):
        return
    raise PermissionDenied(f"{actor.username} 不能关闭项目 {project.code}", project=project.id)



def _org(session: Session, code: str) -> Organisation:
    org = session.execute(select(Organisation).where(Organisation.code == code)).scalar_one_or_none()
    if org is None:
        raise NotFound(f"交易目录指向的机构 {code!r} 不存在 (the catalog names an unknown organisation)")
    return org


def _decision_dict(decision: catalog.CatalogDecision) -> dict[str, Any]:
    return {"must_trade": decision.must_trade, "level": decision.level, "centre": decision.centre_code,
            "department": decision.department_code, "process": decision.process_key, "basis": decision.basis,
            "rule_versions": decision.rule_versions}
