"""The market-entity registry (R5, 不见纸质): company profiles, licences (资质), personnel, performance, commitments.

Companies are ``organisations`` of kind ``company`` (their 统一社会信用代码 is
checked in ``engine.orgs``). A bidder maintains its own company's records and
nobody else's; staff, regulators, experts, auditors and admins look them up
online instead of asking for paper. Records are never deleted: a withdrawn
licence, person, performance or commitment keeps its row, stamped with who
withdrew it and when. A signed commitment (承诺制) stands in for a named
document where the rules allow; its text is kept with its sha256.

Personal ID numbers (居民身份证号) are checked (GB 11643 check digit) and only
their last four characters are stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, ForeignKey, String, Text, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from engine import audit, clock, credit, fieldcheck
from engine.actors import SYSTEM, Actor
from engine.db import Base, Money, UTCDateTime
from engine.errors import InvalidState, NotFound, PermissionDenied
from engine.models import AuditEvent, Organisation, StoredFile
from engine.orgs import add_organisation, get_by_code, uscc_check_char

READERS = ("staff", "regulator", "expert", "auditor", "admin")
GRADES = ("特级", "一级", "二级", "三级", "甲级", "乙级", "丙级", "不分等级")
LICENCE_KINDS = ("建筑工程施工总承包", "市政公用工程施工总承包", "公路工程施工总承包", "水利水电工程施工总承包",
                 "机电工程施工总承包", "电力工程施工总承包", "建筑装修装饰工程专业承包", "地基基础工程专业承包",
                 "工程监理综合资质", "工程设计综合资质", "安全生产许可证")
PERSON_ROLES = ("项目经理", "技术负责人", "安全员", "施工员", "质量员", "造价员", "其他")
PROJECT_MANAGER = "项目经理"
CERTIFICATE_KINDS = ("一级注册建造师", "二级注册建造师", "注册监理工程师", "一级造价工程师",
                     "安全生产考核合格证书（B证）", "安全生产考核合格证书（C证）", "职称证书（高级工程师）")
FILE_TYPES = frozenset({"application/pdf", "application/ofd", "image/png", "image/jpeg"})
RECORDS = ("licence", "person", "performance", "commitment")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
MAX_PER_PAGE = 100


class CompanyProfile(Base):
    """A company's registered particulars (营业执照), one row per company."""

    __tablename__ = "company_profiles"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    legal_representative: Mapped[str] = mapped_column(String(100))
    registered_capital: Mapped[Decimal] = mapped_column(Money)
    address: Mapped[str] = mapped_column(String(300))
    established_on: Mapped[date] = mapped_column(Date)
    business_licence_sha256: Mapped[str | None] = mapped_column(ForeignKey("stored_files.sha256"))
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class _Record:
    """Columns every maintained record has: its company, who recorded it, and withdrawal."""

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    withdrawn_by: Mapped[str | None] = mapped_column(String(64))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Licence(_Record, Base):
    """A qualification certificate (资质): kind, grade, number, issuer and validity."""

    __tablename__ = "licences"

    kind: Mapped[str] = mapped_column(String(100))
    grade: Mapped[str] = mapped_column(String(16))
    number: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    file_sha256: Mapped[str | None] = mapped_column(ForeignKey("stored_files.sha256"))

    def valid_on(self, on: date) -> bool:
        """Tell whether the licence is in force (and not withdrawn) on a date."""
        return self.withdrawn_at is None and self.valid_from <= on <= self.valid_until


class Person(_Record, Base):
    """A member of a company's personnel (e.g. the 项目经理); the ID number is kept masked."""

    __tablename__ = "personnel"

    name: Mapped[str] = mapped_column(String(100))
    id_number_masked: Mapped[str] = mapped_column(String(18))
    role: Mapped[str] = mapped_column(String(32))
    certificates: Mapped[list[PersonCertificate]] = relationship(
        lazy="selectin", order_by="PersonCertificate.id", back_populates="person")


