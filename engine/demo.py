"""Demo data: the Zhangye organisations, one user per role, the example processes, instances in every state.

``seed`` creates the organisations (the Zhangye centres and departments, the
demo tenderer and agency, the bidder companies of ``engine.demo_projects``) and
the demo users, deploys the definitions — the trading catalog as the 发改
regulator (``dept-fgw`` owns it), the ``ct_*`` compliance tables as the 住建
regulator (``dept-zjj`` owns them), the rest as the system — and drives the
construction projects of ``engine.demo_projects`` through the procedure on a
fixed clock: the full scenario, or one project up to ``until``. The full
scenario also starts the ``document_review`` instances in every state. The
clock installed before seeding is installed back at the end. The logins are the
demo users, each demo bidder company's user, and the experts seated on a
committee whose evaluation is under way (``engine.demo_experts``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, demo_bids, demo_experts, demo_projects, runtime, timers
from engine.actors import SYSTEM, add_user, load_actor
from engine.bonds_cli import seed_demo_bonds
from engine.context import Context
from engine.deploy import collect, deploy
from engine.experts import seed_demo_experts
from engine.market import seed_demo_market
from engine.models import InboxTask, User
from engine.orgs import add_organisation, seed_zhangye
from engine.pki import seed_demo_pki

ROOT = Path(__file__).resolve().parent.parent
CONTENT = [ROOT / "rules", ROOT / "forms", ROOT / "bpmn"]
CATALOG_RULES = [ROOT / "rules" / "catalog.dmn", ROOT / "rules" / "catalog_level.dmn"]
COMPANY_USCC = "91350100M000100Y43"
AGENCY_USCC = "91110000600037341L"
# (username, display name, roles, organisation code, lead)
DEMO_USERS = [
    ("admin", "平台管理员", ["admin"], "zy-centre", False),
    ("staff", "王敏（市中心）", ["staff"], "zy-centre", True),
    ("staff_linze", "李强（临泽县分中心）", ["staff"], "zy-linze", False),
    ("staff_gaotai", "马丽（高台县分中心）", ["staff"], "zy-gaotai", False),
    ("regulator", "赵静（市住建局）", ["regulator"], "dept-zjj", False),
    ("fgw", "杨帆（市发改委）", ["regulator"], "dept-fgw", False),
    ("tenderer", "陈伟（张掖市城投公司）", ["tenderer"], "demo-tenderer", False),
    ("agency", "刘洋（甘肃某招标代理）", ["agency"], "demo-agency", False),
    ("bidder", "孙涛（某建设集团）", ["bidder"], None, False),
    ("expert", "周教授", ["expert"], None, False),
    ("auditor", "吴审计（市纪委监委）", ["auditor"], "sup-jw", False),
]
SUBMISSION = {"project_name": "张掖市甘州区滨河路道路改造工程", "page_count": 120, "estimate": "4860000.00",
              "summary": "道路改造施工图设计文件及预算"}
DemoProject = demo_projects.DemoProject
STAGES = demo_projects.STAGES


@dataclass(frozen=True)
class DemoLogin:
    """A demo user's login, printed when the demo starts."""

    username: str
    display_name: str
    roles: list[str]
    password: str


@dataclass(frozen=True)
class Seeded:
    """What ``seed`` made (or found): the logins and the construction projects."""

    logins: list[DemoLogin]
    projects: list[DemoProject] = field(default_factory=list)
    unchanged: bool = False


def seed(ctx: Context, *, until: str | None = None) -> Seeded:
    """Seed a fresh database with demo data: the full scenario, or one project driven up to ``until``.

    A database that already has the demo's admin is left as it is (its projects are summarised).
    """
    ctx.initialise()
    specs = list(demo_projects.SCENARIO) if until is None else [demo_projects.with_stage(demo_projects.MAIN, until)]
    with ctx.sessions() as s:
        if s.execute(select(User.id).where(User.username == "admin")).first():
            bidders = demo_bids.logins(s, [b.code for b in demo_projects.BIDDERS])
            seated = demo_experts.logins(s, None, skip={u for u, *_ in DEMO_USERS})
            return Seeded([DemoLogin(u, d, r, "(unchanged)") for u, d, r, _, _ in DEMO_USERS]
                          + [DemoLogin(u, d, r, "(unchanged)") for u, d, r in bidders + seated],
                          demo_projects.existing(s), unchanged=True)
    password = os.environ.get("GGZY_DEMO_PASSWORD") or secrets.token_urlsafe(9)
    real = clock.current()
    today = clock.local_now().date()
    start = demo_projects.first_day(specs, today) - timedelta(days=1)
    try:
        clock.install(clock.FixedClock(datetime.combine(start, time(9), clock.SHANGHAI)))
        _organisations_users_definitions(ctx, password)
        projects = demo_projects.drive(ctx, specs, today)
    finally:
        clock.install(real)
    if until is None:
        _instances(ctx)
    timers.sweep(ctx.sessions, clock.now())
    with ctx.sessions.begin() as s:
        bidders = demo_bids.logins(s, [b.code for b in demo_projects.BIDDERS])
        seated = demo_experts.logins(s, password, skip={u for u, *_ in DEMO_USERS})  # on a committee at work
    return Seeded([DemoLogin(u, d, r, password) for u, d, r, _, _ in DEMO_USERS]
                  + [DemoLogin(u, d, r, password) for u, d, r in bidders + seated], projects)


