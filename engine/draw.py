"""The evaluation committee (评标委员会) and the random draw of its experts with avoidance (专家抽取).

Composition comes from 住建's decision table ``ct_committee`` (owned by ``dept-zjj``):
members, the tenderer's representatives, seats per level-2 class, the draw cap and
window, and whether remote evaluation avoids the project's county. Whatever plan is
used is checked against 法 §37: at least 5 members, an odd number, experts at least
2/3; the tenderer's representatives at most 1/3.

A draw is two steps. ``prepare_draw`` records the nonce and the published inputs
(plan, excluded organisations, tenderer, supervising department, project county,
remote or not, evaluation time) before anything is drawn. ``run_draw`` stamps the draw time (whole seconds),
derives the seed ``sha256("{project code}|{draw time ISO, +08:00}|{nonce}")``, computes
and records the sorted eligible list of each class, and selects.

Selection (replayable). Classes are filled in plan order. The k-th number of a
class's stream is ``HMAC-SHA256(key=seed, msg="{class}|{k}")`` read as a big-endian
integer; it picks ``remaining[number % len(remaining)]``, where ``remaining`` is the
class's recorded eligible list (sorted by user id) minus every expert already drawn
in any class. (The modulo bias of a 256-bit number over a list of at most thousands
is below 2**-240.) A decline draws the next number of the same class's stream, from
what remains. So ``replay_draw`` needs only the recorded seed inputs, eligible lists,
plan and the ordered declines to re-run every pick.

Names are sealed (法 §37: 评标委员会成员的名单...应当保密): until ``reveal_committee``
(called when evaluation starts) only the drawing staff (of the project's centre),
auditors and each drawn expert (their own seat) see names. After it, the tenderer,
its agency, the supervising department and admins see them too; bidders never do here.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, clock, decisions, experts
from engine.actors import Actor
from engine.db import Base, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import Project, User

DECISION = "ct_committee"
ARTICLE = "《招标投标法》第三十七条"
EVALUATION_WINDOW = timedelta(days=1)
REASONS = ("inactive", "untrained", "suspended", "tenderer_employee", "bidder_employee",
           "supervising_department", "home_county", "unavailable", "over_cap")
# Called with (session, seat, actor) when a drawn expert confirms a seat; ``engine.evaluation`` adds a
# replacement drawn during the evaluation (条例 §48) to the committee.
SEAT_CONFIRMED: list[Callable[..., None]] = []


class Draw(Base):
    """One draw of a project's committee: its published inputs, seed, eligible lists and redraws."""

    __tablename__ = "draws"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    nonce: Mapped[str] = mapped_column(String(128))
    plan: Mapped[dict] = mapped_column(JSON)
    inputs: Mapped[dict] = mapped_column(JSON)
    evaluation_at: Mapped[datetime] = mapped_column(UTCDateTime)
    prepared_by: Mapped[str] = mapped_column(String(64))
    prepared_at: Mapped[datetime] = mapped_column(UTCDateTime)
    drawn_by: Mapped[str | None] = mapped_column(String(64))
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    seed: Mapped[str | None] = mapped_column(String(64))
    eligible: Mapped[dict] = mapped_column(JSON, default=dict)
    excluded: Mapped[dict] = mapped_column(JSON, default=dict)
    redraws: Mapped[list] = mapped_column(JSON, default=list)
    revealed_by: Mapped[str | None] = mapped_column(String(64))
    revealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DrawSeat(Base):
    """One pick of a draw: the expert, the class, the stream position; pending, confirmed, declined or replaced."""

    __tablename__ = "draw_seats"

    id: Mapped[int] = mapped_column(primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("draws.id"), index=True)
    order: Mapped[int] = mapped_column(Integer)
    class_code: Mapped[str] = mapped_column(String(8))
    position: Mapped[int] = mapped_column(Integer)
    expert_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("draw_seats.id"))


@dataclass(frozen=True)
class Plan:
    """The committee's composition: members, representatives, expert seats per level-2 class, draw limits."""

    members: int
    tenderer_reps: int
    seats: tuple[tuple[str, int], ...]
    draw_cap: int = 4
    cap_days: int = 30
    remote_avoid_home_county: bool = True
    rule_version: int | None = None

    @property
    def experts(self) -> int:
        """Return the number of expert seats."""
        return sum(n for _, n in self.seats)

    def as_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-able data."""
        return {**asdict(self), "seats": [[c, n] for c, n in self.seats]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Read a plan written by ``as_dict``."""
        return cls(**{**data, "seats": tuple((str(c), int(n)) for c, n in data["seats"])})


