"""The expert pool (评标专家库, R14): experts classified after the national standard, training, status, availability.

An expert is a user with role ``expert`` and a profile: the level-2 classes of the
评标专家专业分类标准 they may evaluate in (``engine/data/expert_classes.json`` holds a
representative subset), their employer (an organisation in the registry, when it is
one, and its name), their region (a county sub-centre), the day they were trained
(untrained experts are in the pool but never drawn), their status (active, or
suspended with a reason and an optional end), a credit/performance score, and the
periods they are unavailable. Admins and staff manage experts; an expert sees and
edits their own availability. Every level-2 class should keep at least
``MIN_PER_CLASS`` active trained experts; ``pool_health`` flags the classes below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Date, ForeignKey, Integer, String, Text, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, clock
from engine.actors import SYSTEM, Actor, add_user
from engine.db import Base, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import Organisation, User

CLASSES_FILE = Path(__file__).resolve().parent / "data" / "expert_classes.json"
MIN_PER_CLASS = 50
MANAGERS = ("admin", "staff")
READERS = ("admin", "staff", "regulator", "auditor")
STATUSES = ("active", "suspended")
DEFAULT_SCORE = 100


class ExpertProfile(Base):
    """The pool record of a user with role ``expert``."""

    __tablename__ = "expert_profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    employer_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    employer_name: Mapped[str] = mapped_column(String(200), default="")
    region_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    trained_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    suspended_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    score: Mapped[int] = mapped_column(Integer, default=DEFAULT_SCORE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class ExpertClass(Base):
    """One level-2 class an expert may evaluate in."""

    __tablename__ = "expert_classes"

    user_id: Mapped[int] = mapped_column(ForeignKey("expert_profiles.user_id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(8), primary_key=True, index=True)


class ExpertUnavailability(Base):
    """A period in which an expert cannot evaluate (half-open: ``starts_at`` <= t < ``ends_at``)."""

    __tablename__ = "expert_unavailability"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("expert_profiles.user_id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(300), default="")
    created_by: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class ClassInfo:
    """A class of the standard: level 1 (one letter) or level 2 (letter and two digits)."""

    code: str
    name: str
    name_en: str
    parent: str | None


@dataclass(frozen=True)
class Expert:
    """An expert as pages and the draw see them."""

    user_id: int
    username: str
    display_name: str
    profile: ExpertProfile
    classes: tuple[str, ...]
    employer: str
    region: str


@dataclass(frozen=True)
class ClassHealth:
    """How many active trained experts a level-2 class has, and whether that is below the minimum."""

    code: str
    name: str
    parent: str
    count: int
    flagged: bool


@lru_cache(maxsize=1)
def class_table() -> dict[str, ClassInfo]:
    """Return every class of the standard's subset by code (level 1 first, then its level 2 classes)."""
    data = json.loads(CLASSES_FILE.read_text(encoding="utf-8"))
    found: dict[str, ClassInfo] = {}
    for top in data["classes"]:
        found[top["code"]] = ClassInfo(top["code"], top["name"], top["name_en"], None)
        for child in top["children"]:
            found[child["code"]] = ClassInfo(child["code"], child["name"], child["name_en"], top["code"])
    return found


def level2() -> list[ClassInfo]:
    """Return the level-2 classes, by code."""
    return sorted((c for c in class_table().values() if c.parent), key=lambda c: c.code)


def class_label(code: str) -> str:
    """Return ``A01 房屋建筑工程`` for a code (the bare code when unknown)."""
    info = class_table().get(code)
    return f"{code} {info.name}" if info else code


def check_manager(actor: Actor) -> None:
    """Refuse unless the actor may manage the pool (admins and staff)."""
    if actor.username != "system" and not any(actor.has_role(r) for r in MANAGERS):
        raise PermissionDenied(f"{actor.username} may not manage the expert pool: needs role admin or staff")


def _check_classes(codes: list[str]) -> list[str]:
    wanted = sorted(set(codes))
    if not wanted:
        raise EngineError("an expert needs at least one level-2 class", field="classes")
    unknown = [c for c in wanted if c not in class_table() or class_table()[c].parent is None]
    if unknown:
        raise EngineError(f"unknown level-2 class(es) {', '.join(unknown)}; classes are "
                          f"{', '.join(c.code for c in level2())}", field="classes")
    return wanted


def _county(session: Session, region_code: str) -> Organisation:
    region = session.execute(select(Organisation).where(Organisation.code == region_code)).scalar_one_or_none()
    if region is None or region.kind != "centre" or region.level != "county":
        raise EngineError(f"region {region_code!r} is not a county sub-centre", field="region_code")
    return region


