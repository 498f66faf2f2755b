"""Demo construction projects driven through ``construction_tender`` on a fixed clock (``ggzy demo``).

Each project follows one script: registration (by the demo tenderer, or the
demo agency acting for it), acceptance, filing, the acceptance witness, the
tender notice (checked by 住建's compliance tables), bidding, opening, the
committee, evaluation, the candidates' publicity, the award, the contract, the
report, the bond refunds, the result witness and the archive. The script is
cut after the project's target stage (:data:`STAGES`).

Dates. A script is a pure function of its registration day: every later day
is a working day on the official calendar (``engine.periods``) and every
statutory date is computed with the engine's own ``add_days``, so the tender
documents always pass the compliance tables. Each project is placed so that
its last scripted step falls on the latest working day *before* the day the
demo is seeded (``clock.now()``, truncated to the day in Shanghai): when the
real clock takes over, every timer still waiting (bid deadline, sale closing,
publicity or contract limits) lies in the future, so the first sweep of the
served demo fires nothing and each project stays at its stage. The scripts of
all projects are merged and run in time order on one :class:`FixedClock`;
a sweep (``engine.timers.sweep``) at a scripted instant fires whatever is due.

Determinism. The organisations, people, names, estimates, bid prices, forms
and document bytes are constants; file contents carry no date, so their
sha256 never changes; trading codes follow from the fixed registration order.
Two runs on the same day produce identical data; runs on other days produce
the same data with the same dates relative to the seeding day (up to the
working-day and holiday adjustments of the official calendar).

Who acts. Tasks of the staff lane are completed by the demo staff user of the
project's centre, of the regulator lane by the 住建 regulator, of the
tenderer lane by the user who registered the project (the tenderer, or the
agency acting for it). Bids are real: each demo bidder company's user
registers, pays its bond through the demo bank, submits a bid sealed with its
certificate and decrypts it at the opening (``engine.demo_bids``). The committee is
drawn for real from the demo expert pool (``engine.draw``, a fixed nonce per project)
and its experts confirm; the diagram's ``store_committee`` checks the draw. The
evaluation is real too (``engine.evaluation``): the centre's staff start it (stage
``evaluating``: the committee is unsealed and each member holds a demo CA certificate,
its key file under ``$GGZY_HOME/demo-keys/``), the members review, score and sign the
report, and the diagram takes the report's candidates (``collect_evaluation_report``).
The project left at ``evaluating`` is where a seated expert logs in (``engine.demo_experts``)
and finds their empty qualification sheet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

import engine.notices  # noqa: F401 - registers the publish_notice service task
import engine.witness  # noqa: F401 - registers the record_witness service task
from engine import (
    award,
    clock,
    demo_bids,
    draw,
    evaluation,
    files,
    periods,
    pki,
    procedure,
    projects,
    runtime,
    seal,
    timers,
)
from engine.actors import SYSTEM, Actor, load_actor
from engine.context import Context
from engine.errors import EngineError
from engine.models import InboxTask, Instance, Organisation, Project, User
from engine.orgs import uscc_check_char

STAGES = ("registered", "accepted", "filed", "published", "bidding", "opened", "evaluating", "evaluated",
          "publicized", "awarded", "contracted", "archived")
# What each stage leaves open (the main line; escalations aside), for summaries of an existing database.
OPEN_AT = {"registered": {"accept_project"}, "accepted": {"review_filing"}, "filed": {"prepare_tender"},
           "published": {"clarify_or_amend"}, "bidding": {"clarify_or_amend"}, "opened": {"record_committee"},
           "evaluating": {"evaluate_bids"}, "evaluated": {"prepare_publicity"}, "publicized": {"confirm_award"},
           "awarded": {"witness_organisation"}, "contracted": {"report_to_department"}, "archived": set()}
TENDERER = "demo-tenderer"
AGENCY = "demo-agency"
# Demo users who act for each centre's staff lane and each department's regulator lane.
STAFF_OF = {"zy-centre": "staff", "zy-linze": "staff_linze", "zy-gaotai": "staff_gaotai"}
REGULATOR_OF = {"dept-zjj": "regulator"}
CONTACTS = {"tenderer": {"name": "陈伟", "phone": "0936-8212345", "email": "chenwei@zyct.example.cn"},
            "agency": {"name": "刘洋", "phone": "0931-8765432", "email": "liuyang@gszb.example.cn"}}


def _uscc(region: str, serial: int) -> str:
    """A valid 统一社会信用代码: 企业 (91), the region's code, a made-up organisation code, its check character."""
    first17 = f"91{region}MA7GGDM{serial:02d}"
    return first17 + uscc_check_char(first17)


