"""Remote evaluation (远程异地评标, R7): qualification review, independent scoring, the signed committee report.

Staff of the project's centre start the evaluation once the committee is confirmed and the
opening recorded (``start_evaluation``): the committee's names are unsealed
(``draw.reveal_committee``) and the method the tender documents declared (经评审的最低投标价法
``lowest_price`` or 综合评估法 ``comprehensive`` with its weighted factors) is frozen with the
price-formula parameters of 住建's decision ``ct_price_score`` and the decrypted bids of the
opening record.

1. Qualification (初步评审, 条例 §51): every member judges every bid on every criterion, pass or
   fail with a reason. A bid passes a criterion when more than half the members pass it.
2. Scoring (综合评估法 only): every member scores every qualified bid on the non-price factors,
   each within its weight; the price score is computed (``price_scores``), never typed.
3. Report (条例 §53): at most three ranked candidates, canonical JSON with its sha256, signed by
   every member with their certificate over the 32 digest bytes (ECDSA-SHA256, DER). Complete,
   and immutable, when every member has signed.

Independence (法 §38): a member sees only their own sheets until every member has submitted
that phase; staff see who submitted, never scores; audit events carry a sheet's sha256, not its
content, because the project trail is shown to staff.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event, inspect, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, bids, clock, draw, immutable, market, pki, runtime
from engine.actors import Actor
from engine.db import Base, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.evaluation_method import CENT, MAX_CANDIDATES, METHODS, formula_of, method_parameters, price_scores, rank
from engine.models import Notice, Project, User
from engine.services import ServiceCall, service

PHASES = ("qualification", "scoring")
# 条例 §48: why a member is replaced during the evaluation (回避, 擅离职守, 健康等原因).
GROUNDS = {"withdrawal": "回避", "absent": "擅离职守", "health": "因健康等原因不能继续评标"}
REQUALIFIED = "更换评委后资格审查结论改变，重新评分 (the qualification outcome changed after a replacement)"


class Evaluation(Base):
    """One round's evaluation: the frozen method, bids and committee, and its phase."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("project_id", "tender_round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    tender_round: Mapped[int] = mapped_column(Integer)
    draw_id: Mapped[int] = mapped_column(ForeignKey("draws.id"))
    opening_record_id: Mapped[int] = mapped_column(ForeignKey("opening_records.id"))
    method: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict] = mapped_column(JSON)
    bids: Mapped[list] = mapped_column(JSON)
    members: Mapped[list] = mapped_column(JSON)
    qualified: Mapped[list | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    started_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # 复核: 0 is the first evaluation; each upheld objection reopens it as review 1, 2, … (``reviews``: why, when).
    review: Mapped[int] = mapped_column(Integer, default=0)
    reviews: Mapped[list] = mapped_column(JSON, default=list)
    # 条例 §48: members replaced during the evaluation, oldest first.
    replacements: Mapped[list] = mapped_column(JSON, default=list)


class EvaluationSheet(Base):
    """One member's sheet of one phase: qualification judgements or scores; fixed once submitted."""

    __tablename__ = "evaluation_sheets"
    immutable_label = "evaluation sheet"
    immutable_rules = True  # changed until submitted: see _refuse_submitted
    # One live (not void) sheet per member, phase and review; void sheets are kept beside it.
    __table_args__ = (Index("uq_evaluation_sheets_live", "evaluation_id", "expert_id", "kind", "review", unique=True,
                            sqlite_where=text("voided_at IS NULL"), postgresql_where=text("voided_at IS NULL")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), index=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    entries: Mapped[dict] = mapped_column(JSON)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review: Mapped[int] = mapped_column(Integer, default=0)
    # A void sheet (its member was replaced, 条例 §48) is kept and never counted.
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(Text)


class EvaluationReport(Base):
    """The committee's report (评标报告) of one review: canonical JSON and its sha256, written once."""

    __tablename__ = "evaluation_reports"
    __table_args__ = (UniqueConstraint("evaluation_id", "review"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), index=True)
    review: Mapped[int] = mapped_column(Integer, default=0)
    content: Mapped[dict] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReportSignature(Base):
    """A member's signature of the report with their certificate, and any dissent (条例 §53)."""

    __tablename__ = "evaluation_signatures"
    __table_args__ = (UniqueConstraint("report_id", "expert_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("evaluation_reports.id"), index=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    signature: Mapped[str] = mapped_column(Text)
    dissent: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReportImmutable(InvalidState):
    """A submitted sheet, a written report or a signature cannot be changed or removed."""


# -- the tender terms -------------------------------------------------------------------------------------


def tender_terms(session: Session, project: Project) -> dict[str, Any]:
    """Return the method, weights and round the tender documents declared (the procedure's latest data)."""
    if project.instance_id is None:
        raise InvalidState(f"project {project.code} has no procedure instance", project=project.id)
    tasks = [t for t in runtime.load(session, project.instance_id).workflow.get_tasks()
             if "evaluation_method" in t.data]
    if not tasks:
        raise InvalidState(f"项目 {project.code} 的招标文件尚未载明评标方法", project=project.id)
    data = max(tasks, key=lambda t: t.last_state_change).data
    return {"method": data["evaluation_method"], "weights": list(data.get("evaluation_weights") or []),
            "tender_round": int(data.get("tender_round") or 1)}


# -- start ----------------------------------------------------------------------------------------------------


def _project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    return project


def _committee(session: Session, project: Project, actor: Actor) -> draw.Draw:
    row = session.execute(select(draw.Draw).where(draw.Draw.project_id == project.id,
                                                  draw.Draw.status.in_(("drawn", "revealed")))
                          .order_by(draw.Draw.id.desc()).limit(1)).scalar_one_or_none()
    if row is None:
        raise InvalidState(f"项目 {project.code} 尚未抽取评标委员会 (no committee drawn)", project=project.id)
    if row.status == "drawn":
        draw.reveal_committee(session, row.id, actor)
    return row


def _opened_bids(session: Session, project: Project, tender_round: int) -> tuple[bids.OpeningRecord, list[dict]]:
    opening = session.execute(select(bids.Opening).where(bids.Opening.project_id == project.id,
                                                         bids.Opening.tender_round == tender_round)
                              ).scalar_one_or_none()
    record = opening and session.execute(select(bids.OpeningRecord).where(
        bids.OpeningRecord.opening_id == opening.id)).scalar_one_or_none()
    if record is None:
        raise InvalidState(f"项目 {project.code} 第 {tender_round} 次招标尚无开标记录 (no opening record)",
                           project=project.id)
    rows = []
    for row in record.content["bids"]:
        bid = session.get(bids.Bid, row["bid_id"])
        if row["decryption"] == "decrypted" and bid is not None and bid.status == "decrypted":
            rows.append({"bid_id": bid.id, "organisation_id": bid.organisation_id, "bidder_name": row["bidder_name"],
                         "bidder_uscc": row["bidder_uscc"], "price": row["price"],
                         "submitted_at": row["submitted_at"], "document_sha256": row["document_sha256"]})
    if not rows:
        raise InvalidState(f"项目 {project.code} 没有已解密的投标文件可评审", project=project.id)
    return record, rows


def start_evaluation(session: Session, project_id: int, actor: Actor) -> Evaluation:
    """Start the evaluation (staff of the centre): unseal the committee, freeze method, bids and members."""
    project = _project(session, project_id)
    draw.check_drawing_staff(actor, project)
    terms = tender_terms(session, project)
    if session.execute(select(Evaluation.id).where(Evaluation.project_id == project.id,
                                                   Evaluation.tender_round == terms["tender_round"])).first():
        raise InvalidState(f"项目 {project.code} 第 {terms['tender_round']} 次招标的评标已经开始", project=project.id)
    record, rows = _opened_bids(session, project, terms["tender_round"])
    parameters = method_parameters(terms["method"], terms["weights"], formula_of(session, project))
    committee = _committee(session, project, actor)
    members = sorted(s.expert_id for s in draw.seats_of(session, committee.id) if s.status == "confirmed")
    seats = draw.Plan.from_dict(committee.plan).experts
    if len(members) != seats:
        raise InvalidState(f"评标委员会应有 {seats} 名专家确认参加，实有 {len(members)} 名 "
                           "(the committee is incomplete)", project=project.id)
    evaluation = Evaluation(project_id=project.id, tender_round=terms["tender_round"], draw_id=committee.id,
                            opening_record_id=record.id, method=terms["method"], parameters=parameters, bids=rows,
                            members=members, qualified=None, status="qualification", started_by=actor.username,
                            started_at=clock.now(), review=0, reviews=[], replacements=[])
    session.add(evaluation)
    session.flush()
    audit.append(session, actor=actor.username, action="evaluation.start", project_id=project.id, payload={
        "evaluation_id": evaluation.id, "method": evaluation.method, "parameters": parameters, "members": members,
        "bids": [r["bid_id"] for r in rows], "opening_record_sha256": record.sha256})
    return evaluation


# -- access ---------------------------------------------------------------------------------------------------


def get(session: Session, evaluation_id: int, *, lock: bool = False) -> Evaluation:
    """Return an evaluation or refuse."""
    evaluation = session.get(Evaluation, evaluation_id, with_for_update=lock or None)
    if evaluation is None:
        raise NotFound(f"没有评标 {evaluation_id}", evaluation=evaluation_id)
    return evaluation


def of_project(session: Session, project_id: int) -> Evaluation | None:
    """Return a project's latest evaluation, if any."""
    return session.execute(select(Evaluation).where(Evaluation.project_id == project_id)
                           .order_by(Evaluation.tender_round.desc()).limit(1)).scalar_one_or_none()


def is_member(evaluation: Evaluation, actor: Actor) -> bool:
    """Tell whether the actor sits on the evaluation's committee."""
    return actor.user_id is not None and actor.has_role("expert") and actor.user_id in evaluation.members


def is_centre_staff(session: Session, evaluation: Evaluation, actor: Actor) -> bool:
    """Tell whether the actor is staff of the project's centre (sees progress, never scores)."""
    project = _project(session, evaluation.project_id)
    return actor.has_role("staff") and actor.organisation_id is not None and actor.organisation_id == project.centre_id


def check_member(evaluation: Evaluation, actor: Actor) -> None:
    """Refuse unless the actor is a member of the committee."""
    if not is_member(evaluation, actor):
        raise PermissionDenied(f"{actor.username} 不是本项目评标委员会成员 (not on the committee)",
                               evaluation=evaluation.id)


def check_progress_reader(session: Session, evaluation: Evaluation, actor: Actor) -> None:
    """Refuse unless the actor may follow the evaluation's progress: members, centre staff, auditors."""
    if not (is_member(evaluation, actor) or is_centre_staff(session, evaluation, actor)
            or actor.has_role("auditor") or actor.username == "system"):
        raise PermissionDenied(f"{actor.username} may not follow evaluation {evaluation.id}")


def may_read_all(evaluation: Evaluation, actor: Actor) -> bool:
    """Tell whether the actor sees every sheet: the members once all submitted, auditors after the report."""
    if actor.has_role("auditor") or actor.username == "system":
        return evaluation.status == "complete"
    return is_member(evaluation, actor) and evaluation.status in ("signing", "complete")


def list_evaluations(session: Session, actor: Actor) -> list[tuple[Evaluation, Project]]:
    """Return the evaluations the actor takes part in or follows: members, centre staff, auditors; newest first."""
    rows = session.execute(select(Evaluation, Project).join(Project, Project.id == Evaluation.project_id)
                           .order_by(Evaluation.id.desc()).limit(500)).all()
    return [(e, p) for e, p in rows if actor.has_role("auditor") or actor.username == "system" or is_member(e, actor)
            or (actor.has_role("staff") and actor.organisation_id is not None and p.centre_id == actor.organisation_id)]


def startable(session: Session, actor: Actor) -> list[Project]:
    """Return the projects of the staff member's centre with a drawn committee and no evaluation of their round."""
    if not actor.has_role("staff") or actor.organisation_id is None:
        return []
    started = select(Evaluation.project_id)
    drawn = select(draw.Draw.project_id).where(draw.Draw.status.in_(("drawn", "revealed")))
    return list(session.execute(select(Project).where(Project.centre_id == actor.organisation_id,
                                                      Project.id.in_(drawn), Project.id.not_in(started))
                                .order_by(Project.id.desc()).limit(100)).scalars())


def bid_records(session: Session, evaluation: Evaluation, actor: Actor) -> list[dict[str, Any]]:
    """Return the bids with each company's records (licences, project managers, sanctions) to the members."""
    check_member(evaluation, actor)
    at = evaluation.started_at
    return [{**row, "company": market.company_summary(session, row["organisation_id"], at)}
            for row in evaluation.bids]


# -- sheets ---------------------------------------------------------------------------------------------------


def _sheet(session: Session, evaluation: Evaluation, expert_id: int, kind: str) -> EvaluationSheet | None:
    """Return one member's live sheet of one phase of the current review, if saved."""
    return session.execute(select(EvaluationSheet).where(
        EvaluationSheet.evaluation_id == evaluation.id, EvaluationSheet.expert_id == expert_id,
        EvaluationSheet.kind == kind, EvaluationSheet.review == evaluation.review,
        EvaluationSheet.voided_at.is_(None))).scalar_one_or_none()


def my_sheet(session: Session, evaluation_id: int, actor: Actor, kind: str) -> EvaluationSheet | None:
    """Return the actor's own sheet of a phase (members only)."""
    evaluation = get(session, evaluation_id)
    check_member(evaluation, actor)
    return _sheet(session, evaluation, actor.user_id, kind)


def _sheets(session: Session, evaluation: Evaluation, kind: str, review: int | None = None
            ) -> dict[int, EvaluationSheet]:
    """Return the live sheets of a phase of a review (the current one) by member: void sheets never count."""
    rows = session.execute(select(EvaluationSheet).where(
        EvaluationSheet.evaluation_id == evaluation.id, EvaluationSheet.kind == kind,
        EvaluationSheet.review == (evaluation.review if review is None else review),
        EvaluationSheet.voided_at.is_(None))).scalars()
    return {row.expert_id: row for row in rows if review is not None or row.expert_id in evaluation.members}


def void_sheets(session: Session, evaluation_id: int) -> list[EvaluationSheet]:
    """Return an evaluation's void sheets (replaced members', or scores voided by a changed outcome), oldest first."""
    return list(session.execute(select(EvaluationSheet).where(
        EvaluationSheet.evaluation_id == evaluation_id, EvaluationSheet.voided_at.is_not(None))
        .order_by(EvaluationSheet.id)).scalars())


def _qualification_entries(evaluation: Evaluation, entries: dict[Any, Any], submit: bool) -> dict[str, Any]:
    criteria = [c["key"] for c in evaluation.parameters["criteria"]]
    bid_ids = {str(b["bid_id"]) for b in evaluation.bids}
    unknown = sorted(set(map(str, entries)) - bid_ids)
    if unknown:
        raise EngineError(f"bid(s) {', '.join(unknown)} are not in this evaluation", field="entries")
    clean: dict[str, Any] = {}
    missing: list[tuple[str, str]] = []
    for bid_id in sorted(bid_ids, key=int):
        given = entries.get(bid_id, entries.get(int(bid_id))) or {}
        row = {}
        for key in criteria:
            item = given.get(key) if isinstance(given, dict) else None
            if not isinstance(item, dict) or item.get("passed") is None:
                missing.append((bid_id, key))
                continue
            reason = str(item.get("reason") or "").strip()[:1000]
            if not item["passed"] and not reason:
                raise EngineError(f"投标 {bid_id} 的审查项 {key} 不合格，须说明理由 (a fail needs a reason)",
                                  field=f"{bid_id}.{key}")
            row[key] = {"passed": bool(item["passed"]), "reason": reason}
        clean[bid_id] = row
    if submit and missing:
        raise EngineError(f"投标 {missing[0][0]} 的审查项 {missing[0][1]} 尚未评审 (every criterion of every bid is "
                          "judged before submitting)", field=".".join(missing[0]))
    return clean


def _score(value: Any, maximum: Decimal, where: str) -> str:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise EngineError(f"{where}: {value!r} 不是分数 (not a number)", field=where) from None
    if not number.is_finite() or number < 0 or number > maximum or number != number.quantize(CENT):
        raise EngineError(f"{where}: 评分应在 0 至 {maximum} 之间，最多两位小数 (not {value})", field=where)
    return str(number)


def _score_entries(evaluation: Evaluation, entries: dict[Any, Any], submit: bool) -> dict[str, Any]:
    factors = evaluation.parameters["factors"]
    qualified = {str(b) for b in evaluation.qualified or []}
    unknown = sorted(set(map(str, entries)) - qualified)
    if unknown:
        raise EngineError(f"bid(s) {', '.join(unknown)} did not pass the qualification review", field="entries")
    clean: dict[str, Any] = {}
    missing = []
    for bid_id in sorted(qualified, key=int):
        given = entries.get(bid_id, entries.get(int(bid_id))) or {}
        row = {}
        for factor in factors:
            value = given.get(factor["key"]) if isinstance(given, dict) else None
            if value is None or str(value).strip() == "":
                missing.append((bid_id, factor))
                continue
            row[factor["key"]] = _score(value, Decimal(factor["max"]), f"{bid_id}.{factor['key']}")
        clean[bid_id] = row
    if submit and missing:
        bid_id, factor = missing[0]
        raise EngineError(f"投标 {bid_id} 的评分项「{factor['factor']}」尚未评分 (every factor of every qualified bid "
                          "is scored before submitting)", field=f"{bid_id}.{factor['key']}")
    return clean


def save_sheet(session: Session, evaluation_id: int, actor: Actor, kind: str, entries: dict[Any, Any], *,
               submit: bool = False) -> EvaluationSheet:
    """Save (and optionally submit) the actor's sheet of the current phase; the last submission moves on.

    A member who replaced another during scoring (条例 §48) first catches up on the qualification review.
    """
    evaluation = get(session, evaluation_id, lock=True)
    check_member(evaluation, actor)
    catching_up = (kind == "qualification" and evaluation.status == "scoring"
                   and not _is_submitted(_sheet(session, evaluation, actor.user_id, "qualification")))
    if kind not in PHASES or (evaluation.status != kind and not catching_up):
        raise InvalidState(f"评标当前阶段为 {evaluation.status}，不能保存 {kind} (the evaluation is not in this phase)",
                           evaluation=evaluation.id)
    if kind == "scoring" and not _is_submitted(_sheet(session, evaluation, actor.user_id, "qualification")):
        raise InvalidState(f"{actor.username} 须先提交资格审查再评分 (submit the qualification review first)",
                           evaluation=evaluation.id)
    row = _sheet(session, evaluation, actor.user_id, kind)
    if row is not None and row.submitted_at is not None:
        raise InvalidState(f"{actor.username} 已提交{('资格审查' if kind == 'qualification' else '评分')}，不能修改",
                           evaluation=evaluation.id)
    clean = (_qualification_entries if kind == "qualification" else _score_entries)(evaluation, entries, submit)
    at = clock.now()
    if row is None:
        row = EvaluationSheet(evaluation_id=evaluation.id, expert_id=actor.user_id, kind=kind, entries=clean,
                              saved_at=at, review=evaluation.review)
        session.add(row)
    row.entries, row.saved_at, row.submitted_at = clean, at, at if submit else None
    session.flush()
    audit.append(session, actor=actor.username, action=f"evaluation.{kind}." + ("submit" if submit else "save"),
                 project_id=evaluation.project_id, payload={
                     "evaluation_id": evaluation.id, "sheet_id": row.id,
                     "entries_sha256": hashlib.sha256(audit.canonical_json(clean).encode()).hexdigest()})
    if submit and catching_up:
        _requalify(session, evaluation, actor)
    elif submit and _phase_done(session, evaluation, kind):
        _advance(session, evaluation, actor)
    return row


def _is_submitted(sheet: EvaluationSheet | None) -> bool:
    return sheet is not None and sheet.submitted_at is not None


def _submitted(session: Session, evaluation: Evaluation, kind: str) -> list[int]:
    return [e for e, row in _sheets(session, evaluation, kind).items() if row.submitted_at is not None]


def vacancies(session: Session, evaluation: Evaluation) -> list[draw.DrawSeat]:
    """Return the committee's seats redrawn for a replaced member and not yet confirmed (条例 §48)."""
    return [s for s in draw.seats_of(session, evaluation.draw_id) if s.status == "pending"]


def _phase_done(session: Session, evaluation: Evaluation, kind: str) -> bool:
    """Tell whether every member submitted the phase and no replaced seat is still vacant."""
    return set(_submitted(session, evaluation, kind)) == set(evaluation.members) and not vacancies(session, evaluation)


def _prefill(session: Session, evaluation: Evaluation, kind: str, at: datetime) -> None:
    """Give each member a draft of a review's phase from their submitted sheet of the previous review (复核)."""
    earlier = _sheets(session, evaluation, kind, review=evaluation.review - 1)
    allowed = {str(b) for b in (evaluation.qualified or [])} if kind == "scoring" else None
    for expert_id in evaluation.members:
        before = earlier.get(expert_id)
        if before is None or before.submitted_at is None or _sheet(session, evaluation, expert_id, kind) is not None:
            continue
        entries = {k: v for k, v in before.entries.items() if allowed is None or k in allowed}
        session.add(EvaluationSheet(evaluation_id=evaluation.id, expert_id=expert_id, kind=kind, entries=entries,
                                    saved_at=at, review=evaluation.review))
    session.flush()


def _advance(session: Session, evaluation: Evaluation, actor: Actor) -> None:
    if evaluation.status == "qualification":
        outcome = _qualification_result(session, evaluation)
        evaluation.qualified = [b["bid_id"] for b in evaluation.bids if outcome[b["bid_id"]]["passed"]]
        if evaluation.method == "comprehensive" and evaluation.qualified:
            evaluation.status = "scoring"
            audit.append(session, actor=actor.username, action="evaluation.scoring", project_id=evaluation.project_id,
                         payload={"evaluation_id": evaluation.id, "qualified": evaluation.qualified})
            if evaluation.review:
                _prefill(session, evaluation, "scoring", clock.now())
            return
    write_report(session, evaluation, actor)


def _requalify(session: Session, evaluation: Evaluation, actor: Actor) -> None:
    """A replacement's late qualification sheet (条例 §48): recompute the outcome; if it changed, score again."""
    outcome = _qualification_result(session, evaluation)
    qualified = [b["bid_id"] for b in evaluation.bids if outcome[b["bid_id"]]["passed"]]
    if qualified == evaluation.qualified:
        if _phase_done(session, evaluation, "scoring"):
            _advance(session, evaluation, actor)
        return
    at = clock.now()
    voided = []
    for sheet in _sheets(session, evaluation, "scoring").values():
        sheet.voided_at, sheet.void_reason = at, REQUALIFIED
        voided.append(sheet.id)
    evaluation.qualified = qualified
    session.flush()
    audit.append(session, actor=actor.username, action="evaluation.requalify", project_id=evaluation.project_id,
                 payload={"evaluation_id": evaluation.id, "qualified": qualified, "voided_sheets": voided})
    if not qualified or evaluation.method != "comprehensive":
        write_report(session, evaluation, actor)


def _qualification_result(session: Session, evaluation: Evaluation) -> dict[int, dict[str, Any]]:
    """Return each bid's outcome: passed when a majority passes every criterion; the failures with reasons."""
    sheets = [s for s in _sheets(session, evaluation, "qualification").values() if s.submitted_at is not None]
    out = {}
    for row in evaluation.bids:
        key, failures, passed = str(row["bid_id"]), [], True
        for criterion in evaluation.parameters["criteria"]:
            votes = [(s.expert_id, s.entries.get(key, {}).get(criterion["key"], {})) for s in sheets]
            fails = [(e, v.get("reason", "")) for e, v in votes if v.get("passed") is False]
            if len(fails) * 2 >= len(evaluation.members):
                passed = False
            failures += [{"criterion": criterion["key"], "label": criterion["label"], "expert_id": e, "reason": r}
                         for e, r in fails]
        out[row["bid_id"]] = {"passed": passed, "failures": failures}
    return out


# -- summary and report ---------------------------------------------------------------------------------------


def _summary(session: Session, evaluation: Evaluation) -> dict[str, Any]:
    """Return the committee's figures: per bid the price score, each member's scores, means, flags and total."""
    factors, price = evaluation.parameters["factors"], evaluation.parameters["price"]
    by_id = {b["bid_id"]: b for b in evaluation.bids}
    qualified = evaluation.qualified or []
    base, computed = (None, {}) if not (price and qualified) else price_scores(
        price, {b: Decimal(by_id[b]["price"]) for b in qualified})
    sheets = {e: s.entries for e, s in _sheets(session, evaluation, "scoring").items() if s.submitted_at}
    threshold = Decimal(evaluation.parameters["outlier_percent"]) / 100
    rows = []
    for bid_id in qualified:
        means, flags, technical = {}, [], Decimal(0)
        for factor in factors:
            scores = {e: Decimal(entries[str(bid_id)][factor["key"]]) for e, entries in sheets.items()}
            mean = (sum(scores.values(), Decimal(0)) / len(scores)).quantize(CENT, ROUND_HALF_UP) if scores else None
            means[factor["key"]] = str(mean) if mean is not None else None
            limit = Decimal(factor["max"]) * threshold
            flags += [{"factor": factor["key"], "expert_id": e, "score": str(v), "mean": str(mean)}
                      for e, v in scores.items() if mean is not None and abs(v - mean) > limit]
            technical += mean if mean is not None and factor["part"] == "technical" else 0
        price_score = computed.get(bid_id, {}).get("score")
        total = sum((Decimal(v) for v in means.values() if v is not None), Decimal(price_score or 0))
        rows.append({**{k: by_id[bid_id][k] for k in ("bid_id", "bidder_name", "bidder_uscc", "price",
                                                       "submitted_at")},
                     "deviation": computed.get(bid_id, {}).get("deviation"), "price_score": price_score,
                     "means": means, "technical": str(technical), "total": str(total) if price else None,
                     "sheets": {str(e): entries[str(bid_id)] for e, entries in sheets.items()}, "flags": flags})
    return {"base_price": str(base) if base is not None else None, "bids": rows}


def write_report(session: Session, evaluation: Evaluation, actor: Actor) -> EvaluationReport:
    """Write the report once every phase is submitted: ranking, up to three candidates, canonical JSON, sha256."""
    project = _project(session, evaluation.project_id)
    figures = _summary(session, evaluation)
    ranked = rank(evaluation.method, figures["bids"])
    candidates = [{"rank": i + 1, "bidder_name": r["bidder_name"], "bidder_uscc": r["bidder_uscc"],
                   "price": r["price"], **({"score": r["total"]} if r["total"] is not None else {})}
                  for i, r in enumerate(ranked[:MAX_CANDIDATES])]
    names = dict(session.execute(select(User.id, User.display_name).where(User.id.in_(evaluation.members))).all())
    at = clock.now()
    content = {"format": "ggzy-evaluation-report/1", "project_code": project.code, "project_name": project.name,
               "tender_round": evaluation.tender_round, "method": evaluation.method,
               "method_name": METHODS[evaluation.method], "parameters": evaluation.parameters,
               "opening_record_id": evaluation.opening_record_id,
               "committee": [{"expert_id": e, "name": names.get(e) or str(e)} for e in evaluation.members],
               "qualification": {str(k): v for k, v in _qualification_result(session, evaluation).items()},
               "base_price": figures["base_price"], "scores": figures["bids"], "candidates": candidates,
               "written_at": at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")}
    if evaluation.review:  # 复核: the reopening and the report it supersedes (the first report has no such keys)
        content["review"] = {**evaluation.reviews[-1], "review": evaluation.review}
    if evaluation.replacements:  # 条例 §48: who was replaced, why, and by whom
        content["replacements"] = [dict(r) for r in evaluation.replacements]
    report = EvaluationReport(evaluation_id=evaluation.id, review=evaluation.review, content=content,
                              sha256=hashlib.sha256(audit.canonical_json(content).encode()).hexdigest(), created_at=at)
    session.add(report)
    evaluation.status = "signing"
    session.flush()
    audit.append(session, actor=actor.username, action="evaluation.report", project_id=evaluation.project_id,
                 payload={"evaluation_id": evaluation.id, "report_id": report.id, "sha256": report.sha256,
                          "review": evaluation.review})
    return report


def report_of(session: Session, evaluation: Evaluation) -> EvaluationReport | None:
    """Return the report of the evaluation's current review, if written (earlier reviews' are superseded)."""
    return session.execute(select(EvaluationReport).where(EvaluationReport.evaluation_id == evaluation.id,
                                                          EvaluationReport.review == evaluation.review)
                           ).scalar_one_or_none()


def reports_of(session: Session, evaluation: Evaluation) -> list[EvaluationReport]:
    """Return every report of the evaluation, one per review, oldest first (all belong in the archive)."""
    return list(session.execute(select(EvaluationReport).where(EvaluationReport.evaluation_id == evaluation.id)
                                .order_by(EvaluationReport.review)).scalars())


def report_history(session: Session, evaluation_id: int, actor: Actor) -> list[dict[str, Any]]:
    """Return each review's report with its signers and whether it is superseded (members, centre staff, auditors).

    Staff see the digests and who signed, never the content; the content stays with ``committee_summary``.
    """
    evaluation = get(session, evaluation_id)
    check_progress_reader(session, evaluation, actor)
    out = []
    for report in reports_of(session, evaluation):
        reopened = next((r for r in evaluation.reviews if r["review"] == report.review + 1), None)
        out.append({"review": report.review, "report_id": report.id, "sha256": report.sha256,
                    "created_at": report.created_at, "superseded": report.review < evaluation.review,
                    "superseded_by": reopened, "signers": [s.expert_id for s in signatures_of(session, report)]})
    return out


def signatures_of(session: Session, report: EvaluationReport) -> list[ReportSignature]:
    """Return a report's signatures, oldest first."""
    return list(session.execute(select(ReportSignature).where(ReportSignature.report_id == report.id)
                                .order_by(ReportSignature.id)).scalars())


def parse_signature(data: bytes) -> bytes:
    """Return a DER ECDSA signature from an upload: DER bytes, base64 or hex text of DER, or a raw 64-byte r||s."""
    for candidate in (data, *_decoded(data)):
        try:
            decode_dss_signature(candidate)
            return candidate
        except ValueError:
            if len(candidate) == 64:
                return pki.der_signature(candidate)
    raise EngineError("签名文件无法识别：应为 DER 编码的 ECDSA 签名（或其 base64/hex 文本） "
                      "(not a DER ECDSA signature)", field="signature")


def _decoded(data: bytes) -> list[bytes]:
    text = data.strip().decode("ascii", "replace")
    out = []
    for decode in (bytes.fromhex, lambda t: base64.b64decode(t, validate=True)):
        try:
            out.append(decode(text))
        except ValueError:
            continue
    return out


def sign_report(session: Session, evaluation_id: int, actor: Actor, signature: bytes, *,
                certificate_id: int | None = None, dissent: str = "") -> ReportSignature:
    """Record a member's signature over the report's 32 sha256 bytes, verified with their certificate now."""
    evaluation = get(session, evaluation_id, lock=True)
    check_member(evaluation, actor)
    report = report_of(session, evaluation)
    if report is None or evaluation.status != "signing":
        raise InvalidState(f"评标报告{'尚未形成' if report is None else '已签署完成'} (the report is not open for "
                           "signing)", evaluation=evaluation.id)
    if any(s.expert_id == actor.user_id for s in signatures_of(session, report)):
        raise InvalidState(f"{actor.username} 已签署评标报告", evaluation=evaluation.id)
    certificate = (session.get(pki.Certificate, certificate_id) if certificate_id is not None
                   else pki.active_certificate(session, actor.user_id))
    if certificate is None or certificate.user_id != actor.user_id:
        raise InvalidState(f"{actor.username} 没有登记有效的数字证书 (register a CA certificate first)")
    at = clock.now()
    pki.verify_signature(session, certificate.id, bytes.fromhex(report.sha256), signature, at=at)
    row = ReportSignature(report_id=report.id, expert_id=actor.user_id, certificate_id=certificate.id,
                          signature=signature.hex(), dissent=dissent.strip()[:4000] or None, signed_at=at)
    session.add(row)
    session.flush()
    audit.append(session, actor=actor.username, action="evaluation.sign", project_id=evaluation.project_id,
                 payload={"evaluation_id": evaluation.id, "report_sha256": report.sha256,
                          "certificate_id": certificate.id, "signature": row.signature,
                          "dissent": row.dissent is not None})
    if {s.expert_id for s in signatures_of(session, report)} == set(evaluation.members):
        evaluation.status, evaluation.completed_at = "complete", at
        audit.append(session, actor=actor.username, action="evaluation.complete", project_id=evaluation.project_id,
                     payload={"evaluation_id": evaluation.id, "report_sha256": report.sha256})
    return row


# -- re-review after an upheld objection (复核, 条例 §54) ----------------------------------------------------------


def reopen_evaluation(session: Session, evaluation_id: int, actor: str, *, reason: str, answer: str = ""
                      ) -> Evaluation:
    """Reopen a complete evaluation for the committee's review (复核) after an objection was upheld.

    The earlier report, its signatures and the sheets stay as they are (immutable, archived); the review
    number goes up, every member gets a draft of each phase pre-filled from their earlier sheet, and a new
    report is written and signed by every member again. Refused unless the evaluation is complete.
    """
    evaluation = get(session, evaluation_id, lock=True)
    reason = (reason or "").strip()
    if not reason:
        raise EngineError("复核须说明理由：成立的异议内容 (the objection upheld is required)", field="reason")
    if evaluation.status != "complete":
        if evaluation.review:
            raise InvalidState(f"评标 #{evaluation.id} 的第 {evaluation.review} 次复核尚未完成，不能再次复核 "
                               "(a review is already open)", evaluation=evaluation.id)
        raise InvalidState(f"评标 #{evaluation.id} 尚未完成（{evaluation.status}），只有已签署完成的评标才能复核 "
                           "(only a complete evaluation can be reopened)", evaluation=evaluation.id)
    previous = report_of(session, evaluation)
    at = clock.now()
    entry = {"review": evaluation.review + 1, "reason": reason[:4000], "answer": (answer or "").strip()[:4000] or None,
             "opened_by": actor, "opened_at": at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
             "supersedes_report_id": previous.id if previous else None,
             "supersedes_sha256": previous.sha256 if previous else None}
    evaluation.review += 1
    evaluation.reviews = [*evaluation.reviews, entry]
    evaluation.status, evaluation.qualified, evaluation.completed_at = "qualification", None, None
    session.flush()
    _prefill(session, evaluation, "qualification", at)
    audit.append(session, actor=actor, action="evaluation.reopen", project_id=evaluation.project_id,
                 payload={"evaluation_id": evaluation.id, **entry})
    return evaluation


@service("review_evaluation")
def review_evaluation(call: ServiceCall, tender_round: int | None = None, reason: str = "",
                      answer: str = "") -> dict[str, Any]:
    """Service task on the upheld-objection path: reopen the round's evaluation for the committee's review."""
    project_id = call.project_id or call.data.get("project_id")
    evaluation = of_project(call.session, int(project_id)) if project_id is not None else None
    if evaluation is None or (tender_round is not None and evaluation.tender_round != int(tender_round)):
        raise InvalidState(f"第 {tender_round} 次招标没有可复核的评标 (no evaluation of round {tender_round})")
    row = reopen_evaluation(call.session, evaluation.id, call.actor, reason=str(reason or ""),
                            answer=str(answer or ""))
    entry = row.reviews[-1]
    return {"evaluation_id": row.id, "review": row.review, "supersedes_sha256": entry["supersedes_sha256"]}


# -- replacing a member (条例 §48) ------------------------------------------------------------------------------


def replace_member(session: Session, evaluation_id: int, actor: Actor, expert_id: int, *, grounds: str,
                   reason: str) -> draw.DrawSeat:
    """Replace a member who must withdraw, left their post or cannot go on (staff of the centre, 条例 §48).

    The seat is redrawn from the same stream (``draw.replace_seat``, replayable); the replaced member's sheets
    of the current review become void (kept, never counted); the drawn expert confirms on their seats page and
    joins the committee; no phase advances until they have submitted it.
    """
    evaluation = get(session, evaluation_id, lock=True)
    project = _project(session, evaluation.project_id)
    draw.check_drawing_staff(actor, project)
    if evaluation.status not in PHASES:
        raise InvalidState(f"评标 #{evaluation.id} 的评标报告已形成（{evaluation.status}），不能更换评委 "
                           "(members are replaced only before the report is written)", evaluation=evaluation.id)
    if expert_id not in evaluation.members:
        raise NotFound(f"专家 {expert_id} 不是评标 #{evaluation.id} 的评标委员会成员 (not a member of this committee)",
                       evaluation=evaluation.id)
    if grounds not in GROUNDS:
        raise EngineError(f"更换事由应为 {'、'.join(GROUNDS.values())} 之一 (grounds {grounds!r} unknown)",
                          field="grounds")
    reason = (reason or "").strip()
    if not reason:
        raise EngineError("更换评委须说明理由 (a reason is required; 条例 §48)", field="reason")
    seat = next((s for s in draw.seats_of(session, evaluation.draw_id)
                 if s.expert_id == expert_id and s.status == "confirmed"), None)
    if seat is None:
        raise InvalidState(f"抽取 #{evaluation.draw_id} 中没有专家 {expert_id} 已确认的席位", evaluation=evaluation.id)
    new_seat = draw.replace_seat(session, seat.id, actor, grounds=grounds, reason=reason)
    at = clock.now()
    voided = []
    for row in session.execute(select(EvaluationSheet).where(
            EvaluationSheet.evaluation_id == evaluation.id, EvaluationSheet.expert_id == expert_id,
            EvaluationSheet.review == evaluation.review, EvaluationSheet.voided_at.is_(None))).scalars():
        row.voided_at, row.void_reason = at, f"{GROUNDS[grounds]}：{reason[:1000]}"
        voided.append(row.id)
    entry = {"expert_id": expert_id, "seat_id": seat.id, "new_seat_id": new_seat.id, "grounds": grounds,
             "reason": reason[:4000], "review": evaluation.review, "phase": evaluation.status, "by": actor.username,
             "at": at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"), "voided_sheets": voided}
    evaluation.members = [m for m in evaluation.members if m != expert_id]
    evaluation.replacements = [*evaluation.replacements, entry]
    session.flush()
    audit.append(session, actor=actor.username, action="evaluation.replace", project_id=evaluation.project_id,
                 payload={"evaluation_id": evaluation.id, **entry})
    return new_seat


def replacement_seats(session: Session, actor: Actor) -> list[tuple[draw.DrawSeat, Evaluation, Project]]:
    """Return the seats redrawn for the actor (an expert) during an evaluation, still to confirm or decline."""
    if actor.user_id is None or not actor.has_role("expert"):
        return []
    rows = session.execute(select(draw.DrawSeat, Evaluation, Project)
                           .join(Evaluation, Evaluation.draw_id == draw.DrawSeat.draw_id)
                           .join(Project, Project.id == Evaluation.project_id)
                           .where(draw.DrawSeat.expert_id == actor.user_id, draw.DrawSeat.status == "pending",
                                  Evaluation.status.in_(PHASES))
                           .order_by(draw.DrawSeat.id)).all()
    return [tuple(row) for row in rows]


def _seat_confirmed(session: Session, seat: draw.DrawSeat, actor: Actor) -> None:
    """A redrawn seat confirmed during an evaluation: the expert joins the committee (``draw.respond`` calls this)."""
    if seat.replaces_id is None:
        return
    evaluation = session.execute(select(Evaluation).where(Evaluation.draw_id == seat.draw_id,
                                                          Evaluation.status.in_(PHASES))
                                 .order_by(Evaluation.id.desc()).limit(1)).scalar_one_or_none()
    if evaluation is None or seat.expert_id in evaluation.members:
        return
    evaluation.members = sorted([*evaluation.members, seat.expert_id])
    evaluation.replacements = [{**r, "replaced_by": seat.expert_id} if r["new_seat_id"] == _first_seat(session, seat)
                               else r for r in evaluation.replacements]
    session.flush()
    audit.append(session, actor=actor.username, action="evaluation.join", project_id=evaluation.project_id,
                 payload={"evaluation_id": evaluation.id, "expert_id": seat.expert_id, "seat_id": seat.id})


def _first_seat(session: Session, seat: draw.DrawSeat) -> int:
    """Return the seat a chain of declined replacements began with: the one ``replace_member`` drew."""
    while seat.replaces_id is not None:
        before = session.get(draw.DrawSeat, seat.replaces_id)
        if before is None or before.status != "declined":
            return seat.id
        seat = before
    return seat.id


if _seat_confirmed not in draw.SEAT_CONFIRMED:
    draw.SEAT_CONFIRMED.append(_seat_confirmed)


# -- views of the evaluation ----------------------------------------------------------------------------------


def progress(session: Session, evaluation_id: int, actor: Actor) -> dict[str, Any]:
    """Return who submitted each phase and who signed (never scores) to members, centre staff and auditors."""
    evaluation = get(session, evaluation_id)
    check_progress_reader(session, evaluation, actor)
    open_seats = vacancies(session, evaluation)
    replaced = [r["expert_id"] for r in evaluation.replacements]
    people = {*evaluation.members, *replaced, *(s.expert_id for s in open_seats)}
    names = dict(session.execute(select(User.id, User.display_name).where(User.id.in_(people))).all())
    report = report_of(session, evaluation)
    signed = {s.expert_id: s.signed_at for s in signatures_of(session, report)} if report else {}
    phases = {kind: {e: row.submitted_at for e, row in _sheets(session, evaluation, kind).items()} for kind in PHASES}
    return {"evaluation": evaluation, "project": _project(session, evaluation.project_id),
            "members": [{"expert_id": e, "name": names.get(e) or str(e),
                         "qualification": phases["qualification"].get(e),
                         "scoring": phases["scoring"].get(e), "signed": signed.get(e)} for e in evaluation.members],
            "report_sha256": report.sha256 if report else None, "review": evaluation.review,
            "reviews": list(evaluation.reviews),
            "replacements": [{**r, "name": names.get(r["expert_id"]) or str(r["expert_id"]),
                              "grounds_label": GROUNDS.get(r["grounds"], r["grounds"])}
                             for r in evaluation.replacements],
            "vacancies": [{"seat_id": s.id, "class_code": s.class_code, "expert_id": s.expert_id,
                           "name": names.get(s.expert_id) or str(s.expert_id)} for s in open_seats]}


def committee_summary(session: Session, evaluation_id: int, actor: Actor) -> dict[str, Any]:
    """Return every member's sheets and the figures: members once all have submitted, auditors after the report."""
    evaluation = get(session, evaluation_id)
    check_progress_reader(session, evaluation, actor)
    if not may_read_all(evaluation, actor):
        raise PermissionDenied("评委之间的评审意见在全体评委提交前不公开 (another member's scores stay hidden until "
                               "every member has submitted)", evaluation=evaluation.id)
    report = report_of(session, evaluation)
    return {"evaluation": evaluation, "report": report, "content": report.content if report else None,
            "signatures": signatures_of(session, report) if report else []}


def superseded_report(session: Session, evaluation_id: int, actor: Actor, review: int) -> EvaluationReport:
    """Return an earlier review's report (superseded by a 复核) to the members and auditors."""
    evaluation = get(session, evaluation_id)
    check_progress_reader(session, evaluation, actor)
    if not (is_member(evaluation, actor) or actor.has_role("auditor") or actor.username == "system"):
        raise PermissionDenied(f"{actor.username} may not read the reports of evaluation {evaluation.id}")
    report = session.execute(select(EvaluationReport).where(EvaluationReport.evaluation_id == evaluation.id,
                                                            EvaluationReport.review == review,
                                                            EvaluationReport.review < evaluation.review)
                             ).scalar_one_or_none()
    if report is None:
        raise NotFound(f"评标 #{evaluation.id} 没有被取代的第 {review} 次评标报告 (no superseded report of review "
                       f"{review})", evaluation=evaluation.id)
    return report


def published_candidates(session: Session, project_id: int, actor: Actor) -> list[dict[str, Any]]:
    """Return the current report's candidates to anyone once they are published (法 §37 keeps all else sealed).

    After a review (复核) only a candidates notice published since the new report was completed counts.
    """
    evaluation = of_project(session, project_id)
    report = report_of(session, evaluation) if evaluation is not None else None
    published = report is not None and evaluation.completed_at is not None and session.execute(
        select(Notice.id).where(Notice.project_id == project_id, Notice.kind == "candidates",
                                Notice.published_at >= evaluation.completed_at).limit(1)).first()
    if not published or report is None or evaluation.status != "complete":
        raise PermissionDenied(f"{actor.username}: 中标候选人尚未公示 (the candidates are not published)")
    return list(report.content["candidates"])


@service("evaluation_report")
def evaluation_report(call: ServiceCall) -> list[dict[str, Any]]:
    """Service task in place of the evaluation step: the signed report's candidates, or refuse if not complete."""
    evaluation = of_project(call.session, int(call.project_id or call.data["project_id"]))
    report = report_of(call.session, evaluation) if evaluation is not None else None
    if report is None or evaluation.status != "complete":
        raise InvalidState("评标报告尚未由评标委员会全体成员签署 (the evaluation report is not complete and signed; "
                           "条例 §53)")
    if not report.content["candidates"]:
        raise InvalidState("评标委员会否决了所有投标，没有中标候选人 (every bid was rejected; 法 §42)")
    audit.append(call.session, actor=call.actor, action="evaluation.handover", instance_id=call.instance_id,
                 project_id=evaluation.project_id, payload={"evaluation_id": evaluation.id,
                                                            "report_sha256": report.sha256,
                                                            "review": evaluation.review})
    return [dict(c) for c in report.content["candidates"]]


# -- immutability ---------------------------------------------------------------------------------------------


immutable.write_once(EvaluationReport, ReportSignature, EvaluationSheet, error=ReportImmutable,
                     bulk="evaluation sheets, reports and signatures cannot be changed or deleted in bulk")


@event.listens_for(EvaluationSheet, "before_update")
def _refuse_submitted(_mapper: Any, _connection: Any, target: EvaluationSheet) -> None:
    state = inspect(target)

    def was_set(key: str) -> bool:
        history = state.attrs[key].history
        return any(value is not None for value in (*history.deleted, *history.unchanged))

    if was_set("voided_at"):
        raise ReportImmutable(f"evaluation sheet {target.id} is void and cannot be changed")
    changed = {attr.key for attr in state.attrs if attr.history.has_changes()}
    if was_set("submitted_at") and not changed <= {"voided_at", "void_reason"}:  # marking it void is all
        raise ReportImmutable(f"evaluation sheet {target.id} was submitted and cannot be changed")