class PersonCertificate(Base):
    """A personal certificate (e.g. 一级注册建造师) with its number and validity."""

    __tablename__ = "personnel_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("personnel.id"), index=True)
    kind: Mapped[str] = mapped_column(String(100))
    number: Mapped[str] = mapped_column(String(100))
    valid_until: Mapped[date] = mapped_column(Date)
    file_sha256: Mapped[str | None] = mapped_column(ForeignKey("stored_files.sha256"))
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    person: Mapped[Person] = relationship(back_populates="certificates")


class Performance(_Record, Base):
    """A completed contract (业绩): project, tenderer, amount, completion date and proof."""

    __tablename__ = "performances"

    project_name: Mapped[str] = mapped_column(String(200))
    tenderer: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Money)
    completed_on: Mapped[date] = mapped_column(Date)
    proof_sha256: Mapped[str | None] = mapped_column(ForeignKey("stored_files.sha256"))


class Commitment(_Record, Base):
    """A signed commitment (承诺制) standing in for a named document; ``text_sha256`` covers the text."""

    __tablename__ = "commitments"

    stands_in_for: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    signer_name: Mapped[str] = mapped_column(String(100))


MODELS: dict[str, type[_Record]] = {"licence": Licence, "person": Person, "performance": Performance,
                                    "commitment": Commitment}


# ------------------------------------------------------------------------------------------------- access

def get_company(session: Session, organisation_id: int) -> Organisation:
    """Return a company (an organisation of kind ``company``)."""
    org = session.get(Organisation, organisation_id) if isinstance(organisation_id, int) else None
    if org is None or org.kind != "company":
        raise NotFound(f"没有企业 {organisation_id} (no such company)")
    return org


def may_read(actor: Actor, organisation_id: int) -> bool:
    """Tell whether the actor may look the company up: reading roles, and a bidder its own company."""
    return (actor.username == "system" or any(actor.has_role(r) for r in READERS)
            or (actor.has_role("bidder") and actor.organisation_id == organisation_id))


def check_read(session: Session, actor: Actor, organisation_id: int) -> Organisation:
    """Return the company if the actor may look it up, else refuse."""
    company = get_company(session, organisation_id)
    if not may_read(actor, organisation_id):
        raise PermissionDenied(f"{actor.username} 不能查看 {company.name} 的主体信息")
    return company


def check_maintain(session: Session, actor: Actor, organisation_id: int) -> Organisation:
    """Return the company if the actor maintains its records (a bidder of that company), else refuse."""
    company = get_company(session, organisation_id)
    if actor.username != "system" and not (actor.has_role("bidder") and actor.organisation_id == company.id):
        raise PermissionDenied(f"{actor.username} 只能维护本单位的主体信息，不能修改 {company.name} 的信息 "
                               "(bidders maintain only their own company's records)")
    return company


# ------------------------------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class ProfileInput:
    """The particulars of a business licence, as typed in."""

    legal_representative: str
    registered_capital: Decimal | str
    address: str
    established_on: date | str
    business_licence_sha256: str | None = None


@dataclass(frozen=True)
class LicenceInput:
    """A 资质 as typed in."""

    kind: str
    grade: str
    number: str
    issuer: str
    valid_from: date | str
    valid_until: date | str
    file_sha256: str | None = None


@dataclass(frozen=True)
class CertificateInput:
    """A personal certificate as typed in."""

    kind: str
    number: str
    valid_until: date | str
    file_sha256: str | None = None