@dataclass(frozen=True)
class Bidder:
    """A bidder company of the demo."""

    code: str
    name: str
    uscc: str


BIDDERS = (
    Bidder("demo-bidder-longyuan", "甘肃陇原建设工程有限公司", _uscc("620100", 1)),
    Bidder("demo-bidder-hexi", "张掖市河西路桥有限责任公司", _uscc("620702", 2)),
    Bidder("demo-bidder-qilian", "临泽县祁连建筑安装有限公司", _uscc("620723", 3)),
    Bidder("demo-bidder-heihe", "高台县黑河水利水电工程有限公司", _uscc("620724", 4)),
    Bidder("demo-bidder-silu", "甘肃丝路市政工程有限公司", _uscc("620102", 5)),
)


@dataclass(frozen=True)
class ProjectSpec:
    """One demo project: what is registered, who registers it, the bids, and the stage it is left at.

    ``bids`` are (index into BIDDERS, price as a fraction of the estimate); ``failed_bids`` > 0 runs a first
    round that receives only that many bids (fewer than 3: a failure notice and a second round).
    """

    key: str
    name: str
    location: str
    estimate: str
    stage: str
    registrant: str = "tenderer"
    sub_type: str = "works"
    funding: str = "state"
    qualification: str = ("具备建筑工程施工总承包三级及以上资质，具有有效的安全生产许可证；"
                          "拟派项目经理具备二级及以上注册建造师资格。")
    bids: tuple[tuple[int, str], ...] = ((0, "0.9562"), (1, "0.9718"), (2, "0.9805"))
    failed_bids: int = 0
    compliance_retry: bool = False
    amendment: bool = False
    label: str = ""


# The full scenario of `make demo`: projects at distinct stages, in the city centre (3000万 and more) and in
# the county sub-centres of 临泽 and 高台. The first one is also the project of `ggzy demo --until STAGE`.
SCENARIO = (
    ProjectSpec("pipe-gallery", "张掖市滨河新区综合管廊工程（一期）施工", "zy-ganzhou", "42860000.00", "archived",
                registrant="agency", compliance_retry=True,
                qualification="具备市政公用工程施工总承包一级及以上资质，具有有效的安全生产许可证；"
                              "拟派项目经理具备一级注册建造师（市政公用工程）资格。",
                bids=((0, "0.9531"), (1, "0.9684"), (4, "0.9712"), (2, "0.9826"))),
    ProjectSpec("linze-water", "临泽县城区供水管网改造工程", "zy-linze", "8000000.00", "contracted",
                bids=((2, "0.9563"), (0, "0.9650"), (1, "0.9763"))),
    ProjectSpec("gaotai-school", "高台县第一中学学生宿舍楼建设工程", "zy-gaotai", "9800000.00", "publicized",
                registrant="agency", bids=((3, "0.9608"), (1, "0.9655"), (2, "0.9790"))),
    ProjectSpec("city-hospital", "张掖市人民医院门诊医技综合楼建设工程", "zy-ganzhou", "36500000.00", "evaluated",
                bids=((1, "0.9596"), (0, "0.9637"), (4, "0.9701"), (3, "0.9844"))),
    ProjectSpec("gaotai-sewage", "高台县城南污水处理厂提标改造工程", "zy-gaotai", "12600000.00", "bidding",
                registrant="agency", amendment=True),
    ProjectSpec("linze-roads", "临泽县倪家营镇农村道路硬化工程", "zy-linze", "5200000.00", "published",
                failed_bids=2, bids=((2, "0.9588"), (1, "0.9702"), (3, "0.9755")), label="首次流标，第2次招标"),
    ProjectSpec("city-stadium", "张掖市全民健身中心体育馆建设工程", "zy-ganzhou", "31800000.00", "accepted"),
    ProjectSpec("linze-market", "临泽县农贸市场改造工程", "zy-linze", "4600000.00", "registered", registrant="agency"),
    ProjectSpec("linze-school", "临泽县第二中学教学综合楼建设工程", "zy-linze", "6800000.00", "evaluating",
                bids=((2, "0.9577"), (4, "0.9642"), (0, "0.9731")), label="评标中"),
)
MAIN = SCENARIO[0]