@dataclass(frozen=True)
class Pick:
    """One selection of the stream: ``order`` among all picks, ``position`` in its class's stream."""

    order: int
    class_code: str
    position: int
    expert_id: int


@dataclass(frozen=True)
class Replay:
    """What re-running a recorded draw gives."""

    seed: str
    seed_ok: bool
    picks: tuple[Pick, ...]
    committee: tuple[Pick, ...]
    matches: bool


@dataclass(frozen=True)
class SeatView:
    """A seat as one viewer may see it: names only when not sealed for them."""

    id: int
    order: int
    class_code: str
    status: str
    reason: str | None
    responded_at: datetime | None
    expert_id: int | None
    name: str | None
    employer: str | None


@dataclass(frozen=True)
class CommitteeView:
    """A draw as one viewer may see it."""

    draw: Draw
    project: Project
    seats: tuple[SeatView, ...]
    sealed: bool
    may_manage: bool


def validate_plan(plan: Plan) -> Plan:
    """Refuse a plan that breaks 法 §37 or names unknown classes; return it otherwise."""
    members, experts_n, reps = plan.members, plan.experts, plan.tenderer_reps
    if members < 5:
        raise EngineError(f"{ARTICLE}: 评标委员会成员人数为五人以上 (at least 5 members, not {members})",
                          field="members", rule="法 §37")
    if members % 2 == 0:
        raise EngineError(f"{ARTICLE}: 评标委员会成员人数为单数 (the number of members must be odd, not {members})",
                          field="members", rule="法 §37")
    if experts_n + reps != members:
        raise EngineError(f"the expert seats ({experts_n}) and the tenderer's representatives ({reps}) must add up "
                          f"to the {members} members", field="seats")
    if experts_n * 3 < members * 2:
        raise EngineError(f"{ARTICLE}: 技术、经济等方面的专家不得少于成员总数的三分之二 (experts must be at least 2/3 "
                          f"of the members: {experts_n} of {members})", field="seats", rule="法 §37")
    if reps < 0 or reps * 3 > members:
        raise EngineError(f"招标人代表不超过成员总数的三分之一 (the tenderer's representatives are at most 1/3 of the "
                          f"members: {reps} of {members})", field="tenderer_reps", rule="法 §37")
    codes = [c for c, _ in plan.seats]
    unknown = [c for c in codes if c not in experts.class_table() or experts.class_table()[c].parent is None]
    if unknown or len(set(codes)) != len(codes) or any(n < 1 for _, n in plan.seats):
        raise EngineError(f"the seats must name distinct level-2 classes with at least one seat each "
                          f"(unknown: {', '.join(unknown) or 'none'})", field="seats")
    if plan.draw_cap < 1 or plan.cap_days < 1:
        raise EngineError("the draw cap and its window must be at least 1", field="draw_cap")
    return plan