def add_expert(
    session: Session, actor: Actor, *, username: str, display_name: str, classes: list[str], region_code: str,
    employer_name: str, employer_code: str | None = None, trained_on: date | None = None,
    score: int = DEFAULT_SCORE, password: str | None = None,
) -> Expert:
    """Admit a new expert: a user with role ``expert`` and a profile (admins and staff)."""
    check_manager(actor)
    _admission(session, classes, region_code, employer_name, employer_code, score)
    user = add_user(session, username, ["expert"], password=password, display_name=display_name, actor=actor)
    return admit(session, actor, user.id, classes=classes, region_code=region_code, employer_name=employer_name,
                 employer_code=employer_code, trained_on=trained_on, score=score)


def _admission(session: Session, classes: list[str], region_code: str, employer_name: str,
               employer_code: str | None, score: int) -> tuple[list[str], Organisation, Organisation | None, str]:
    """Check an admission's classes, region, employer and score; return them resolved."""
    codes = _check_classes(classes)
    region = _county(session, region_code)
    employer = None
    if employer_code:
        employer = session.execute(select(Organisation).where(Organisation.code == employer_code)).scalar_one_or_none()
        if employer is None:
            raise EngineError(f"no organisation {employer_code!r} to employ the expert", field="employer_code")
        employer_name = employer_name.strip() or employer.name
    if not employer_name.strip():
        raise EngineError("an expert needs the name of their employer", field="employer_name")
    if not 0 <= score <= 100:
        raise EngineError(f"a score is between 0 and 100, not {score}", field="score")
    return codes, region, employer, employer_name.strip()


def admit(
    session: Session, actor: Actor, user_id: int, *, classes: list[str], region_code: str, employer_name: str,
    employer_code: str | None = None, trained_on: date | None = None, score: int = DEFAULT_SCORE,
) -> Expert:
    """Give an existing user with role ``expert`` a pool profile (admins and staff)."""
    check_manager(actor)
    codes, region, employer, employer_name = _admission(session, classes, region_code, employer_name, employer_code,
                                                        score)
    user = session.get(User, user_id)
    if user is None or "expert" not in {r.role for r in user.roles}:
        raise EngineError(f"user {user_id} does not hold role expert", field="username")
    if session.get(ExpertProfile, user_id) is not None:
        raise InvalidState(f"{user.username} is already in the expert pool")
    profile = ExpertProfile(user_id=user_id, employer_id=employer.id if employer else None,
                            employer_name=employer_name, region_id=region.id, trained_on=trained_on,
                            status="active", score=score, created_at=clock.now())
    session.add(profile)
    session.flush()
    session.add_all(ExpertClass(user_id=user_id, code=c) for c in codes)
    session.flush()
    audit.append(session, actor=actor.username, action="expert.add",
                 payload={"user_id": user_id, "username": user.username, "classes": codes, "region": region_code,
                          "employer_id": profile.employer_id, "employer_name": profile.employer_name,
                          "trained_on": trained_on.isoformat() if trained_on else None, "score": score})
    return get_expert(session, actor, user_id)


def _profile(session: Session, user_id: int) -> ExpertProfile:
    profile = session.get(ExpertProfile, user_id)
    if profile is None:
        raise NotFound(f"no expert {user_id}", expert=user_id)
    return profile


def record_training(session: Session, actor: Actor, user_id: int, trained_on: date) -> ExpertProfile:
    """Record the day an expert completed training (admission needs it)."""
    check_manager(actor)
    profile = _profile(session, user_id)
    profile.trained_on = trained_on
    audit.append(session, actor=actor.username, action="expert.train",
                 payload={"user_id": user_id, "trained_on": trained_on.isoformat()})
    return profile


def suspend(session: Session, actor: Actor, user_id: int, reason: str, until: datetime | None = None) -> ExpertProfile:
    """Suspend an expert (credit correction, 暂停抽取) with a reason, until an instant or until reinstated."""
    check_manager(actor)
    profile = _profile(session, user_id)
    if not reason.strip():
        raise EngineError("a suspension needs a reason", field="reason")
    if until is not None and until <= clock.now():
        raise EngineError("a suspension must end in the future", field="until")
    profile.status, profile.suspended_reason, profile.suspended_until = "suspended", reason.strip(), until
    audit.append(session, actor=actor.username, action="expert.suspend",
                 payload={"user_id": user_id, "reason": reason.strip(), "until": until})
    return profile