def with_stage(spec: ProjectSpec, stage: str) -> ProjectSpec:
    """The spec driven to another stage (``ggzy demo --until``)."""
    if stage not in STAGES:
        raise EngineError(f"unknown demo stage {stage!r}; stages are {', '.join(STAGES)}")
    return replace(spec, stage=stage, label="")


@dataclass(frozen=True)
class DemoProject:
    """A seeded project, for the summary ``ggzy demo`` prints."""

    code: str
    name: str
    stage: str
    centre_code: str
    centre_name: str
    estimate: Decimal
    label: str = ""


# ---------------------------------------------------------------------------------------------------- the script

@dataclass(frozen=True)
class Round:
    """The dates of one tender round."""

    number: int
    issued: datetime
    until: datetime
    deadline: datetime


@dataclass(frozen=True)
class Step:
    """One scripted step: ``register``, ``sweep`` or the element id of a task to complete; ``stage`` reached."""

    at: datetime
    action: str
    stage: str | None = None
    data: Callable[[Run, Session], dict[str, Any]] | None = None


def _at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), clock.SHANGHAI)


def _work(day: date) -> date:
    """The day itself if it is a working day, else the next working day."""
    while not periods.is_working_day(day):
        day += timedelta(days=1)
    return day


def _instant(value: str) -> datetime:
    return periods.to_datetime(value).astimezone(clock.SHANGHAI)


def _iso(instant: datetime) -> str:
    return instant.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")


def _round(number: int, issue_day: date) -> Round:
    """Documents issued at 10:00, on sale until 17:00 of the working day after the 5-day period (条例 §16),
    bids due at 09:30 of the first working day after the 20-day period (法 §24) — computed as the tables do."""
    issued = _at(issue_day, 10)
    until = _at(_work(periods.last_day(periods.add_days(issued, 5)) + timedelta(days=1)), 17)
    deadline = _at(_work(_instant(periods.add_days(issued, 20)).date()), 9, 30)
    return Round(number, issued, until, deadline)


def plan(spec: ProjectSpec, start: date) -> list[Step]:
    """Return the whole script of a project registered on ``start``, each step marked with the stage it ends."""
    one, second = timedelta(days=1), timedelta(seconds=1)
    steps = [Step(_at(start, 9, 30), "register", "registered"),
             Step(_at(start, 15), "accept_project", "accepted", _accept)]
    day = _work(start + one)
    steps += [Step(_at(day, 10), "review_filing", None, _filing),
              Step(_at(day, 15), "witness_acceptance", "filed", _witness_acceptance)]
    day = _work(day + 2 * one)
    rounds = 2 if spec.failed_bids else 1
    for number in range(1, rounds + 1):
        tender_round = _round(number, day)
        if spec.compliance_retry and number == 1:
            steps.append(Step(_at(day, 9), "prepare_tender", None, _tender(tender_round, compliant=False)))
        steps += [Step(tender_round.issued, "prepare_tender", "published", _tender(tender_round)),
                  Step(_at(_work(day + one), 10), "clarify_or_amend", "bidding", _clarification(spec)),
                  Step(_at(_work(day + one), 11), "submit_bids", "bidding"),
                  Step(tender_round.until + second, "sweep"),
                  Step(tender_round.deadline + second, "sweep")]
        if number == rounds:  # a failed round (fewer than 3 bids) is not opened (条例 §44)
            steps += [Step(tender_round.deadline + timedelta(minutes=5), "decrypt_bids"),
                      Step(tender_round.deadline + timedelta(minutes=31), "sweep"),
                      Step(tender_round.deadline + timedelta(minutes=40), "confirm_opening", "opened",
                           _confirm_opening)]
        day = _work(tender_round.deadline.date() + 2 * one)
    opened = tender_round.deadline
    reported = _at(opened.date(), 16)
    steps += [Step(opened + timedelta(hours=1), "record_committee", None, _committee),
              Step(opened + timedelta(hours=2), "start_evaluation", "evaluating"),
              Step(reported, "evaluate_bids", "evaluated", _evaluation)]
    day = _work(opened.date() + one)
    if day > periods.last_day(periods.add_days(reported, 3)):  # 条例 §54: within 3 days of the report
        day = opened.date() + one
    publicity = _at(day, 10)
    ends = _instant(periods.add_days(publicity, 3))
    steps += [Step(publicity, "prepare_publicity", None, _publicity),
              Step(ends + second, "sweep", "publicized")]
    award = _work(ends.date())
    steps += [Step(_at(award, 10), "confirm_award", "awarded", _award),
              Step(_at(award, 15), "witness_organisation", None, _witness_organisation)]
    contract = _work(award + 5 * one)
    report = _work(contract + one)
    refunds = _work(report + one)
    steps += [Step(_at(contract, 10), "sign_contract", "contracted", _contract),
              Step(_at(report, 10), "report_to_department", None, _report),
              Step(_at(refunds, 10), "send_bond_refunds", None, _refunds),
              Step(_at(refunds, 15), "witness_archive", None, _witness_archive),
              Step(_at(_work(refunds + one), 10), "file_archive", "archived", _archive)]
    return steps


