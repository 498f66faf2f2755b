"""Award letters (中标通知书) and result letters (中标结果通知书): 招标投标法 §45.

法 §45: after the successful bidder is determined, the tenderer issues the award notice
(中标通知书) to it and at the same time notifies every bidder that did not win of the result.
The public result notice (中标结果公告) is a separate, public act (``publish_result``).

The service task ``issue_result_letters`` (``@service("send_result_letters")``) runs after
``publish_result``. It refuses, naming the problem, when the named winner is not one of the
candidates of the signed evaluation report (published in the candidates notice), when the
winner's name or price differ from that candidate's, or when the process's round is not the
round that was opened; nothing is written then. Otherwise it writes one letter per bidder of
the opened round (``engine.procedure.opening_bidder_ids``): the winner's award letter refers
to the award notice file the tenderer uploaded (its sha256), the others' result letters state
the winner and the price. Each letter is canonical JSON with its sha256, audited
(``award.letters``), and never changed or deleted (the ORM refuses it).

A service step has no key store (as the archive seal), so the platform's signature over each
letter's canonical JSON is added when the letters are delivered: ``seal_letters`` (staff of the
centre, the tenderer or its agency, from the letters page) signs every letter not yet signed with
the platform key (``engine.pki_platform.sign_platform``) into ``result_letter_seals``, once
(audited ``award.letters.seal``). A bidder downloads its letter as a JSON document carrying the
exact signed text, the signature and the platform's public key, and checks it offline with
``verify_document`` or OpenSSL (docs/award.md).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, clock, immutable, projects
from engine.actors import SYSTEM, Actor
from engine.config import Config
from engine.db import Base, UTCDateTime
from engine.errors import InvalidState, NotFound, PermissionDenied
from engine.models import Organisation, Project
from engine.pki_platform import platform_public_pem, sign_platform, verify_platform
from engine.services import ServiceCall, service

FORMAT = "ggzy-result-letter/1"
DOCUMENT_FORMAT = "ggzy-signed-letter/1"
ALGORITHM = "ECDSA-P256-SHA256 (DER)"
STATUTE = "《中华人民共和国招标投标法》第四十五条"
KINDS = {"award": "中标通知书", "result": "中标结果通知书"}
_UNCHECKED: Any = object()  # award_errors: the 条例 §55 ranking rule is checked only when a reason is passed
# Who may see every letter of a project (within the project's scope) and who may deliver (seal) them.
READERS = ("staff", "regulator", "tenderer", "agency", "auditor", "admin")
SENDERS = ("staff", "tenderer", "agency")


class LetterImmutable(InvalidState):
    """A written letter or its seal cannot be changed or removed."""


class ResultLetter(Base):
    """One letter of the award: the winner's 中标通知书 or a non-winning bidder's 中标结果通知书."""

    __tablename__ = "result_letters"
    __table_args__ = (UniqueConstraint("project_id", "tender_round", "organisation_id",
                                       name="uq_result_letter_recipient"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    tender_round: Mapped[int] = mapped_column(Integer)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    content: Mapped[str] = mapped_column(Text)  # canonical JSON: exactly the bytes signed (UTF-8)
    sha256: Mapped[str] = mapped_column(String(64))
    written_at: Mapped[datetime] = mapped_column(UTCDateTime)
    written_by: Mapped[str] = mapped_column(String(64))

    @property
    def data(self) -> dict[str, Any]:
        """The letter's content, parsed."""
        return json.loads(self.content)

    @property
    def title(self) -> str:
        return KINDS.get(self.kind, self.kind)


class LetterSeal(Base):
    """The platform's signature over one letter's canonical JSON (made once, on delivery)."""

    __tablename__ = "result_letter_seals"

    id: Mapped[int] = mapped_column(primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("result_letters.id"), unique=True)
    signature: Mapped[str] = mapped_column(Text)  # base64 of the DER ECDSA signature
    key_sha256: Mapped[str] = mapped_column(String(64))  # sha256 of the public key PEM that verifies it
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed_by: Mapped[str] = mapped_column(String(64))