def reinstate(session: Session, actor: Actor, user_id: int) -> ExpertProfile:
    """End an expert's suspension."""
    check_manager(actor)
    profile = _profile(session, user_id)
    if profile.status != "suspended":
        raise InvalidState(f"expert {user_id} is not suspended")
    profile.status, profile.suspended_reason, profile.suspended_until = "active", None, None
    audit.append(session, actor=actor.username, action="expert.reinstate", payload={"user_id": user_id})
    return profile


def set_score(session: Session, actor: Actor, user_id: int, score: int, reason: str) -> ExpertProfile:
    """Change an expert's credit/performance score (0-100) with a reason."""
    check_manager(actor)
    profile = _profile(session, user_id)
    if not 0 <= score <= 100:
        raise EngineError(f"a score is between 0 and 100, not {score}", field="score")
    if not reason.strip():
        raise EngineError("a score change needs a reason", field="reason")
    before, profile.score = profile.score, score
    audit.append(session, actor=actor.username, action="expert.score",
                 payload={"user_id": user_id, "before": before, "after": score, "reason": reason.strip()})
    return profile


def is_suspended(profile: ExpertProfile, at: datetime) -> bool:
    """Tell whether an expert is suspended at an instant."""
    return profile.status == "suspended" and (profile.suspended_until is None or profile.suspended_until > at)


def _check_own(actor: Actor, user_id: int) -> None:
    if actor.username == "system" or any(actor.has_role(r) for r in MANAGERS):
        return
    if not (actor.has_role("expert") and actor.user_id == user_id):
        raise PermissionDenied(f"{actor.username} may only manage their own availability")


def add_unavailability(session: Session, actor: Actor, user_id: int, starts_at: datetime, ends_at: datetime,
                       reason: str = "") -> ExpertUnavailability:
    """Record a period in which an expert cannot evaluate (the expert, or admins and staff)."""
    _profile(session, user_id)
    _check_own(actor, user_id)
    if ends_at <= starts_at:
        raise EngineError("an unavailable period must end after it starts", field="ends_at")
    row = ExpertUnavailability(user_id=user_id, starts_at=starts_at, ends_at=ends_at, reason=reason.strip()[:300],
                               created_by=actor.username)
    session.add(row)
    session.flush()
    audit.append(session, actor=actor.username, action="expert.unavailable",
                 payload={"user_id": user_id, "id": row.id, "starts_at": starts_at, "ends_at": ends_at,
                          "reason": row.reason})
    return row


def remove_unavailability(session: Session, actor: Actor, period_id: int) -> None:
    """Remove an unavailable period (the expert, or admins and staff)."""
    row = session.get(ExpertUnavailability, period_id)
    if row is None:
        raise NotFound(f"no unavailable period {period_id}")
    _check_own(actor, row.user_id)
    audit.append(session, actor=actor.username, action="expert.available",
                 payload={"user_id": row.user_id, "id": row.id})
    session.delete(row)
    session.flush()


def unavailability(session: Session, user_id: int) -> list[ExpertUnavailability]:
    """Return an expert's unavailable periods, by start."""
    query = select(ExpertUnavailability).where(ExpertUnavailability.user_id == user_id)
    return list(session.execute(query.order_by(ExpertUnavailability.starts_at, ExpertUnavailability.id)).scalars())


def _experts(session: Session, profiles: list[ExpertProfile]) -> list[Expert]:
    ids = [p.user_id for p in profiles]
    users = {u.id: u for u in session.execute(select(User).where(User.id.in_(ids))).scalars()}
    codes: dict[int, list[str]] = {}
    for link in session.execute(select(ExpertClass).where(ExpertClass.user_id.in_(ids))
                                .order_by(ExpertClass.code)).scalars():
        codes.setdefault(link.user_id, []).append(link.code)
    org_ids = {p.region_id for p in profiles}
    orgs = {o.id: o for o in session.execute(select(Organisation).where(Organisation.id.in_(org_ids))).scalars()}
    return [Expert(p.user_id, users[p.user_id].username, users[p.user_id].display_name, p,
                   tuple(codes.get(p.user_id, ())), p.employer_name,
                   orgs[p.region_id].name if p.region_id in orgs else "") for p in profiles]


def get_expert(session: Session, actor: Actor, user_id: int) -> Expert:
    """Return one expert: readers of the pool see anyone, an expert only themselves."""
    profile = _profile(session, user_id)
    if not (actor.username == "system" or any(actor.has_role(r) for r in READERS)
            or (actor.has_role("expert") and actor.user_id == user_id)):
        raise PermissionDenied(f"{actor.username} may not see expert {user_id}")
    return _experts(session, [profile])[0]