@dataclass(frozen=True)
class PersonInput:
    """A person with their certificates, as typed in (the full ID number is never stored)."""

    name: str
    id_number: str
    role: str
    certificates: tuple[CertificateInput, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PerformanceInput:
    """A completed contract as typed in."""

    project_name: str
    tenderer: str
    amount: Decimal | str
    completed_on: date | str
    proof_sha256: str | None = None


@dataclass(frozen=True)
class CommitmentInput:
    """A commitment as typed in: what it stands in for, its text and the signer."""

    stands_in_for: str
    text: str
    signer_name: str


def mask_id_number(value: str, errors: fieldcheck.Errors, name: str = "id_number") -> str:
    """Check a 18-character 居民身份证号 (birth date and check digit) and return it masked but for the last 4."""
    number = (value or "").strip().upper() if isinstance(value, str) else ""
    if len(number) != 18 or not number[:17].isdigit():
        errors.setdefault(name, []).append("身份证号应为 18 位（前 17 位为数字）")
        return ""
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        errors.setdefault(name, []).append(f"身份证号中的出生日期 {number[6:14]} 无效")
        return ""
    expected = _ID_CHECK[sum(int(c) * w for c, w in zip(number[:17], _ID_WEIGHTS, strict=True)) % 11]
    if number[17] != expected:
        errors.setdefault(name, []).append(f"身份证号校验码应为 {expected}，不是 {number[17]}")
        return ""
    return "*" * 14 + number[14:]


def _file(session: Session, actor: Actor, sha256: str | None, name: str, errors: fieldcheck.Errors) -> str | None:
    """Return the sha256 of a scan the actor uploaded (a record must not expose someone else's file)."""
    if not sha256:
        return None
    row = session.get(StoredFile, sha256) if isinstance(sha256, str) else None
    if row is None:
        errors.setdefault(name, []).append(f"文件 {str(sha256)[:12]}… 未上传")
    elif row.media_type not in FILE_TYPES:
        errors.setdefault(name, []).append(f"文件应为 PDF、OFD 或图片，不是 {row.media_type}")
    elif not _uploaded_by(session, row, actor):
        errors.setdefault(name, []).append(f"文件 {sha256[:12]}… 不是 {actor.username} 上传的")
    else:
        return sha256
    return None


def _uploaded_by(session: Session, row: StoredFile, actor: Actor) -> bool:
    # The row names the first uploader only; every upload of the same bytes is in the audit log.
    if actor.username in ("system", row.uploaded_by):
        return True
    return session.execute(select(AuditEvent.seq).where(
        AuditEvent.action == "file.store", AuditEvent.actor == actor.username,
        AuditEvent.payload.contains(f'"sha256":"{row.sha256}"')).limit(1)).first() is not None


def _not_expired(until: date | None, name: str, errors: fieldcheck.Errors, what: str) -> None:
    if until and until < clock.local_now().date():
        errors.setdefault(name, []).append(f"{what}已于 {until} 过期")


def _not_future(on: date | None, name: str, errors: fieldcheck.Errors, what: str) -> None:
    if on and on > clock.local_now().date():
        errors.setdefault(name, []).append(f"{what} {on} 晚于今天")


# ------------------------------------------------------------------------------------------------- services

def save_profile(session: Session, actor: Actor, organisation_id: int, data: ProfileInput) -> CompanyProfile:
    """Create or update the company's profile."""
    company = check_maintain(session, actor, organisation_id)
    errors: fieldcheck.Errors = {}
    values = {"legal_representative": fieldcheck.text(data.legal_representative, "legal_representative", errors,
                                                      limit=100),
              "registered_capital": fieldcheck.amount(data.registered_capital, "registered_capital", errors),
              "address": fieldcheck.text(data.address, "address", errors, limit=300),
              "established_on": fieldcheck.day(data.established_on, "established_on", errors),
              "business_licence_sha256": _file(session, actor, data.business_licence_sha256,
                                               "business_licence_sha256", errors)}
    _not_future(values["established_on"], "established_on", errors, "成立日期")
    fieldcheck.raise_if(errors, "企业基本信息有误 (company profile is invalid)")
    profile = session.get(CompanyProfile, company.id)
    if profile is None:
        profile = CompanyProfile(organisation_id=company.id)
        session.add(profile)
    if values["business_licence_sha256"] is None:
        values["business_licence_sha256"] = profile.business_licence_sha256
    for key, value in values.items():
        setattr(profile, key, value)
    profile.updated_by, profile.updated_at = actor.username, clock.now()
    session.flush()
    audit.append(session, actor=actor.username, action="company.profile",
                 payload={"organisation_id": company.id, **_plain(values)})
    return profile


def add_licence(session: Session, actor: Actor, organisation_id: int, data: LicenceInput) -> Licence:
    """Record a licence (资质) of the company; an already expired one is refused."""
    company = check_maintain(session, actor, organisation_id)
    errors: fieldcheck.Errors = {}
    values = {"kind": fieldcheck.text(data.kind, "kind", errors, limit=100),
              "grade": fieldcheck.choice(data.grade, "grade", errors, GRADES),
              "number": fieldcheck.text(data.number, "number", errors, limit=100),
              "issuer": fieldcheck.text(data.issuer, "issuer", errors, limit=200),
              "valid_from": fieldcheck.day(data.valid_from, "valid_from", errors),
              "valid_until": fieldcheck.day(data.valid_until, "valid_until", errors),
              "file_sha256": _file(session, actor, data.file_sha256, "file_sha256", errors)}
    fieldcheck.order(values["valid_from"], values["valid_until"], "valid_until", errors, "有效期至")
    _not_expired(values["valid_until"], "valid_until", errors, "资质")
    fieldcheck.raise_if(errors, "资质信息有误 (licence is invalid)")
    return _add(session, actor, company, Licence(**values))


def add_person(session: Session, actor: Actor, organisation_id: int, data: PersonInput) -> Person:
    """Record a member of the company's personnel with their certificates."""
    company = check_maintain(session, actor, organisation_id)
    errors: fieldcheck.Errors = {}
    values = {"name": fieldcheck.text(data.name, "name", errors, limit=100),
              "id_number_masked": mask_id_number(data.id_number, errors),
              "role": fieldcheck.choice(data.role, "role", errors, PERSON_ROLES)}
    certificates = [_certificate(session, actor, c, errors, f"certificates/{i}/")
                    for i, c in enumerate(data.certificates)]
    fieldcheck.raise_if(errors, "人员信息有误 (person is invalid)")
    return _add(session, actor, company, Person(**values, certificates=certificates))


def add_certificate(session: Session, actor: Actor, person_id: int, data: CertificateInput) -> PersonCertificate:
    """Add a certificate to a person of the actor's company."""
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"没有人员 {person_id}")
    company = check_maintain(session, actor, person.organisation_id)
    if person.withdrawn_at is not None:
        raise InvalidState(f"人员 {person.name} 已撤回，不能添加证书")
    errors: fieldcheck.Errors = {}
    certificate = _certificate(session, actor, data, errors, "")
    fieldcheck.raise_if(errors, "证书信息有误 (certificate is invalid)")
    person.certificates.append(certificate)
    session.flush()
    audit.append(session, actor=actor.username, action="company.certificate",
                 payload={"organisation_id": company.id, "person_id": person.id, "kind": certificate.kind,
                          "number": certificate.number, "valid_until": certificate.valid_until.isoformat()})
    return certificate