def _organisations_users_definitions(ctx: Context, password: str) -> None:
    with ctx.sessions.begin() as s:
        orgs = seed_zhangye(s)
        orgs["demo-tenderer"] = add_organisation(s, "demo-tenderer", "张掖市城市建设投资有限公司", "company",
                                                 uscc=COMPANY_USCC)
        orgs["demo-agency"] = add_organisation(s, "demo-agency", "甘肃某工程招标代理有限公司", "agency",
                                               uscc=AGENCY_USCC)
        for bidder in demo_projects.BIDDERS:
            add_organisation(s, bidder.code, bidder.name, "company", uscc=bidder.uscc)
        for username, name, roles, org, lead in DEMO_USERS:
            add_user(s, username, roles, password=password, display_name=name,
                     organisation_id=orgs[org].id if org else None, lead=lead)
        seed_demo_market(s, [b.code for b in demo_projects.BIDDERS], load_actor(s, "regulator"))
        seed_demo_pki(s, ctx.config.home)
        demo_bids.seed_bidders(s, ctx.config.home, password, [b.code for b in demo_projects.BIDDERS])
        seed_demo_bonds(s, ctx.config.home)
        seed_demo_experts(s, bidder_codes=tuple(b.code for b in demo_projects.BIDDERS))
    with ctx.sessions.begin() as s:
        deploy(s, collect(CATALOG_RULES), load_actor(s, "fgw"))  # 发改 owns the trading catalog
        deploy(s, collect(sorted((ROOT / "rules").glob("ct_*.dmn"))), load_actor(s, "regulator"))  # 住建: compliance
        deploy(s, collect(CONTENT), SYSTEM)


def _instances(ctx: Context) -> None:
    real = clock.current()
    now = clock.now()
    try:
        clock.install(clock.FixedClock(now - timedelta(days=12)))
        overdue = _start(ctx, "滨河路道路改造工程文件审查（已超期）", submit=True)
        clock.install(clock.FixedClock(now - timedelta(days=1)))
        reviewing = _start(ctx, "甘州区第三中学教学楼文件审查", submit=True)
        done = _start(ctx, "临泽县供水管网改造文件审查", submit=True, centre="zy-linze")
        suspended = _start(ctx, "高台县农田水利工程文件审查", submit=False, centre="zy-gaotai")
        _start(ctx, "山丹县文化中心文件审查", submit=False)
    finally:
        clock.install(real)
    timers.sweep(ctx.sessions, clock.now())
    with ctx.sessions.begin() as s:
        staff = load_actor(s, "staff_linze")
        task = _open_task(s, done)
        runtime.complete_task(s, task.task_id, {"decision": "approve", "comments": "文件齐全，同意。"}, staff)
        runtime.suspend(s, suspended, "收到投诉，暂停核查（紧急纠错）", load_actor(s, "regulator"))
    assert overdue and reviewing


def _start(ctx: Context, title: str, *, submit: bool, centre: str = "zy-centre") -> int:
    with ctx.sessions.begin() as s:
        orgs = {o: _org_id(s, o) for o in (centre, "dept-zjj", "demo-tenderer")}
        tenderer = load_actor(s, "tenderer")
        instance = runtime.start_instance(
            s, "document_review", {}, tenderer, centre_id=orgs[centre], department_id=orgs["dept-zjj"],
            tenderer_id=orgs["demo-tenderer"], category="construction", title=title)
        if submit:
            runtime.complete_task(s, _open_task(s, instance.id).task_id, SUBMISSION, tenderer)
        return instance.id


def _org_id(session: Session, code: str) -> int:
    from engine.orgs import get_by_code

    return get_by_code(session, code).id


def _open_task(session: Session, instance_id: int) -> InboxTask:
    return session.execute(select(InboxTask).where(InboxTask.instance_id == instance_id)).scalars().first()