def cut(steps: list[Step], stage: str) -> list[Step]:
    """Return the script up to the (last) step that reaches ``stage``."""
    if stage not in STAGES:
        raise EngineError(f"unknown demo stage {stage!r}; stages are {', '.join(STAGES)}")
    last = max(i for i, step in enumerate(steps) if step.stage == stage)
    return steps[:last + 1]


def place(spec: ProjectSpec, today: date) -> list[Step]:
    """Return the project's script cut at its stage, registered on the latest working day that ends it before
    ``today`` (00:00 Shanghai)."""
    limit = _at(today, 0)
    for back in range(1, 800):
        start = today - timedelta(days=back)
        if not periods.is_working_day(start):
            continue
        steps = cut(plan(spec, start), spec.stage)
        if steps[-1].at < limit:
            return steps
    raise EngineError(f"demo project {spec.key}: no start day found")  # pragma: no cover - 800 days suffice


# ------------------------------------------------------------------------------------------------- the driver

@dataclass
class Run:
    """A project being driven: its spec, rows and the files stored for it."""

    ctx: Context
    spec: ProjectSpec
    index: int
    project_id: int | None = None
    instance_id: int | None = None
    code: str = ""
    centre_code: str = ""
    department_code: str = ""
    rounds: dict[int, Round] = field(default_factory=dict)

    def store(self, session: Session, actor: Actor, name: str, title: str, *, video: bool = False) -> dict:
        """Store a small deterministic document (PDF, or MP4 for recordings) as ``actor``; return its form value."""
        label = f"ggzy demo / {self.spec.key} / {title}"
        data = _mp4(label) if video else _pdf(label)
        media_type = "video/mp4" if video else files.PDF
        return files.value_of(files.store(session, data, name, media_type, actor, config=self.ctx.config))

    @property
    def estimate(self) -> Decimal:
        return Decimal(self.spec.estimate)

    @property
    def bid_bond(self) -> Decimal:
        """1.5% of the estimate, rounded down to 1000 yuan (条例 §26: at most 2%)."""
        return (self.estimate * Decimal("0.015") / 1000).to_integral_value(ROUND_DOWN) * 1000

    def round_bids(self) -> list[tuple[Bidder, Decimal]]:
        """The bids of the current round: a failed first round receives only ``failed_bids`` of them."""
        failed = self.spec.failed_bids and len(self.rounds) < 2
        return self.bids()[:self.spec.failed_bids] if failed else self.bids()

    def bids(self) -> list[tuple[Bidder, Decimal]]:
        """The bids of the last round: (bidder, price rounded to 100 yuan)."""
        return [(BIDDERS[i], (self.estimate * Decimal(f) / 100).to_integral_value(ROUND_HALF_UP) * 100)
                for i, f in self.spec.bids]

    def candidates(self) -> list[tuple[Bidder, Decimal]]:
        return sorted(self.bids(), key=lambda bid: bid[1])[:3]