def content_bytes(content: dict[str, Any]) -> bytes:
    """Return the canonical JSON bytes of a letter's content (what its sha256 and signature cover)."""
    return audit.canonical_json(content).encode("utf-8")


def key_sha256(public_pem: bytes) -> str:
    """Return the fingerprint of a public key PEM as recorded with each seal."""
    return hashlib.sha256(public_pem).hexdigest()


# -- the checks ------------------------------------------------------------------------------------------------


def _price(value: Any) -> Decimal | None:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def candidates_of(session: Session, project_id: int) -> list[dict[str, Any]]:
    """Return the published candidates of the project's signed report, or refuse naming what is missing."""
    from engine import evaluation  # the evaluation module registers its own service tasks

    try:
        return evaluation.published_candidates(session, project_id, SYSTEM)
    except PermissionDenied:
        raise InvalidState("中标候选人尚未公示，不能定标 (the candidates of the signed evaluation report are not "
                           "published; 条例 §54)", project=project_id) from None


def award_errors(session: Session, project_id: int, *, winner_name: Any, winner_uscc: Any,
                 winning_price: Any, award_reason: Any = _UNCHECKED) -> dict[str, list[str]]:
    """Check the award against the published candidates; return the problems by form field (empty: fine).

    The winner (by 统一社会信用代码) must be one of the candidates (法 §40, 条例 §55); its name and its price
    must be the candidate's. When ``award_reason`` is given, a state-funded project (``funding == "state"``) that
    does not award the first-ranked candidate must say why in it (条例 §55).
    """
    candidates = candidates_of(session, project_id)
    uscc = str(winner_uscc or "").strip()
    chosen = next((c for c in candidates if c.get("bidder_uscc") == uscc), None)
    if chosen is None:
        listed = "、".join(f"第 {c['rank']} 名 {c['bidder_name']}（{c['bidder_uscc']}）" for c in candidates)
        return {"winner_uscc": [f"{uscc or '（空）'} 不是评标报告推荐的中标候选人，候选人为：{listed} "
                                f"(the winner is not one of the published candidates)"]}
    errors: dict[str, list[str]] = {}
    if str(winner_name or "").strip() != chosen["bidder_name"]:
        errors["winner_name"] = [f"中标人名称应为候选人的名称「{chosen['bidder_name']}」，不是「{winner_name}」 "
                                 "(the winner's name differs from the candidate's)"]
    price, expected = _price(winning_price), _price(chosen.get("price"))
    if price is None or expected is None or price != expected:
        errors["winning_price"] = [f"中标价应为该候选人的投标报价 {chosen.get('price')} 元，不是 {winning_price} "
                                   "(the winning price differs from the candidate's bid price)"]
    project = session.get(Project, project_id)
    if (award_reason is not _UNCHECKED and project is not None and project.funding == "state"
            and chosen.get("rank") != 1 and not str(award_reason or "").strip()):
        errors["award_reason"] = [f"国有资金项目应当确定排名第一的中标候选人为中标人；"
                                  f"确定第 {chosen.get('rank')} 名的，请在定标说明中写明排名第一的候选人"
                                  "不符合中标条件的情形（《招标投标法实施条例》第五十五条） (a state-funded project "
                                  "awards the first-ranked candidate unless the reason is given)"]
    return errors


def award_problem(session: Session, project_id: int, **award: Any) -> str | None:
    """Say in one line what is wrong with an award (None: it names a candidate with its name and price)."""
    errors = award_errors(session, project_id, **award)
    return "；".join(message for field in sorted(errors) for message in errors[field]) or None


