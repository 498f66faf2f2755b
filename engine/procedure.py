"""Glue between ``construction_tender`` and the domain services: the committee of a project's confirmed draw.

The diagram's staff task "专家抽取" (``record_committee``) asks the centre's staff to draw the
evaluation committee (评标委员会) on ``/draws/new`` and have every drawn expert confirm. When the
task is completed, the service task ``store_committee`` (``@service("committee_of_draw")``) checks
the draw and stores the committee in the instance data (``committee``): the draw, its seed and
instant, and per seat the expert's user id and expert class. Names are not stored: they stay sealed
in the draw until the evaluation starts (法 §37 ¶3: the committee's members are confidential until
the result is settled); instance data is shown to more people than the sealed committee view.

If the committee is not complete, ``committee_of_draw`` does not fail the instance: it returns
``{"ready": false, "problem": "…"}`` and the diagram sends the task back to staff with that message.

The avoidance of bidders (条例 §46 ¶3, 法 §37 ¶4) needs the bidders of the opened round:
``opening_bidder_ids`` gives them, and the draw page passes them as ``excluded_organisation_ids``
to ``engine.draw.prepare_draw``; ``committee_of_draw`` refuses a draw that did not exclude them all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock, draw, experts
from engine.bids import Bid, Opening
from engine.errors import InvalidState, NotFound
from engine.models import Project
from engine.services import ServiceCall, service

# The bid states of a bidder that took part in a round (as the opening record counts them).
PARTICIPATED = ("submitted", "rejected", "decrypted", "undecrypted")


def latest_opening(session: Session, project_id: int) -> Opening | None:
    """Return the project's latest opening (the round whose bid deadline passed last), or None."""
    return session.execute(select(Opening).where(Opening.project_id == project_id)
                           .order_by(Opening.tender_round.desc()).limit(1)).scalar_one_or_none()


def opening_bidder_ids(session: Session, project_id: int) -> list[int]:
    """Return the organisation ids of the bidders of the project's latest opening, sorted (empty: no opening).

    These are the organisations a committee draw must avoid (``prepare_draw(..., excluded_organisation_ids=…)``):
    every bidder whose bid took part in that round, decrypted or not.
    """
    opening = latest_opening(session, project_id)
    if opening is None:
        return []
    rows = session.execute(select(Bid.organisation_id).where(
        Bid.project_id == project_id, Bid.tender_round == opening.tender_round,
        Bid.status.in_(PARTICIPATED)).distinct()).scalars()
    return sorted(set(rows))


def current_draw(session: Session, project_id: int) -> draw.Draw | None:
    """Return the project's latest run draw (drawn or revealed): the one the evaluation will use."""
    return session.execute(select(draw.Draw).where(draw.Draw.project_id == project_id,
                                                   draw.Draw.status.in_(("drawn", "revealed")))
                           .order_by(draw.Draw.id.desc()).limit(1)).scalar_one_or_none()


def committee_problem(session: Session, project_id: int, tender_round: int | None = None) -> str | None:
    """Say in Chinese (with English) why the project has no complete committee yet; None when it has one.

    ``tender_round`` (the process's round) must be the round of the latest opening when given.
    """
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    row = current_draw(session, project_id)
    if row is None:
        return (f"项目 {project.code} 尚未抽取评标专家，请先在专家抽取页抽取 "
                "(no expert draw of this project has been run)")
    opening = latest_opening(session, project_id)
    if tender_round is not None and (opening is None or opening.tender_round != int(tender_round)):
        return (f"项目 {project.code} 第 {tender_round} 次招标尚未开标 "
                f"(no opening of round {tender_round})")
    if opening is not None and row.prepared_at < opening.bid_deadline:
        return (f"抽取 #{row.id} 早于本轮开标（第 {opening.tender_round} 次招标），请为本轮重新抽取 "
                f"(draw {row.id} was prepared before the round's bid deadline)")
    seats = [s for s in draw.seats_of(session, row.id) if s.status not in ("declined", "replaced")]
    pending = [s for s in seats if s.status != "confirmed"]
    if pending:
        return (f"抽取 #{row.id} 还有 {len(pending)} 名专家未确认参加评标，请待全部确认后再提交 "
                f"(draw {row.id}: {len(pending)} drawn expert(s) have not confirmed)")
    plan = draw.Plan.from_dict(row.plan)
    if len(seats) != plan.experts:
        return (f"抽取 #{row.id} 的专家席位为 {len(seats)} 个，抽取方案要求 {plan.experts} 个 "
                f"(draw {row.id} has {len(seats)} seats, its plan {plan.experts})")
    bidders = set(opening_bidder_ids(session, project_id))
    missing = bidders - set(int(i) for i in row.inputs.get("excluded_organisation_ids", []))
    if missing:
        return (f"抽取 #{row.id} 未回避本轮开标的全部投标人（条例第四十六条），请重新抽取 "
                f"(draw {row.id} did not exclude bidder organisation(s) {sorted(missing)})")
    return None