def _certificate(session: Session, actor: Actor, data: CertificateInput, errors: fieldcheck.Errors,
                 prefix: str) -> PersonCertificate:
    until = fieldcheck.day(data.valid_until, prefix + "valid_until", errors)
    _not_expired(until, prefix + "valid_until", errors, "证书")
    scan = _file(session, actor, data.file_sha256, prefix + "file_sha256", errors)
    return PersonCertificate(kind=fieldcheck.text(data.kind, prefix + "kind", errors, limit=100),
                             number=fieldcheck.text(data.number, prefix + "number", errors, limit=100),
                             valid_until=until, file_sha256=scan, recorded_by=actor.username, recorded_at=clock.now())


def add_performance(session: Session, actor: Actor, organisation_id: int, data: PerformanceInput) -> Performance:
    """Record a completed contract (业绩) of the company."""
    company = check_maintain(session, actor, organisation_id)
    errors: fieldcheck.Errors = {}
    values = {"project_name": fieldcheck.text(data.project_name, "project_name", errors, limit=200),
              "tenderer": fieldcheck.text(data.tenderer, "tenderer", errors, limit=200),
              "amount": fieldcheck.amount(data.amount, "amount", errors),
              "completed_on": fieldcheck.day(data.completed_on, "completed_on", errors),
              "proof_sha256": _file(session, actor, data.proof_sha256, "proof_sha256", errors)}
    _not_future(values["completed_on"], "completed_on", errors, "竣工日期")
    fieldcheck.raise_if(errors, "业绩信息有误 (performance is invalid)")
    return _add(session, actor, company, Performance(**values))