def drive(ctx: Context, specs: list[ProjectSpec] | tuple[ProjectSpec, ...], today: date) -> list[DemoProject]:
    """Run the scripts of ``specs`` merged in time order on a fixed clock; return the projects as left, in the
    order they were registered."""
    runs = [Run(ctx, spec, i) for i, spec in enumerate(specs)]
    scripts = [place(spec, today) for spec in specs]
    events = sorted(((step.at, run.index, n, step) for run, script in zip(runs, scripts, strict=True)
                     for n, step in enumerate(script)), key=lambda e: e[:3])
    fixed = clock.current()
    if not isinstance(fixed, clock.FixedClock):
        raise EngineError("the demo script runs on a FixedClock")
    for at, index, _, step in events:
        fixed.set(at)
        run = runs[index]
        if step.action == "register":
            _register(run)
        elif step.action == "submit_bids":
            demo_bids.submit(run)
        elif step.action == "decrypt_bids":
            demo_bids.decrypt(run)
        elif step.action == "start_evaluation":
            _start_evaluation(run)
        elif step.action == "sweep":
            result = timers.sweep(ctx.sessions, at)
            if result.errors:
                raise EngineError(f"demo timer sweep at {_iso(at)} failed: {result.errors}")
        else:
            _complete(run, step)
    with ctx.sessions() as s:
        return [_summary(s, run.project_id, run.spec.stage, run.spec.label)
                for run in sorted(runs, key=lambda r: r.project_id)]


def first_day(specs: list[ProjectSpec] | tuple[ProjectSpec, ...], today: date) -> date:
    """The earliest registration day of the scripts (the demo's organisations are created the day before)."""
    return min(place(spec, today)[0].at.date() for spec in specs)


def _register(run: Run) -> None:
    spec = run.spec
    with run.ctx.sessions.begin() as s:
        actor = load_actor(s, spec.registrant)
        documents = [{"title": "项目审批（核准）文件", "file": run.store(s, actor, "立项批复.pdf", "approval")},
                     {"title": "资金来源证明", "file": run.store(s, actor, "资金来源证明.pdf", "funding")}]
        project = projects.register_project(
            s, actor, name=spec.name, location_code=spec.location, category="construction", sub_type=spec.sub_type,
            estimate=spec.estimate, funding=spec.funding, tenderer_code=TENDERER,
            agency_code=AGENCY if spec.registrant == "agency" else None, contacts=CONTACTS[spec.registrant],
            documents=documents)
        run.project_id, run.instance_id, run.code = project.id, project.instance_id, project.code
        run.centre_code = s.get(Organisation, project.centre_id).code
        run.department_code = s.get(Organisation, project.department_id).code


def _complete(run: Run, step: Step) -> None:
    with run.ctx.sessions.begin() as s:
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == run.instance_id,
                                                 InboxTask.element_id == step.action)).scalars().first()
        if task is None:
            open_now = sorted(s.execute(select(InboxTask.element_id)
                                        .where(InboxTask.instance_id == run.instance_id)).scalars())
            raise EngineError(f"demo project {run.spec.key}: {step.action} is not open at {_iso(step.at)} "
                              f"(open: {', '.join(open_now) or 'none'})")
        actor = _actor(s, run, task.role)
        runtime.complete_task(s, task.task_id, step.data(run, s) if step.data else {}, actor)
    with run.ctx.sessions() as s:
        instance = s.get(Instance, run.instance_id)
        if instance.status not in ("running", "waiting", "completed"):
            raise EngineError(f"demo project {run.spec.key}: instance {instance.id} is {instance.status} after "
                              f"{step.action}: {instance.error}")


def _actor(session: Session, run: Run, role: str) -> Actor:
    """The demo user who acts on a lane of this project (the system actor for the personal lanes)."""
    if role == "staff":
        return load_actor(session, STAFF_OF[run.centre_code])
    if role == "regulator":
        return load_actor(session, REGULATOR_OF[run.department_code])
    if role == "tenderer":
        return load_actor(session, run.spec.registrant)
    return SYSTEM  # bidder, expert: personal lanes nobody can be assigned to yet