def search(session: Session, actor: Actor, *, text: str = "", class_code: str = "", status: str = "",
           page: int = 1, per_page: int = 30) -> tuple[list[Expert], int]:
    """Search the pool by name/employer, class and status (readers of the pool)."""
    if actor.username != "system" and not any(actor.has_role(r) for r in READERS):
        raise PermissionDenied(f"{actor.username} may not search the expert pool")
    query = select(ExpertProfile).join(User, User.id == ExpertProfile.user_id)
    if text.strip():
        like = f"%{text.strip()}%"
        query = query.where(or_(User.display_name.like(like), User.username.like(like),
                                ExpertProfile.employer_name.like(like)))
    if class_code:
        members = select(ExpertClass.user_id).where(ExpertClass.code == class_code)
        query = query.where(ExpertProfile.user_id.in_(members))
    if status == "untrained":
        query = query.where(ExpertProfile.trained_on.is_(None))
    elif status in STATUSES:
        query = query.where(ExpertProfile.status == status)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(ExpertProfile.user_id).limit(per_page)
                           .offset((max(page, 1) - 1) * per_page)).scalars()
    return _experts(session, list(rows)), total


def pool_health(session: Session, *, minimum: int = MIN_PER_CLASS) -> list[ClassHealth]:
    """Count the active, trained, unsuspended experts of every level-2 class; flag those below ``minimum``."""
    now = clock.now()
    ready = (select(ExpertClass.code, func.count().label("n"))
             .join(ExpertProfile, ExpertProfile.user_id == ExpertClass.user_id)
             .join(User, User.id == ExpertProfile.user_id)
             .where(User.active.is_(True), ExpertProfile.trained_on.is_not(None),
                    or_(ExpertProfile.status == "active", ExpertProfile.suspended_until <= now))
             .group_by(ExpertClass.code))
    counts = dict(session.execute(ready).all())
    return [ClassHealth(c.code, c.name, class_label(c.parent or ""), counts.get(c.code, 0),
                        counts.get(c.code, 0) < minimum) for c in level2()]


# The demo pool: deterministic names, classes, employers and counties.
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
_GIVEN = ("建国", "秀英", "志强", "海燕", "立新", "春梅", "国华", "丽娟", "文斌", "晓东", "红霞", "振华", "玉兰",
          "德明", "桂芳", "永红", "俊杰", "淑珍", "卫东", "雪梅")
_DEMO_CLASSES = (("A01",), ("D01",), ("A01", "A02"), ("A01",), ("D01", "D02"), ("A03",), ("A04",), ("C03", "A01"),
                 ("A01",), ("D01",), ("B01",), ("C02",))
_EMPLOYERS = ("兰州理工大学", "甘肃省建筑设计研究院有限公司", "张掖市建设工程造价管理站", "河西学院",
              "甘肃省交通规划勘察设计院股份有限公司", "张掖市水利水电勘测设计院")
_COUNTIES = ("zy-ganzhou", "zy-linze", "zy-gaotai", "zy-shandan", "zy-minle", "zy-sunan")
DEMO_EXPERTS = 60


def seed_demo_experts(session: Session, *, bidder_codes: tuple[str, ...] = (), count: int = DEMO_EXPERTS,
                      actor: Actor = SYSTEM, trained_on: date = date(2025, 3, 15)) -> list[Expert]:
    """Create the demo pool: ``count`` experts (every 11th untrained, the 8th suspended, every 9th employed by a
    demo bidder company), and admit the demo user ``expert`` when it exists; idempotent."""
    if session.execute(select(ExpertProfile.user_id).limit(1)).first():
        return []
    made = []
    for i in range(count):
        employer_code = bidder_codes[(i // 9) % len(bidder_codes)] if bidder_codes and i % 9 == 4 else None
        made.append(add_expert(
            session, actor, username=f"expert{i + 1:03d}",
            display_name=_SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i * 7 + i // 20) % len(_GIVEN)],
            classes=list(_DEMO_CLASSES[i % len(_DEMO_CLASSES)]), region_code=_COUNTIES[i % len(_COUNTIES)],
            employer_name="" if employer_code else _EMPLOYERS[i % len(_EMPLOYERS)], employer_code=employer_code,
            trained_on=None if i % 11 == 10 else trained_on, score=100 - (i % 5) * 3))
    suspend(session, actor, made[7].user_id, "评标中未按规定回避，暂停抽取（信用评价扣分）")
    demo_user = session.execute(select(User).where(User.username == "expert")).scalar_one_or_none()
    if demo_user is not None and "expert" in {r.role for r in demo_user.roles}:
        made.append(admit(session, actor, demo_user.id, classes=["A01", "D01"], region_code="zy-ganzhou",
                          employer_name="兰州交通大学", trained_on=trained_on))
    return made