def add_commitment(session: Session, actor: Actor, organisation_id: int, data: CommitmentInput) -> Commitment:
    """Record a signed commitment (承诺制) in place of a named document."""
    company = check_maintain(session, actor, organisation_id)
    errors: fieldcheck.Errors = {}
    values = {"stands_in_for": fieldcheck.text(data.stands_in_for, "stands_in_for", errors, limit=200),
              "text": fieldcheck.text(data.text, "text", errors, limit=5000),
              "signer_name": fieldcheck.text(data.signer_name, "signer_name", errors, limit=100)}
    fieldcheck.raise_if(errors, "承诺信息有误 (commitment is invalid)")
    values["text_sha256"] = hashlib.sha256(values["text"].encode("utf-8")).hexdigest()
    return _add(session, actor, company, Commitment(**values))


def _add(session: Session, actor: Actor, company: Organisation, row: Any) -> Any:
    row.organisation_id, row.recorded_by, row.recorded_at = company.id, actor.username, clock.now()
    session.add(row)
    session.flush()
    kind = next(k for k, model in MODELS.items() if isinstance(row, model))
    audit.append(session, actor=actor.username, action=f"company.{kind}.add",
                 payload={"organisation_id": company.id, "id": row.id, **_audited(row)})
    return row


def _audited(row: Any) -> dict[str, Any]:
    skip = {"id", "organisation_id", "recorded_by", "recorded_at", "withdrawn_by", "withdrawn_at", "text"}
    values = {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in skip}
    if isinstance(row, Person):
        values["certificates"] = [{"kind": c.kind, "number": c.number, "valid_until": c.valid_until.isoformat()}
                                  for c in row.certificates]
    return _plain(values)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}


def withdraw(session: Session, actor: Actor, kind: str, row_id: int) -> Any:
    """Withdraw a licence, person, performance or commitment of the actor's company (the row is kept)."""
    model = MODELS.get(kind)
    if model is None:
        raise NotFound(f"未知的记录类别 {kind!r}；可选 {', '.join(RECORDS)}")
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"没有记录 {kind} {row_id}")
    company = check_maintain(session, actor, row.organisation_id)
    if row.withdrawn_at is not None:
        raise InvalidState(f"记录 {kind} {row_id} 已于 {row.withdrawn_at.isoformat()} 撤回")
    row.withdrawn_by, row.withdrawn_at = actor.username, clock.now()
    session.flush()
    audit.append(session, actor=actor.username, action=f"company.{kind}.withdraw",
                 payload={"organisation_id": company.id, "id": row.id})
    return row


# ------------------------------------------------------------------------------------------------- queries

def valid_licences(session: Session, organisation_id: int, at: datetime | date) -> list[Licence]:
    """Return the company's licences in force at ``at`` (a Shanghai date), by kind."""
    on = credit.local_date(at)
    return list(session.execute(
        select(Licence).where(Licence.organisation_id == organisation_id, Licence.withdrawn_at.is_(None),
                              Licence.valid_from <= on, Licence.valid_until >= on)
        .order_by(Licence.kind, Licence.id)).scalars())


def _rows(session: Session, model: type, organisation_id: int, *, withdrawn: bool) -> list[Any]:
    query = select(model).where(model.organisation_id == organisation_id)
    if not withdrawn:
        query = query.where(model.withdrawn_at.is_(None))
    return list(session.execute(query.order_by(model.withdrawn_at.is_not(None), model.id)).scalars())