# ------------------------------------------------------------------------------------------- the form data

def _accept(run: Run, session: Session) -> dict:
    return {"acceptance_decision": "accept", "acceptance_comments": "登记材料齐全，予以受理。"}


def _filing(run: Run, session: Session) -> dict:
    year = clock.local_now().year
    return {"filing_decision": "file", "filing_number": f"ZYZJ-BA-{year}-{run.index + 1:03d}",
            "filing_reasons": "招标方案符合规定，准予备案。"}


def _evidence(run: Run, session: Session, title: str, label: str, *, video: bool = False) -> list[dict]:
    staff = load_actor(session, STAFF_OF[run.centre_code])
    items = [{"kind": "document", "file": run.store(session, staff, f"{title}.pdf", label), "note": title}]
    if video:
        items.append({"kind": "video", "file": run.store(session, staff, "开标评标录像.mp4", f"{label}, recording",
                                                          video=True), "note": "开标、评标全过程录像"})
    return items


def _witness_acceptance(run: Run, session: Session) -> dict:
    return {"acceptance_checklist": {"registration_complete": True, "identity_verified": True,
                                     "filing_received": True, "remarks": "受理、备案过程符合规定。"},
            "acceptance_evidence": _evidence(run, session, "受理见证记录", "acceptance witness")}


def _tender(tender_round: Round, *, compliant: bool = True) -> Callable[[Run, Session], dict]:
    def data(run: Run, session: Session) -> dict:
        run.rounds[tender_round.number] = tender_round
        actor = load_actor(session, run.spec.registrant)
        bond = run.bid_bond if compliant else run.estimate * Decimal("0.03")
        suffix = f"（第{tender_round.number}次）" if tender_round.number > 1 else ""
        return {
            "notice_text": f"{run.spec.name}已由张掖市发展和改革委员会批准建设，招标人为张掖市城市建设投资有限公司，"
                           f"建设资金来自国有资金，项目已具备招标条件，现对该项目施工进行公开招标{suffix}。",
            "qualification_conditions": run.spec.qualification,
            "evaluation_method": "comprehensive",
            "evaluation_weights": [{"factor": "投标报价", "weight": 60}, {"factor": "施工组织设计", "weight": 30},
                                   {"factor": "企业信誉", "weight": 10}],
            "bid_bond": f"{bond:.2f}", "performance_bond_percent": "10",
            "documents_issued_at": _iso(tender_round.issued), "documents_available_until": _iso(tender_round.until),
            "bid_deadline": _iso(tender_round.deadline), "opening_time": _iso(tender_round.deadline),
            "opening_place": f"{_centre_name(session, run)}开标室（不见面开标）",
            "tender_documents": run.store(session, actor, f"招标文件{suffix}.pdf",
                                          f"tender documents, round {tender_round.number}"),
        }
    return data


def _clarification(spec: ProjectSpec) -> Callable[[Run, Session], dict]:
    def data(run: Run, session: Session) -> dict:
        if spec.amendment:
            actor = load_actor(session, spec.registrant)
            return {"clarification_kind": "amendment", "affects_bids": True,
                    "clarification_content": "招标文件第五章工程量清单第3.2节：格栅间设备数量由2台调整为3台，"
                                             "其余内容不变。投标截止时间不变。",
                    "clarification_documents": [{"title": "工程量清单修改",
                                                 "file": run.store(session, actor, "工程量清单修改.pdf", "amendment")}]}
        return {"clarification_kind": "clarification", "affects_bids": False,
                "clarification_content": "答疑：招标文件第三章评标办法中“类似工程业绩”指近三年已竣工的同类工程。"}
    return data


def _confirm_opening(run: Run, session: Session) -> dict:
    return {"opening_record_confirmed": True, "opening_remarks": "开标过程无异议，全部投标文件已按时解密。"}


