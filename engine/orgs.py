"""Organisations: centres, departments, companies, agencies, supervisory bodies; the USCC check."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.actors import SYSTEM, Actor
from engine.errors import EngineError, NotFound
from engine.models import ORGANISATION_KINDS, Organisation

# GB 32100-2015: 18 characters from this alphabet (no I, O, Z, S, V); the last is a check character.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(first17: str) -> str:
    """Return the check character of the first 17 characters of a 统一社会信用代码."""
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def validate_uscc(code: str) -> str:
    """Return the normalised code, or raise naming what is wrong with it."""
    value = (code or "").strip().upper()
    if len(value) != 18:
        raise EngineError(f"统一社会信用代码 {code!r} must have 18 characters, not {len(value)}")
    bad = sorted({c for c in value if c not in USCC_ALPHABET})
    if bad:
        raise EngineError(f"统一社会信用代码 {code!r} contains invalid character(s) {''.join(bad)}")
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        raise EngineError(f"统一社会信用代码 {code!r} fails its check character: expected {expected}, got {value[17]}")
    return value


def add_organisation(
    session: Session, code: str, name: str, kind: str, *, level: str | None = None,
    parent_code: str | None = None, uscc: str | None = None, actor: Actor = SYSTEM,
) -> Organisation:
    """Create an organisation; companies and agencies need a valid USCC."""
    if kind not in ORGANISATION_KINDS:
        raise EngineError(f"unknown organisation kind {kind!r}; kinds are {', '.join(ORGANISATION_KINDS)}")
    if kind == "centre" and level not in ("city", "county"):
        raise EngineError("a centre needs level 'city' or 'county'")
    if kind in ("company", "agency") and not uscc:
        raise EngineError(f"a {kind} needs its 统一社会信用代码")
    if session.execute(select(Organisation.id).where(Organisation.code == code)).first():
        raise EngineError(f"organisation code {code!r} is taken")
    parent = get_by_code(session, parent_code) if parent_code else None
    org = Organisation(code=code, name=name, kind=kind, level=level, parent_id=parent.id if parent else None,
                       uscc=validate_uscc(uscc) if uscc else None)
    session.add(org)
    session.flush()
    audit.append(session, actor=actor.username, action="organisation.add",
                 payload={"code": code, "name": name, "kind": kind})
    return org


def get_by_code(session: Session, code: str) -> Organisation:
    """Return the organisation with ``code``."""
    org = session.execute(select(Organisation).where(Organisation.code == code)).scalar_one_or_none()
    if org is None:
        raise NotFound(f"no organisation {code!r}")
    return org


def list_organisations(session: Session, kind: str | None = None) -> list[Organisation]:
    """List organisations, optionally of one kind, by code."""
    query = select(Organisation).order_by(Organisation.kind, Organisation.code)
    if kind:
        query = query.where(Organisation.kind == kind)
    return list(session.execute(query).scalars())


# The demo's city and counties (张掖市) and the industry departments of the policy.
ZHANGYE_CENTRES = [
    ("zy-centre", "张掖市公共资源交易中心", "city", None),
    ("zy-ganzhou", "甘州区公共资源交易分中心", "county", "zy-centre"),
    ("zy-linze", "临泽县公共资源交易分中心", "county", "zy-centre"),
    ("zy-gaotai", "高台县公共资源交易分中心", "county", "zy-centre"),
    ("zy-shandan", "山丹县公共资源交易分中心", "county", "zy-centre"),
    ("zy-minle", "民乐县公共资源交易分中心", "county", "zy-centre"),
    ("zy-sunan", "肃南裕固族自治县公共资源交易分中心", "county", "zy-centre"),
]
ZHANGYE_DEPARTMENTS = [
    ("dept-fgw", "张掖市发展和改革委员会"), ("dept-czj", "张掖市财政局"), ("dept-zjj", "张掖市住房和城乡建设局"),
    ("dept-jtj", "张掖市交通运输局"), ("dept-slj", "张掖市水务局"), ("dept-zrzyj", "张掖市自然资源局"),
    ("dept-nyncj", "张掖市农业农村局"), ("dept-lcj", "张掖市林业和草原局"),
    ("dept-gzw", "张掖市国有资产监督管理委员会"),
    ("dept-sthjj", "张掖市生态环境局"), ("dept-gxj", "张掖市工业和信息化局"),
]
ZHANGYE_SUPERVISORS = [("sup-jw", "张掖市纪委监委"), ("sup-sjj", "张掖市审计局")]


def seed_zhangye(session: Session) -> dict[str, Organisation]:
    """Create the demo organisations (idempotent); return them by code."""
    existing = {o.code: o for o in list_organisations(session)}
    for code, name, level, parent in ZHANGYE_CENTRES:
        if code not in existing:
            existing[code] = add_organisation(session, code, name, "centre", level=level, parent_code=parent)
    for code, name in ZHANGYE_DEPARTMENTS:
        if code not in existing:
            existing[code] = add_organisation(session, code, name, "department")
    for code, name in ZHANGYE_SUPERVISORS:
        if code not in existing:
            existing[code] = add_organisation(session, code, name, "supervisor")
    return existing