def committee_of(session: Session, project_id: int, tender_round: int | None = None) -> dict[str, Any]:
    """Return the committee of the project's confirmed draw, or refuse naming what is missing."""
    problem = committee_problem(session, project_id, tender_round)
    if problem is not None:
        raise InvalidState(problem, project=project_id)
    row = current_draw(session, project_id)
    assert row is not None  # committee_problem found it
    plan = draw.Plan.from_dict(row.plan)
    seats = [s for s in draw.seats_of(session, row.id) if s.status == "confirmed"]
    return {
        "ready": True, "problem": None, "draw_id": row.id, "seed": row.seed,
        "drawn_at": row.drawn_at.astimezone(clock.SHANGHAI).isoformat() if row.drawn_at else None,
        "members": [{"seat_id": s.id, "expert_id": s.expert_id, "class_code": s.class_code,
                     "class_label": experts.class_label(s.class_code)} for s in seats],
        "experts": len(seats), "tenderer_reps": plan.tenderer_reps, "total": plan.members,
        "excluded_organisation_ids": list(row.inputs.get("excluded_organisation_ids", [])),
    }


@service("committee_of_draw")
def committee_of_draw(call: ServiceCall, tender_round: int | None = None) -> dict[str, Any]:
    """Service task: the committee of the project's confirmed draw, or ``ready: false`` with the problem."""
    if call.project_id is None:
        raise InvalidState(f"instance {call.instance_id} belongs to no project; it has no committee")
    problem = committee_problem(call.session, call.project_id, tender_round)
    if problem is not None:
        return {"ready": False, "problem": problem}
    committee = committee_of(call.session, call.project_id, tender_round)
    audit.append(call.session, actor=call.actor, action="procedure.committee", instance_id=call.instance_id,
                 project_id=call.project_id, payload={"draw_id": committee["draw_id"],
                                                      "seats": [m["seat_id"] for m in committee["members"]]})
    return committee


def evaluation_problem(session: Session, project_id: int, tender_round: int | None = None) -> str | None:
    """Say why the project's evaluation report cannot be handed over yet; None when it is complete and signed."""
    from engine import evaluation  # the evaluation module registers its own service task

    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    row = evaluation.of_project(session, project_id)
    if row is None or (tender_round is not None and row.tender_round != int(tender_round)):
        return (f"项目 {project.code} 的评标尚未开始，请在评标页开始评标 "
                "(the evaluation of this round has not started)")
    if row.status != "complete" or evaluation.report_of(session, row) is None:
        stage = {"qualification": "资格审查", "scoring": "评分", "signing": "签署评标报告"}.get(row.status, row.status)
        review = f"第 {row.review} 次复核" if row.review else "评标"
        return (f"评标 #{row.id} 的{review}尚未完成（当前阶段：{stage}），评标委员会全体成员签署"
                f"{'复核后的' if row.review else ''}评标报告后再提交 "
                f"(evaluation {row.id}{f' review {row.review}' if row.review else ''} is {row.status}; 条例 §53)")
    return None


@service("evaluation_state")
def evaluation_state(call: ServiceCall, tender_round: int | None = None) -> dict[str, Any]:
    """Service task before ``evaluation_report``: ``ready`` when the round's report is complete and signed."""
    if call.project_id is None:
        raise InvalidState(f"instance {call.instance_id} belongs to no project; it has no evaluation")
    problem = evaluation_problem(call.session, call.project_id, tender_round)
    return {"ready": problem is None, "problem": problem}