@dataclass(frozen=True)
class CompanyRecords:
    """Everything the registry holds on one company, for its page."""

    company: Organisation
    profile: CompanyProfile | None
    licences: list[Licence]
    personnel: list[Person]
    performances: list[Performance]
    commitments: list[Commitment]
    credit_events: list[credit.CreditEvent]


def company_records(session: Session, actor: Actor, organisation_id: int, *,
                    withdrawn: bool = False) -> CompanyRecords:
    """Return the company's records for an actor who may read them (withdrawn ones on request)."""
    company = check_read(session, actor, organisation_id)
    return CompanyRecords(company, session.get(CompanyProfile, company.id),
                          *(_rows(session, m, company.id, withdrawn=withdrawn)
                            for m in (Licence, Person, Performance, Commitment)),
                          credit.events_of(session, company.id))


def company_summary(session: Session, organisation_id: int, at: datetime | date | None = None) -> dict[str, Any]:
    """Return what a check needs at ``at`` (default now): valid licences, project managers, counts, sanctions."""
    company = get_company(session, organisation_id)
    instant = at if at is not None else clock.now()
    on = credit.local_date(instant)
    managers = session.execute(select(Person).where(
        Person.organisation_id == company.id, Person.role == PROJECT_MANAGER, Person.withdrawn_at.is_(None))
        .order_by(Person.id)).scalars()
    performances = session.execute(select(func.count()).select_from(Performance).where(
        Performance.organisation_id == company.id, Performance.withdrawn_at.is_(None))).scalar_one()
    sanction = credit.active_sanction(session, company.id, instant)
    return {
        "organisation_id": company.id, "name": company.name, "uscc": company.uscc,
        "licences": [{"kind": x.kind, "grade": x.grade, "number": x.number, "valid_until": x.valid_until}
                     for x in valid_licences(session, company.id, instant)],
        "project_managers": [{"name": p.name, "certificates": [
            {"kind": c.kind, "number": c.number, "valid_until": c.valid_until, "valid": c.valid_until >= on}
            for c in p.certificates]} for p in managers],
        "performance_count": performances,
        "active_sanctions": [] if sanction is None else [{
            "id": sanction.id, "reason": sanction.reason, "source": sanction.source,
            "period_start": sanction.period_start, "period_end": sanction.period_end}],
    }


def list_companies(session: Session, actor: Actor, *, search: str = "", page: int = 1,
                   per_page: int = 20) -> tuple[list[Organisation], int]:
    """Return one page of companies by name or USCC for readers of the registry."""
    if not (actor.username == "system" or any(actor.has_role(r) for r in READERS)):
        raise PermissionDenied(f"{actor.username} 不能查询企业库")
    query = select(Organisation).where(Organisation.kind == "company")
    words = (search or "").strip()
    if words:
        like = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(Organisation.name.ilike(like, escape="\\"),
                                Organisation.uscc.ilike(like, escape="\\")))
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(Organisation.name, Organisation.id).limit(per_page)
                           .offset((max(page, 1) - 1) * per_page)).scalars()
    return list(rows), total


def company_files(session: Session, organisation_id: int) -> set[str]:
    """Return the sha256 of every file the company's records name (business licence, licences, proofs)."""
    shas = {session.execute(select(CompanyProfile.business_licence_sha256)
                            .where(CompanyProfile.organisation_id == organisation_id)).scalar()}
    shas |= set(session.execute(select(Licence.file_sha256).where(Licence.organisation_id == organisation_id))
                .scalars())
    shas |= set(session.execute(select(Performance.proof_sha256)
                                .where(Performance.organisation_id == organisation_id)).scalars())
    shas |= set(session.execute(select(PersonCertificate.file_sha256).join(Person)
                                .where(Person.organisation_id == organisation_id)).scalars())
    return {s for s in shas if s}


# ------------------------------------------------------------------------------------------------- demo