@service("award_check")
def award_check(call: ServiceCall, winner_name: Any = None, winner_uscc: Any = None,
                winning_price: Any = None) -> dict[str, Any]:
    """Service task after the award form: ``ok`` when the winner is a published candidate with its name and price
    (and, on a state-funded project, is the first-ranked one or the form's ``award_reason`` says why)."""
    if call.project_id is None:
        raise InvalidState(f"instance {call.instance_id} belongs to no project; it has no candidates")
    problem = award_problem(call.session, call.project_id, winner_name=winner_name, winner_uscc=winner_uscc,
                            winning_price=winning_price, award_reason=call.data.get("award_reason"))
    return {"ok": problem is None, "problem": problem}


# -- writing the letters ---------------------------------------------------------------------------------------


def _report_sha256(session: Session, project_id: int) -> str | None:
    from engine import evaluation

    row = evaluation.of_project(session, project_id)
    report = evaluation.report_of(session, row) if row is not None else None
    return report.sha256 if report is not None else None


def _file_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("sha256"), str) or len(value["sha256"]) != 64:
        raise InvalidState("中标通知书文件缺失：定标时须上传中标通知书 (the award notice file is missing)")
    return {k: value.get(k) for k in ("sha256", "name", "size", "media_type")}


def write_letters(session: Session, project_id: int, actor: str, *, tender_round: int, winner_name: Any,
                  winner_uscc: Any, winning_price: Any, award_notice: Any, awarded_at: Any = None,
                  instance_id: int | None = None, result_notice: dict[str, Any] | None = None) -> list[ResultLetter]:
    """Write the award letter and the result letters of a round, or refuse (nothing written) naming the problem."""
    from engine import procedure

    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    problem = award_problem(session, project_id, winner_name=winner_name, winner_uscc=winner_uscc,
                            winning_price=winning_price)
    if problem is not None:
        raise InvalidState(f"不能发出中标通知书：{problem}", project=project_id)
    opening = procedure.latest_opening(session, project_id)
    if opening is None or opening.tender_round != int(tender_round):
        raise InvalidState(f"项目 {project.code} 第 {tender_round} 次招标没有开标记录，不能发出中标通知书 "
                           f"(no opening of round {tender_round})", project=project_id)
    if session.execute(select(ResultLetter.id).where(ResultLetter.project_id == project_id,
                                                     ResultLetter.tender_round == opening.tender_round)).first():
        raise InvalidState(f"项目 {project.code} 第 {opening.tender_round} 次招标的中标通知书已经发出，不能重复发出 "
                           "(the letters of this round were already sent)", project=project_id)
    notice = _file_value(award_notice)
    bidder_ids = procedure.opening_bidder_ids(session, project_id)
    orgs = {o.id: o for o in session.execute(select(Organisation).where(Organisation.id.in_(bidder_ids))).scalars()}
    uscc = str(winner_uscc).strip()
    winner = next((o for o in orgs.values() if o.uscc == uscc), None)
    if winner is None:
        raise InvalidState(f"中标人 {uscc} 不是第 {opening.tender_round} 次招标的投标人 "
                           "(the winner did not bid in the opened round)", project=project_id)
    tenderer = session.get(Organisation, project.tenderer_id) if project.tenderer_id else None
    price = str(_price(winning_price))
    at = clock.now()
    common = {
        "format": FORMAT, "statute": STATUTE,
        "project": {"id": project.id, "code": project.code, "name": project.name},
        "tender_round": opening.tender_round,
        "tenderer": {"name": tenderer.name if tenderer else None, "uscc": tenderer.uscc if tenderer else None},
        "winner": {"name": winner.name, "uscc": winner.uscc, "price": price},
        "awarded_at": str(awarded_at) if awarded_at else None,
        "evaluation_report_sha256": _report_sha256(session, project_id),
        "result_notice": ({"id": result_notice.get("id"), "sha256": result_notice.get("sha256")}
                          if isinstance(result_notice, dict) else None),
        "issued_at": at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
        "issued_by": actor,
    }
    letters = []
    for org_id in bidder_ids:
        org = orgs[org_id]
        kind = "award" if org.id == winner.id else "result"
        content = {**common, "kind": kind, "title": KINDS[kind],
                   "recipient": {"organisation_id": org.id, "name": org.name, "uscc": org.uscc},
                   "body": _body(kind, project, opening.tender_round, org.name, winner.name, price, notice)}
        if kind == "award":
            content["award_notice"] = notice
        text = content_bytes(content)
        letters.append(ResultLetter(project_id=project.id, instance_id=instance_id, tender_round=opening.tender_round,
                                    organisation_id=org.id, kind=kind, content=text.decode("utf-8"),
                                    sha256=hashlib.sha256(text).hexdigest(), written_at=at, written_by=actor))
    session.add_all(letters)
    session.flush()
    audit.append(session, actor=actor, action="award.letters", instance_id=instance_id, project_id=project.id,
                 payload={"tender_round": opening.tender_round, "winner_uscc": winner.uscc, "winning_price": price,
                          "award_notice_sha256": notice["sha256"],
                          "letters": [{"id": row.id, "kind": row.kind, "organisation_id": row.organisation_id,
                                       "sha256": row.sha256} for row in letters]})
    return letters