def _committee(run: Run, session: Session) -> dict:
    """The centre's staff draw the committee on 住建's plan, avoiding the round's bidders (as ``/draws/new`` does),
    with a fixed nonce (so the draw is reproducible), and every drawn expert confirms."""
    staff = load_actor(session, STAFF_OF[run.centre_code])
    plan = draw.committee_plan(session, run.project_id)
    chosen = draw.draw_committee(session, run.project_id, plan, staff,
                                 excluded_organisation_ids=procedure.opening_bidder_ids(session, run.project_id),
                                 evaluation_at=clock.now() + timedelta(hours=2),
                                 nonce=f"ggzy-demo-{run.spec.key}-{max(run.rounds)}")
    for seat in draw.seats_of(session, chosen.id):
        expert = session.get(User, seat.expert_id)
        draw.respond(session, seat.id, load_actor(session, expert.username), accept=True)
    return {"committee_drawn": True, "committee_remarks": f"抽取 #{chosen.id}，抽中的专家均已确认参加评标。"}


def _start_evaluation(run: Run) -> None:
    """The centre's staff start the evaluation (``engine.evaluation``: the committee is unsealed, the bids and the
    method frozen); each member gets a demo CA certificate with its key file (to sign the report in the browser)."""
    with run.ctx.sessions.begin() as s:
        started = evaluation.start_evaluation(s, run.project_id, load_actor(s, STAFF_OF[run.centre_code]))
        _member_keys(run, s, started.members)


def _member_keys(run: Run, session: Session, members: list[int]) -> list[tuple[Actor, Any]]:
    """Each member's actor and private key: a demo CA certificate, issued on first use, its PKCS#8 key under
    ``$GGZY_HOME/demo-keys/<username>.key.pem``."""
    demo = pki.seed_demo_pki(session, run.ctx.config.home)
    keyed = []
    for user_id in members:
        user = session.get(User, user_id)
        key_path = demo.home / "demo-keys" / f"{user.username}.key.pem"
        if pki.active_certificate(session, user.id) is None or not key_path.exists():
            _, key_path = pki.issue_demo_certificate(session, demo, user, None)
        keyed.append((load_actor(session, user.username), seal.load_private_key(key_path.read_bytes())))
    return keyed


def _evaluation(run: Run, session: Session) -> dict:
    """The evaluation started (``start_evaluation``): every member passes every bid, gives each non-price factor 80%
    of its weight (so the price score ranks the bids) and signs the report with their demo CA certificate."""
    started = evaluation.of_project(session, run.project_id)
    if started is None:
        raise EngineError(f"demo project {run.spec.key}: the evaluation was not started")
    bid_ids = [b["bid_id"] for b in started.bids]
    passed = {str(b): {c["key"]: {"passed": True, "reason": ""} for c in started.parameters["criteria"]}
              for b in bid_ids}
    scored = {str(b): {f["key"]: f"{Decimal(f['max']) * Decimal('0.8'):.2f}" for f in started.parameters["factors"]}
              for b in bid_ids}
    members = _member_keys(run, session, started.members)
    for kind, sheet in (("qualification", passed), ("scoring", scored)):
        for actor, _ in members:
            if evaluation.get(session, started.id).status == kind:
                evaluation.save_sheet(session, started.id, actor, kind, sheet, submit=True)
    digest = bytes.fromhex(evaluation.report_of(session, evaluation.get(session, started.id)).sha256)
    for actor, key in members:
        evaluation.sign_report(session, started.id, actor, key.sign(digest, ec.ECDSA(hashes.SHA256())))
    return {"evaluation_signed": True,
            "evaluation_summary": "评标委员会按综合评估法评审，全体成员已签署评标报告，推荐中标候选人3名。"}


def _publicity(run: Run, session: Session) -> dict:
    return {"publicity_text": f"{run.spec.name}评标工作已结束，现将评标委员会推荐的中标候选人公示如下，"
                              "公示期内投标人或其他利害关系人可提出异议。", "publicity_days": 3}


def _award(run: Run, session: Session) -> dict:
    winner, price = run.candidates()[0]
    actor = load_actor(session, run.spec.registrant)
    return {"winner_name": winner.name, "winner_uscc": winner.uscc, "winning_price": f"{price:.2f}",
            "award_notice": run.store(session, actor, "中标通知书.pdf", "award notice"),
            "award_reason": "国有资金占控股地位，确定排名第一的中标候选人为中标人（条例第五十五条）。"}