def committee_plan(session: Session, project_id: int) -> Plan:
    """Return the plan the latest deployed ``ct_committee`` table gives for a project."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project {project_id}", project=project_id)
    version = decisions.latest(session, DECISION)
    if version is None:
        raise NotFound(f"评标委员会组成规则尚未发布 (the decision {DECISION} is not deployed)")
    try:
        out = decisions.evaluate(version, sub_type=project.sub_type, estimate=Decimal(project.estimate))
    except EngineError as err:
        raise EngineError(f"{DECISION} v{version.version} gave no composition for sub-type "
                          f"{project.sub_type!r}: {err}") from err
    if not out:
        raise EngineError(f"{DECISION} v{version.version} has no rule for sub-type {project.sub_type!r}")
    seats = ((out["technical_class"], int(out["technical_seats"])), (out["economic_class"], int(out["economic_seats"])))
    return validate_plan(Plan(int(out["members"]), int(out["tenderer_reps"]), seats, int(out["draw_cap"]),
                              int(out["cap_days"]), bool(out["remote_avoid_home_county"]), version.version))



def _project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project {project_id}", project=project_id)
    return project


def check_drawing_staff(actor: Actor, project: Project) -> None:
    """Refuse unless the actor draws for the project: staff of its centre (or the system)."""
    if actor.username == "system":
        return
    if not actor.has_role("staff") or actor.organisation_id is None or actor.organisation_id != project.centre_id:
        raise PermissionDenied(f"{actor.username} may not draw experts for project {project.code}: only staff of "
                               "its trading centre may", project=project.id)


def prepare_draw(
    session: Session, project_id: int, plan: Plan, actor: Actor, *, excluded_organisation_ids: list[int],
    evaluation_at: datetime, nonce: str | None = None, tenderer_organisation_id: int | None = None,
    project_region: int | None = None, remote: bool = False,
) -> Draw:
    """Record the nonce and the published inputs of a draw, before anything is drawn."""
    project = _project(session, project_id)
    check_drawing_staff(actor, project)
    validate_plan(plan)
    nonce = (nonce or "").strip() or secrets.token_hex(16)
    if not 8 <= len(nonce) <= 128 or "|" in nonce or not nonce.isprintable():
        raise EngineError("the nonce is 8-128 printable characters without '|'", field="nonce")
    if evaluation_at <= clock.now():
        raise EngineError("the evaluation must start after the draw", field="evaluation_at")
    inputs = {"excluded_organisation_ids": sorted({int(i) for i in excluded_organisation_ids}),
              "tenderer_organisation_id": tenderer_organisation_id or project.tenderer_id,
              "project_region_id": project_region or project.location_id, "remote": bool(remote),
              "supervising_department_id": project.department_id,
              "evaluation_at": evaluation_at.astimezone(clock.SHANGHAI).isoformat()}
    draw = Draw(project_id=project.id, status="prepared", nonce=nonce, plan=plan.as_dict(), inputs=inputs,
                evaluation_at=evaluation_at, prepared_by=actor.username, prepared_at=clock.now(),
                eligible={}, excluded={}, redraws=[])
    session.add(draw)
    session.flush()
    audit.append(session, actor=actor.username, action="draw.prepare", project_id=project.id,
                 payload={"draw_id": draw.id, "nonce": nonce, "plan": draw.plan, "inputs": inputs})
    return draw


def seed_of(project_code: str, drawn_at: datetime, nonce: str) -> str:
    """Return the draw's seed: sha256 of ``code|draw time ISO (+08:00, seconds)|nonce``, in hex."""
    text = f"{project_code}|{drawn_at.astimezone(clock.SHANGHAI).isoformat(timespec='seconds')}|{nonce}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _number(seed: str, class_code: str, position: int) -> int:
    digest = hmac.new(bytes.fromhex(seed), f"{class_code}|{position}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest, "big")


def select_sequence(seed: str, seats: tuple[tuple[str, int], ...], eligible: dict[str, list[int]],
                    redraws: list[dict[str, Any]]) -> list[Pick]:
    """Re-run every pick of a draw: the plan's seats in order, then one pick per recorded decline."""
    picks: list[Pick] = []
    taken: set[int] = set()
    positions: dict[str, int] = {}

    def pick(class_code: str) -> None:
        remaining = [e for e in eligible.get(class_code, []) if e not in taken]
        if not remaining:
            raise EngineError(f"专业 {experts.class_label(class_code)} 可抽取的专家不足 (class {class_code}: "
                              f"{len(eligible.get(class_code, []))} eligible, "
                              f"{sum(1 for p in picks if p.class_code == class_code)} already drawn, "
                              "none left)", class_code=class_code)
        k = positions.get(class_code, 0)
        chosen = remaining[_number(seed, class_code, k) % len(remaining)]
        positions[class_code] = k + 1
        taken.add(chosen)
        picks.append(Pick(len(picks), class_code, k, chosen))

    for class_code, count in seats:
        for _ in range(count):
            pick(class_code)
    for redraw in redraws:
        pick(str(redraw["class_code"]))
    return picks


def _eligibility(session: Session, draw: Draw, plan: Plan, drawn_at: datetime
                 ) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Return each plan class's sorted eligible expert ids, and why each other expert of those classes is not."""
    codes = [c for c, _ in plan.seats]
    rows = session.execute(
        select(experts.ExpertClass.code, experts.ExpertProfile, User.active)
        .join(experts.ExpertProfile, experts.ExpertProfile.user_id == experts.ExpertClass.user_id)
        .join(User, User.id == experts.ExpertProfile.user_id)
        .where(experts.ExpertClass.code.in_(codes))).all()
    ids = {profile.user_id for _, profile, _ in rows}
    window = (draw.evaluation_at, draw.evaluation_at + EVALUATION_WINDOW)
    busy = set(session.execute(select(experts.ExpertUnavailability.user_id).where(
        experts.ExpertUnavailability.user_id.in_(ids), experts.ExpertUnavailability.starts_at < window[1],
        experts.ExpertUnavailability.ends_at > window[0])).scalars())
    recent = dict(session.execute(
        select(DrawSeat.expert_id, func.count()).join(Draw, Draw.id == DrawSeat.draw_id)
        .where(DrawSeat.expert_id.in_(ids), DrawSeat.status != "declined",
               Draw.drawn_at >= drawn_at - timedelta(days=plan.cap_days))
        .group_by(DrawSeat.expert_id)).all())
    inputs = draw.inputs
    bidders = set(inputs["excluded_organisation_ids"])
    eligible: dict[str, list[int]] = {c: [] for c in codes}
    excluded: dict[str, str] = {}
    for code, profile, active in rows:
        reason = _reason(profile, active, inputs, bidders, plan, busy, recent, draw.evaluation_at)
        if reason:
            excluded[str(profile.user_id)] = reason
        else:
            eligible[code].append(profile.user_id)
    return {c: sorted(v) for c, v in eligible.items()}, dict(sorted(excluded.items(), key=lambda kv: int(kv[0])))


def _reason(profile: experts.ExpertProfile, active: bool, inputs: dict[str, Any], bidders: set[int], plan: Plan,
            busy: set[int], recent: dict[int, int], evaluation_at: datetime) -> str | None:
    if not active:
        return "inactive"
    if profile.trained_on is None:
        return "untrained"
    if experts.is_suspended(profile, evaluation_at):
        return "suspended"
    if profile.employer_id is not None and profile.employer_id == inputs["tenderer_organisation_id"]:
        return "tenderer_employee"
    if profile.employer_id is not None and profile.employer_id in bidders:
        return "bidder_employee"
    if profile.employer_id is not None and profile.employer_id == inputs.get("supervising_department_id"):
        return "supervising_department"  # 条例 §46: not on committees of projects their department supervises
    if inputs["remote"] and plan.remote_avoid_home_county and profile.region_id == inputs["project_region_id"]:
        return "home_county"
    if profile.user_id in busy:
        return "unavailable"
    if recent.get(profile.user_id, 0) >= plan.draw_cap:
        return "over_cap"
    return None


def _locked(session: Session, draw_id: int) -> Draw:
    draw = session.get(Draw, draw_id, with_for_update=True)
    if draw is None:
        raise NotFound(f"no draw {draw_id}", draw=draw_id)
    return draw


def run_draw(session: Session, draw_id: int, actor: Actor) -> Draw:
    """Execute a prepared draw: stamp the time, derive the seed, record eligible lists, select; all or nothing."""
    draw = _locked(session, draw_id)
    project = _project(session, draw.project_id)
    check_drawing_staff(actor, project)
    if draw.status != "prepared":
        raise InvalidState(f"draw {draw.id} was already run at {draw.drawn_at}", draw=draw.id)
    plan = Plan.from_dict(draw.plan)
    drawn_at = clock.now().replace(microsecond=0)
    seed = seed_of(project.code or "", drawn_at, draw.nonce)
    eligible, excluded = _eligibility(session, draw, plan, drawn_at)
    short = [f"{experts.class_label(c)}: {n} seat(s), {len(eligible[c])} eligible"
             for c, n in plan.seats if len(eligible[c]) < n]
    if short:
        raise EngineError("可抽取的专家不足，未抽取 (too few eligible experts; nothing was drawn): " + "; ".join(short),
                          draw=draw.id)
    picks = select_sequence(seed, plan.seats, eligible, [])
    draw.status, draw.drawn_at, draw.drawn_by, draw.seed = "drawn", drawn_at, actor.username, seed
    draw.eligible, draw.excluded = eligible, excluded
    session.add_all(DrawSeat(draw_id=draw.id, order=p.order, class_code=p.class_code, position=p.position,
                             expert_id=p.expert_id, status="pending") for p in picks)
    session.flush()
    audit.append(session, actor=actor.username, action="draw.run", project_id=project.id,
                 payload={"draw_id": draw.id, "drawn_at": drawn_at, "seed": seed, "eligible": eligible,
                          "excluded": excluded, "picks": [asdict(p) for p in picks]})
    return draw


def draw_committee(
    session: Session, project_id: int, plan: Plan, actor: Actor, *, excluded_organisation_ids: list[int],
    evaluation_at: datetime, nonce: str | None = None, tenderer_organisation_id: int | None = None,
    project_region: int | None = None, remote: bool = False,
) -> Draw:
    """Prepare and run a draw at once; when it fails, neither step is kept."""
    with session.begin_nested():
        draw = prepare_draw(session, project_id, plan, actor, excluded_organisation_ids=excluded_organisation_ids,
                            evaluation_at=evaluation_at, nonce=nonce, tenderer_organisation_id=tenderer_organisation_id,
                            project_region=project_region, remote=remote)
        return run_draw(session, draw.id, actor)


def seats_of(session: Session, draw_id: int) -> list[DrawSeat]:
    """Return a draw's seats in pick order."""
    return list(session.execute(select(DrawSeat).where(DrawSeat.draw_id == draw_id).order_by(DrawSeat.order))
                .scalars())


def respond(session: Session, seat_id: int, actor: Actor, *, accept: bool, reason: str = "") -> DrawSeat:
    """Confirm or decline a seat (the drawn expert); a decline draws a replacement from the same stream."""
    seat = session.get(DrawSeat, seat_id)
    if seat is None:
        raise NotFound(f"no seat {seat_id}")
    if actor.username != "system" and seat.expert_id != actor.user_id:
        raise PermissionDenied(f"seat {seat_id} was not drawn for {actor.username}")
    draw = _locked(session, seat.draw_id)
    session.refresh(seat)
    # A revealed draw has pending seats only when a member was replaced during the evaluation (条例 §48).
    if seat.status != "pending" or draw.status not in ("drawn", "revealed"):
        raise InvalidState(f"seat {seat_id} was already answered ({seat.status}) or its draw is closed")
    if accept:
        seat.status, seat.responded_at = "confirmed", clock.now()
        audit.append(session, actor=actor.username, action="draw.confirm", project_id=draw.project_id,
                     payload={"draw_id": draw.id, "seat_id": seat.id})
        for listener in SEAT_CONFIRMED:
            listener(session, seat, actor)
        return seat
    if not reason.strip():
        raise EngineError("a decline needs a reason", field="reason")
    new = _next_pick(draw, {"class_code": seat.class_code, "declined": seat.expert_id})
    seat.status, seat.reason, seat.responded_at = "declined", reason.strip(), clock.now()
    audit.append(session, actor=actor.username, action="draw.decline", project_id=draw.project_id,
                 payload={"draw_id": draw.id, "seat_id": seat.id, "reason": seat.reason})
    return _seat_replacement(session, draw, seat, new, actor)


def _next_pick(draw: Draw, redraw: dict[str, Any]) -> Pick:
    """Record one more redraw on the draw and return its pick: the next number of the class's stream.

    ``select_sequence`` refuses (nothing recorded) when nobody eligible is left in the class.
    """
    redraws = [*draw.redraws, redraw]
    new = select_sequence(draw.seed or "", Plan.from_dict(draw.plan).seats, draw.eligible, redraws)[-1]
    draw.redraws = redraws
    return new


def _seat_replacement(session: Session, draw: Draw, seat: DrawSeat, new: Pick, actor: Actor) -> DrawSeat:
    """Add the pending seat that replaces ``seat`` (declined or replaced) and audit the redraw."""
    replacement = DrawSeat(draw_id=draw.id, order=new.order, class_code=new.class_code, position=new.position,
                           expert_id=new.expert_id, status="pending", replaces_id=seat.id)
    session.add(replacement)
    session.flush()
    audit.append(session, actor=actor.username, action="draw.redraw", project_id=draw.project_id,
                 payload={"draw_id": draw.id, "replaces": seat.id, "pick": asdict(new)})
    return replacement


def replace_seat(session: Session, seat_id: int, actor: Actor, *, grounds: str, reason: str) -> DrawSeat:
    """Redraw a confirmed seat whose expert is replaced during the evaluation (条例 §48; staff of the centre).

    Like a decline, the replacement is the next number of the same class's stream (``redraws`` records
    ``{"class_code", "replaced", "grounds"}``), so ``replay_draw`` re-runs it; if nobody is left in the class,
    the replacement is refused and nothing changes.
    """
    seat = session.get(DrawSeat, seat_id)
    if seat is None:
        raise NotFound(f"no seat {seat_id}")
    draw = _locked(session, seat.draw_id)
    check_drawing_staff(actor, _project(session, draw.project_id))
    session.refresh(seat)
    if seat.status != "confirmed" or draw.status not in ("drawn", "revealed"):
        raise InvalidState(f"seat {seat_id} is {seat.status} in a {draw.status} draw; only a confirmed seat is "
                           "replaced")
    if not reason.strip():
        raise EngineError("a replacement needs a reason", field="reason")
    new = _next_pick(draw, {"class_code": seat.class_code, "replaced": seat.expert_id, "grounds": grounds})
    seat.status, seat.reason = "replaced", reason.strip()
    audit.append(session, actor=actor.username, action="draw.replace", project_id=draw.project_id,
                 payload={"draw_id": draw.id, "seat_id": seat.id, "grounds": grounds, "reason": seat.reason})
    return _seat_replacement(session, draw, seat, new, actor)


def reveal_committee(session: Session, draw_id: int, actor: Actor) -> Draw:
    """Unseal the committee's names when evaluation starts (every seat must be confirmed)."""
    draw = _locked(session, draw_id)
    check_drawing_staff(actor, _project(session, draw.project_id))
    if draw.status != "drawn":
        raise InvalidState(f"draw {draw.id} is {draw.status}; only a run, unrevealed draw can be revealed")
    pending = [s.id for s in seats_of(session, draw.id) if s.status == "pending"]
    if pending:
        raise InvalidState(f"{len(pending)} drawn expert(s) have not confirmed yet; the committee is incomplete")
    draw.status, draw.revealed_at, draw.revealed_by = "revealed", clock.now(), actor.username
    audit.append(session, actor=actor.username, action="draw.reveal", project_id=draw.project_id,
                 payload={"draw_id": draw.id})
    return draw


def may_see_names(actor: Actor, draw: Draw, project: Project) -> bool:
    """Tell whether the actor sees every name of the committee (experts see their own seat regardless)."""
    if actor.username == "system" or actor.has_role("auditor"):
        return True
    if actor.has_role("staff") and actor.organisation_id == project.centre_id:
        return True
    if draw.status != "revealed":
        return False
    org = actor.organisation_id
    return (actor.has_role("admin") or actor.has_role("staff")
            or (actor.has_role("tenderer") and org is not None and org == project.tenderer_id)
            or (actor.has_role("agency") and org is not None and org == project.agency_id)
            or (actor.has_role("regulator") and org is not None and org == project.department_id))


def committee_view(session: Session, draw_id: int, actor: Actor) -> CommitteeView:
    """Return a draw as the actor may see it: names sealed unless ``may_see_names`` (or their own seat)."""
    draw = session.get(Draw, draw_id)
    if draw is None:
        raise NotFound(f"no draw {draw_id}", draw=draw_id)
    project = _project(session, draw.project_id)
    seats = seats_of(session, draw.id)
    everyone = may_see_names(actor, draw, project)
    users = {u.id: u for u in session.execute(select(User).where(User.id.in_([s.expert_id for s in seats])))
             .scalars()}
    profiles = {p.user_id: p for p in session.execute(select(experts.ExpertProfile).where(
        experts.ExpertProfile.user_id.in_(list(users)))).scalars()}
    views = []
    for seat in seats:
        shown = everyone or (actor.user_id is not None and seat.expert_id == actor.user_id)
        views.append(SeatView(seat.id, seat.order, seat.class_code, seat.status, seat.reason if shown else None,
                              seat.responded_at, seat.expert_id if shown else None,
                              users[seat.expert_id].display_name if shown else None,
                              profiles[seat.expert_id].employer_name if shown and seat.expert_id in profiles
                              else None))
    manage = actor.username == "system" or (actor.has_role("staff") and actor.organisation_id == project.centre_id)
    return CommitteeView(draw, project, tuple(views), not everyone, manage)


def list_draws(session: Session, actor: Actor, *, project_id: int | None = None) -> list[tuple[Draw, Project]]:
    """List draws with their projects: staff of the project's centre, auditors and admins."""
    query = select(Draw, Project).join(Project, Project.id == Draw.project_id).order_by(Draw.id.desc())
    if project_id is not None:
        query = query.where(Draw.project_id == project_id)
    if actor.username != "system" and not (actor.has_role("auditor") or actor.has_role("admin")):
        if not actor.has_role("staff"):
            raise PermissionDenied(f"{actor.username} may not list expert draws")
        query = query.where(Project.centre_id == actor.organisation_id)
    return [tuple(row) for row in session.execute(query.limit(200)).all()]


def my_seats(session: Session, actor: Actor) -> list[tuple[DrawSeat, Draw, Project]]:
    """Return the seats drawn for the actor (an expert), newest first."""
    if actor.user_id is None:
        return []
    query = (select(DrawSeat, Draw, Project).join(Draw, Draw.id == DrawSeat.draw_id)
             .join(Project, Project.id == Draw.project_id).where(DrawSeat.expert_id == actor.user_id)
             .order_by(Draw.drawn_at.desc(), DrawSeat.order))
    return [tuple(row) for row in session.execute(query).all()]


def draw_record(session: Session, draw_id: int) -> dict[str, Any]:
    """Return everything an auditor needs to re-run a draw, as JSON-able data."""
    draw = session.get(Draw, draw_id)
    if draw is None:
        raise NotFound(f"no draw {draw_id}", draw=draw_id)
    if draw.drawn_at is None:
        raise InvalidState(f"draw {draw_id} was prepared but not run yet")
    project = _project(session, draw.project_id)
    return {"draw_id": draw.id, "project_code": project.code,
            "drawn_at": draw.drawn_at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
            "nonce": draw.nonce, "seed": draw.seed, "plan": draw.plan, "inputs": draw.inputs,
            "eligible": draw.eligible, "excluded": draw.excluded, "redraws": draw.redraws,
            "seats": [{"order": s.order, "class_code": s.class_code, "position": s.position,
                       "expert_id": s.expert_id, "status": s.status} for s in seats_of(session, draw.id)]}


def replay_draw(record: dict[str, Any]) -> Replay:
    """Re-run a recorded draw from its published inputs; compare with the recorded picks."""
    seed = seed_of(record["project_code"] or "", datetime.fromisoformat(record["drawn_at"]), record["nonce"])
    plan = Plan.from_dict(record["plan"])
    picks = tuple(select_sequence(seed, plan.seats, record["eligible"], record["redraws"]))
    declined = {(r["class_code"], r.get("declined", r.get("replaced"))) for r in record["redraws"]}
    committee = tuple(p for p in picks if (p.class_code, p.expert_id) not in declined)
    recorded = [(s["order"], s["class_code"], s["position"], s["expert_id"]) for s in record.get("seats", [])]
    matches = seed == record["seed"] and recorded == [(p.order, p.class_code, p.position, p.expert_id) for p in picks]
    return Replay(seed, seed == record["seed"], picks, committee, matches)


def _cmd_draw(ctx: Any, args: argparse.Namespace) -> int:
    with ctx.sessions() as session:
        record = draw_record(session, args.id)
    replay = replay_draw(record)
    result = {"draw_id": record["draw_id"], "project_code": record["project_code"], "seed": replay.seed,
              "seed_ok": replay.seed_ok, "matches": replay.matches,
              "committee": [asdict(p) for p in replay.committee]}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"draw {record['draw_id']} of {record['project_code']}: seed {replay.seed[:16]}… "
              f"{'matches the record' if replay.matches else 'DOES NOT match the record'}")
        for p in replay.committee:
            print(f"  {p.class_code} #{p.position}: expert {p.expert_id}")
    return 0 if replay.matches else 1


def add_commands(command: Any) -> None:
    """Add ``ggzy draw replay DRAW_ID`` to the command line."""
    parser = command("draw", _cmd_draw, "re-run a recorded expert draw (auditors)")
    parser.add_argument("action", choices=["replay"])
    parser.add_argument("id", type=int)
