"""Who sees which bonds: a bidder its own; the project's people every bond, by name only after the opening.

Before the bid deadline (the opening instant, 法 §34) the names and number of the
bidders who paid are confidential (法 §22: the tenderer may not disclose the names
or number of potential bidders). So before the opening :func:`project_overview`
gives staff, regulators, auditors and administrators only counts by state, and the
tenderer and its agency nothing; after it, every bond with its bidder, state,
amount, payer account and flags, and the refunds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import bond_refunds, bonds, clock, guarantees, projects
from engine.actors import SYSTEM, Actor
from engine.errors import NotFound, PermissionDenied
from engine.models import Organisation, Project

COUNT_ROLES = ("staff", "regulator", "auditor", "admin")


@dataclass(frozen=True)
class BondRow:
    """One bidder's bond on a project."""

    bidder: Organisation
    account: bonds.BondAccount | None
    status: bonds.BondStatus
    payments: list[bonds.BondPayment]


@dataclass(frozen=True)
class ProjectOverview:
    """A project's bonds as the viewer may see them."""

    project: Project
    required: object
    deadline: datetime | None
    opened: bool
    counts: dict[str, int] | None
    rows: list[BondRow] = field(default_factory=list)
    refunds: list[bond_refunds.RefundInstruction] = field(default_factory=list)
    contract_signed_at: str | None = None


def project_overview(session: Session, actor: Actor, project_id: int) -> ProjectOverview:
    """Return a project's bonds for a viewer in its scope (counts only before the opening)."""
    project = projects.get_project(session, actor, project_id)
    terms = bonds.project_terms(session, project_id)
    deadline = terms.bid_deadline
    opened = deadline is not None and clock.now() >= deadline
    rows = _rows(session, project_id, deadline) if deadline is not None else []
    if not opened:
        wide = actor.username == SYSTEM.username or any(actor.has_role(r) for r in COUNT_ROLES)
        counts = dict(Counter(r.status.state for r in rows)) if wide else None
        return ProjectOverview(project, terms.bid_bond, deadline, False, counts)
    return ProjectOverview(project, terms.bid_bond, deadline, True, dict(Counter(r.status.state for r in rows)),
                           rows, bond_refunds.refunds_of(session, project_id),
                           terms.data.get("contract_signed_at"))


def _rows(session: Session, project_id: int, deadline: datetime) -> list[BondRow]:
    accounts = {a.bidder_id: a for a in session.execute(
        select(bonds.BondAccount).where(bonds.BondAccount.project_id == project_id)).scalars()}
    bidder_ids = set(accounts) | {g.bidder_id for g in guarantees.guarantees_of(session, project_id)}
    orgs = {o.id: o for o in session.execute(select(Organisation).where(Organisation.id.in_(bidder_ids))).scalars()}
    return [BondRow(orgs[i], accounts.get(i), bonds.bond_status(session, project_id, i, deadline=deadline),
                    bonds.payments_of(session, accounts[i].id) if i in accounts else [])
            for i in sorted(bidder_ids, key=lambda i: orgs[i].name)]


@dataclass(frozen=True)
class MyBond:
    """A bidder's own bond on one project."""

    project: Project
    account: bonds.BondAccount | None
    deadline: datetime | None
    status: bonds.BondStatus
    payments: list[bonds.BondPayment]
    guarantees: list[guarantees.Guarantee]
    refunds: list[bond_refunds.RefundInstruction]


def my_bonds(session: Session, actor: Actor) -> list[MyBond]:
    """Return the projects where the actor's organisation has a sub-account or a guarantee, with their states."""
    if not actor.has_role("bidder") or actor.organisation_id is None:
        raise PermissionDenied(f"{actor.username} 不是投标单位的用户 (only a bidder's users see its bonds)")
    accounts = {a.project_id: a for a in bonds.accounts_of_bidder(session, actor.organisation_id)}
    guaranteed = session.execute(select(guarantees.Guarantee.project_id)
                                 .where(guarantees.Guarantee.bidder_id == actor.organisation_id)).scalars()
    out = []
    for project_id in sorted(set(accounts) | set(guaranteed), reverse=True):
        account, terms = accounts.get(project_id), bonds.project_terms(session, project_id)
        at = terms.bid_deadline or clock.now()
        refunds = [r for r in bond_refunds.refunds_of(session, project_id) if account and r.account_id == account.id]
        out.append(MyBond(terms.project, account, terms.bid_deadline,
                          bonds.bond_status(session, project_id, actor.organisation_id, deadline=at),
                          bonds.payments_of(session, account.id) if account else [],
                          guarantees.guarantees_of(session, project_id, actor.organisation_id), refunds))
    return out


def project_by_code(session: Session, code: str) -> Project:
    """Return the project with a trading code (bidders know projects by their published code)."""
    project = session.execute(select(Project).where(Project.code == (code or "").strip().upper())).scalar_one_or_none()
    if project is None:
        raise NotFound(f"没有交易编码为 {code!r} 的项目 (no project with that trading code)")
    return project