def _witness_organisation(run: Run, session: Session) -> dict:
    # the tenderer delivers the award and result letters (法 §45) the diagram wrote at the award
    award.seal_letters(session, run.project_id, load_actor(session, run.spec.registrant), config=run.ctx.config)
    return {"organisation_checklist": {"notices_published": True, "opening_witnessed": True,
                                       "committee_drawn": True, "evaluation_recorded": True,
                                       "publicity_complete": True, "remarks": "开标、评标全过程录音录像。"},
            "organisation_evidence": _evidence(run, session, "组织见证记录", "organisation witness", video=True)}


def _contract(run: Run, session: Session) -> dict:
    _, price = run.candidates()[0]
    actor = load_actor(session, run.spec.registrant)
    return {"contract_price": f"{price:.2f}", "performance_bond": f"{price * Decimal('0.10'):.2f}",
            "contract_document": run.store(session, actor, "施工合同.pdf", "contract")}


def _report(run: Run, session: Session) -> dict:
    actor = load_actor(session, run.spec.registrant)
    return {"tender_report": run.store(session, actor, "招标投标情况书面报告.pdf", "tender report"),
            "report_summary": "招标投标活动依法进行，中标结果已公示，合同已签订。"}


def _refunds(run: Run, session: Session) -> dict:
    """The refund instructions were computed by ``compute_bond_refunds``; the demo confirms them as sent (the
    demo bank, ``ggzy bonds banksim``, is not running while the demo is seeded: staff send them afterwards from
    the project's bonds page, or with ``ggzy bonds send-refunds CODE``)."""
    return {"refunds_sent": True,
            "refund_remarks": "演示：退还指令已生成，在项目保证金页发送给演示银行（ggzy bonds banksim）。"}


def _witness_archive(run: Run, session: Session) -> dict:
    return {"archive_checklist": {"contract_signed": True, "report_filed": True, "bonds_refunded": True},
            "archive_evidence": _evidence(run, session, "结果见证记录", "result witness")}


def _archive(run: Run, session: Session) -> dict:
    return {"archive_number": f"{run.code}-DA", "archive_remarks": "电子档案已归档。"}


def _centre_name(session: Session, run: Run) -> str:
    return session.execute(select(Organisation.name).where(Organisation.code == run.centre_code)).scalar_one()


# ----------------------------------------------------------------------------------------------- summaries

def _summary(session: Session, project_id: int, stage: str, label: str = "") -> DemoProject:
    project = session.get(Project, project_id)
    centre = session.get(Organisation, project.centre_id)
    return DemoProject(project.code, project.name, stage, centre.code, centre.name, project.estimate, label)


def stage_of(session: Session, project: Project) -> str:
    """The stage a project's instance is at, from its open tasks (``published`` and ``bidding`` look alike)."""
    instance = session.get(Instance, project.instance_id) if project.instance_id else None
    if instance is None:
        return project.status
    if instance.status == "completed":
        return "archived"
    open_now = set(session.execute(select(InboxTask.element_id)
                                   .where(InboxTask.instance_id == instance.id)).scalars())
    for stage in reversed(STAGES):  # the furthest main-line task decides; escalations are aside
        if OPEN_AT[stage] & open_now:
            return stage
    if "witness_acceptance" in open_now:
        return "accepted"
    if "complete_registration" in open_now:
        return "registered"
    return instance.status


def existing(session: Session) -> list[DemoProject]:
    """The projects of an already seeded database, with the stage read from their instances."""
    rows = session.execute(select(Project).order_by(Project.id)).scalars().all()
    return [_summary(session, p.id, stage_of(session, p)) for p in rows]


# ------------------------------------------------------------------------------------------------- documents

def _pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` (ASCII), byte-for-byte the same on every run (no dates, no ids)."""
    safe = text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    content = f"BT /F1 12 Tf 56 780 Td ({safe}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
               b"/Contents 5 0 R >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _mp4(text: str) -> bytes:
    """A stand-in recording: an MP4 ``ftyp`` box and a ``free`` box carrying ``text``."""
    payload = json.dumps({"demo": text}).encode()
    return (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
            + (8 + len(payload)).to_bytes(4, "big") + b"free" + payload)