# (legal representative, capital in yuan, address, founding year, licence kind, grade, project manager)
_DEMO_PROFILES = (
    ("李建平", "120000000.00", "甘肃省兰州市城关区东岗西路 88 号", 1998, "建筑工程施工总承包", "一级", "王建国"),
    ("张志刚", "60000000.00", "甘肃省张掖市甘州区县府街 16 号", 2003, "公路工程施工总承包", "二级", "李志强"),
    ("赵玉兰", "20000000.00", "甘肃省张掖市临泽县沙河镇振兴路 5 号", 2009, "建筑工程施工总承包", "三级", "张海峰"),
    ("马德福", "50000000.00", "甘肃省张掖市高台县城关镇解放北路 21 号", 2006, "水利水电工程施工总承包", "二级",
     "马晓东"),
    ("孙立新", "80000000.00", "甘肃省兰州市七里河区西津西路 39 号", 2001, "市政公用工程施工总承包", "一级", "赵永平"),
)
_DEMO_PERFORMANCE = ("张掖市甘州区南环路道路改造工程", "张掖市滨河新区综合管廊工程", "临泽县第二中学教学楼工程",
                     "高台县黑河干流防洪治理工程", "张掖市城区供热管网改造工程")
DEMO_BLACKLISTED = ("demo-bidder-xinda", "甘肃鑫达建筑工程有限公司", "91620100MA7GGDM06")


def _demo_id_number(serial: int, year: int) -> str:
    first17 = f"620702{year}0315{serial:03d}"
    return first17 + _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def seed_demo_market(session: Session, bidder_codes: list[str], regulator: Actor) -> None:
    """Give the demo bidders profiles, a licence and a project manager each; blacklist one company, warn another.

    Dates follow the clock (licences valid for years around today), so the demo is the same on every run of a day.
    """
    code, name, first17 = DEMO_BLACKLISTED
    blacklisted = add_organisation(session, code, name, "company", uscc=first17 + uscc_check_char(first17))
    today = clock.local_now().date()
    companies = [get_by_code(session, c) for c in bidder_codes] + [blacklisted]
    for index, company in enumerate(companies):
        rep, capital, address, year, kind, grade, manager = _DEMO_PROFILES[index % len(_DEMO_PROFILES)]
        save_profile(session, SYSTEM, company.id, ProfileInput(rep, capital, address, date(year, 5, 18)))
        add_licence(session, SYSTEM, company.id, LicenceInput(
            kind, grade, f"D2620{index + 1:02d}{year}", "甘肃省住房和城乡建设厅", date(today.year - 2, 1, 1),
            date(today.year + 3, 12, 31)))
        add_person(session, SYSTEM, company.id, PersonInput(
            manager if company is not blacklisted else "钱卫东", _demo_id_number(index + 1, 1975 + index * 3),
            PROJECT_MANAGER, (CertificateInput("一级注册建造师" if grade in ("特级", "一级") else "二级注册建造师",
                                               f"甘162{year}{index + 1:05d}", date(today.year + 2, 6, 30)),)))
        if company is not blacklisted:
            add_performance(session, SYSTEM, company.id, PerformanceInput(
                _DEMO_PERFORMANCE[index % len(_DEMO_PERFORMANCE)], "张掖市城市建设投资有限公司",
                Decimal(capital) / 20, today - timedelta(days=200 + 90 * index)))
    credit.record_event(session, regulator, credit.CreditInput(
        blacklisted.id, "sanction", "张掖市住房和城乡建设局", f"张建信惩〔{today.year}〕3号",
        "在临泽县道路工程投标中与他人串通投标，被依法认定为严重失信主体", today - timedelta(days=60),
        date(today.year + 2, 12, 31)))
    if bidder_codes:
        credit.record_event(session, regulator, credit.CreditInput(
            get_by_code(session, bidder_codes[-1]).id, "violation", "张掖市住房和城乡建设局",
            f"张建罚〔{today.year}〕27号", "施工现场未按规定配备项目经理，擅自更换项目负责人，罚款 2 万元",
            today - timedelta(days=90), date(today.year + 1, 12, 31)))