def _body(kind: str, project: Project, tender_round: int, recipient: str, winner: str, price: str,
          notice: dict[str, Any]) -> str:
    if kind == "award":
        return (f"{recipient}：经评标委员会评审、中标候选人公示，招标人确定贵单位为{project.name}（{project.code}）"
                f"第 {tender_round} 次招标的中标人，中标价 {price} 元。招标人签发的中标通知书见附件"
                f"（{notice.get('name')}，SHA-256 {notice['sha256']}）。请自中标通知书发出之日起三十日内，"
                "按照招标文件和贵单位的投标文件与招标人订立书面合同（《中华人民共和国招标投标法》第四十六条）。")
    return (f"{recipient}：贵单位参加的{project.name}（{project.code}）第 {tender_round} 次招标，"
            f"经评标委员会评审、中标候选人公示，招标人确定 {winner} 为中标人，中标价 {price} 元。"
            "贵单位未中标，特此通知（《中华人民共和国招标投标法》第四十五条）。感谢贵单位的参与。")


@service("send_result_letters")
def send_result_letters(call: ServiceCall, tender_round: int, winner_name: Any, winner_uscc: Any,
                        winning_price: Any, award_notice: Any, awarded_at: Any = None,
                        result_notice: dict[str, Any] | None = None) -> dict[str, Any]:
    """Service task after the result notice: the award letter to the winner, result letters to the others."""
    if call.project_id is None:
        raise InvalidState(f"instance {call.instance_id} belongs to no project; it has no bidders to notify")
    letters = write_letters(call.session, call.project_id, call.actor, tender_round=tender_round,
                            winner_name=winner_name, winner_uscc=winner_uscc, winning_price=winning_price,
                            award_notice=award_notice, awarded_at=awarded_at, instance_id=call.instance_id,
                            result_notice=result_notice)
    return {"count": len(letters), "award_letter_id": next(r.id for r in letters if r.kind == "award"),
            "letters": [{"id": r.id, "kind": r.kind, "organisation_id": r.organisation_id, "sha256": r.sha256}
                        for r in letters]}


# -- delivery: the platform's seal ------------------------------------------------------------------------------


def seals_of(session: Session, letter_ids: list[int]) -> dict[int, LetterSeal]:
    """Return the seals of the given letters by letter id."""
    if not letter_ids:
        return {}
    rows = session.execute(select(LetterSeal).where(LetterSeal.letter_id.in_(letter_ids))).scalars()
    return {row.letter_id: row for row in rows}


def seal_letters(session: Session, project_id: int, actor: Actor, *, config: Config) -> list[LetterSeal]:
    """Sign every letter of the project not signed yet with the platform key (staff, tenderer, agency in scope)."""
    if actor is not SYSTEM and not any(actor.has_role(r) for r in SENDERS):
        raise PermissionDenied(f"{actor.username}: 只有交易中心工作人员、招标人或其代理机构可以发送中标通知书 "
                               "(only centre staff, the tenderer or its agency deliver the letters)")
    project = projects.get_project(session, actor, project_id) if actor is not SYSTEM else session.get(
        Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    letters = list(session.execute(select(ResultLetter).where(ResultLetter.project_id == project_id)
                                   .order_by(ResultLetter.id)).scalars())
    if not letters:
        raise InvalidState(f"项目 {project.code} 尚未定标，没有可发送的中标通知书 (no letters written yet)",
                           project=project_id)
    done = seals_of(session, [row.id for row in letters])
    public = platform_public_pem(config)
    at = clock.now()
    made = [LetterSeal(letter_id=row.id, signature=base64.b64encode(
        sign_platform(config, row.content.encode("utf-8"))).decode("ascii"), key_sha256=key_sha256(public),
        sealed_at=at, sealed_by=actor.username) for row in letters if row.id not in done]
    if made:
        session.add_all(made)
        session.flush()
        audit.append(session, actor=actor.username, action="award.letters.seal", project_id=project_id,
                     payload={"letters": [m.letter_id for m in made], "key_sha256": key_sha256(public)})
    return made


# -- reading -----------------------------------------------------------------------------------------------------


def letters_of_project(session: Session, actor: Actor, project_id: int) -> list[ResultLetter]:
    """Every letter of a project, to staff, regulators, the tenderer, its agency, auditors and admins in scope."""
    if not any(actor.has_role(r) for r in READERS):
        raise PermissionDenied(f"{actor.username}: 投标人只能查看本单位的通知书 (bidders see their own letters only)")
    projects.get_project(session, actor, project_id)
    return list(session.execute(select(ResultLetter).where(ResultLetter.project_id == project_id)
                                .order_by(ResultLetter.tender_round, ResultLetter.id)).scalars())


def my_letters(session: Session, actor: Actor) -> list[ResultLetter]:
    """The letters addressed to the actor's organisation, newest first."""
    if actor.organisation_id is None:
        return []
    return list(session.execute(select(ResultLetter).where(ResultLetter.organisation_id == actor.organisation_id)
                                .order_by(ResultLetter.id.desc())).scalars())


def get_letter(session: Session, actor: Actor, letter_id: int) -> ResultLetter:
    """Return one letter: a bidder only its own organisation's (another's is not found), others by project scope."""
    row = session.get(ResultLetter, letter_id)
    if row is not None and actor.organisation_id is not None and row.organisation_id == actor.organisation_id:
        return row
    if row is None or not any(actor.has_role(r) for r in READERS):
        raise NotFound(f"没有通知书 {letter_id} (no letter {letter_id} addressed to you)", letter=letter_id)
    projects.get_project(session, actor, row.project_id)
    return row


def document_of(session: Session, row: ResultLetter, *, config: Config) -> dict[str, Any]:
    """Return the signed letter as the downloadable JSON document, or refuse while it is not sealed."""
    seal = seals_of(session, [row.id]).get(row.id)
    if seal is None:
        raise InvalidState(f"通知书 {row.id} 尚未由平台签章发送 (letter {row.id} is not delivered and signed yet)",
                           letter=row.id)
    public = platform_public_pem(config)
    if key_sha256(public) != seal.key_sha256:
        raise InvalidState(f"通知书 {row.id} 的签章密钥不是平台当前密钥 (the platform key changed since)",
                           letter=row.id)
    return {"format": DOCUMENT_FORMAT, "letter_id": row.id, "kind": row.kind, "title": row.title,
            "content": row.content, "sha256": row.sha256, "algorithm": ALGORITHM, "signature": seal.signature,
            "sealed_at": seal.sealed_at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
            "platform_public_key": public.decode("ascii"), "platform_key_sha256": seal.key_sha256}


def document_bytes(document: dict[str, Any]) -> bytes:
    """Encode a letter document for download (indented, UTF-8; ``content`` keeps the exact signed text)."""
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def verify_document(document: Any, public_pem: bytes | None = None) -> str | None:
    """Check a downloaded letter offline; return the problem, or None when it is genuine.

    With ``public_pem`` the signature is checked against that key (the platform's published key);
    without, against the key in the document (then compare ``platform_key_sha256`` with the published one).
    """
    if not isinstance(document, dict) or document.get("format") != DOCUMENT_FORMAT:
        return f"not a {DOCUMENT_FORMAT} document"
    content, signature = document.get("content"), document.get("signature")
    if not isinstance(content, str) or not isinstance(signature, str):
        return "content or signature missing"
    data = content.encode("utf-8")
    if hashlib.sha256(data).hexdigest() != document.get("sha256"):
        return "sha256 does not match the content"
    try:
        parsed = json.loads(content)
    except ValueError:
        return "content is not JSON"
    if not isinstance(parsed, dict) or parsed.get("format") != FORMAT or content_bytes(parsed) != data:
        return f"content is not a canonical {FORMAT} letter"
    key = public_pem if public_pem is not None else str(document.get("platform_public_key", "")).encode("ascii")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return "signature is not base64"
    if not verify_platform(key, data, raw):
        return "bad signature: the letter was not signed by this platform key or was changed"
    return None


# -- ggzy letter verify ------------------------------------------------------------------------------------------


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``ggzy letter verify FILE [--key PEM] [--json]`` (standalone: no database, no GGZY_HOME)."""
    parser = command("letter", cmd_verify, "verify a downloaded award or result letter (法 §45)")
    actions = parser.add_subparsers(dest="letter_action", required=True)
    verify = actions.add_parser("verify", help="check a signed letter on its own, without the database")
    verify.add_argument("file")
    verify.add_argument("--key", help="the platform's public key (PEM); default: the key in the letter")
    verify.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    verify.set_defaults(handler=cmd_verify, standalone=True)


def cmd_verify(_ctx: Any, args: argparse.Namespace) -> int:
    """Verify a letter file: exit 0 genuine, 1 not genuine or unreadable, 2 the key file cannot be read."""
    key = None
    if args.key:
        try:
            key = Path(args.key).read_bytes()
        except OSError as err:
            print(f"ggzy: cannot read key {args.key}: {err.strerror}", file=sys.stderr)
            return 2
    try:
        document = json.loads(Path(args.file).read_bytes())
    except OSError as err:
        problem, document = f"cannot read {args.file}: {err.strerror}", None
    except ValueError:
        problem, document = f"{args.file} is not JSON", None
    else:
        problem = verify_document(document, key)
    content = json.loads(document["content"]) if problem is None else {}
    result = {"ok": problem is None, "problem": problem, "file": args.file,
              "key": "given" if key is not None else "included",
              "platform_key_sha256": document.get("platform_key_sha256") if isinstance(document, dict) else None,
              "kind": content.get("kind"), "project": (content.get("project") or {}).get("code"),
              "recipient": (content.get("recipient") or {}).get("uscc"),
              "winner": (content.get("winner") or {}).get("uscc")}
    if getattr(args, "json", False):
        print(json.dumps(result, ensure_ascii=False))
    elif problem is None:
        print(f"OK {result['kind']} letter of {result['project']} to {result['recipient']} "
              f"(key {result['key']}, sha256 {result['platform_key_sha256']})")
    else:
        print(f"INVALID: {problem}")
    return 0 if problem is None else 1


# -- immutability ------------------------------------------------------------------------------------------------


immutable.write_once(ResultLetter, LetterSeal, error=LetterImmutable,
                     bulk="result letters and their seals cannot be changed or deleted")
