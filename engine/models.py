"""The tables of the engine: organisations and users, deployed versions, instances, inbox, audit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.clock import now
from engine.db import Base, Money, UTCDateTime

ORGANISATION_KINDS = ("centre", "department", "company", "agency", "supervisor")
ROLES = ("admin", "staff", "regulator", "tenderer", "agency", "bidder", "expert", "auditor")


class Organisation(Base):
    """A city centre, county sub-centre, department, company, agency or supervisory body.

    ``kind`` is one of ORGANISATION_KINDS; centres carry ``level`` (city/county),
    county sub-centres have the city centre as parent.
    """

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[str | None] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    uscc: Mapped[str | None] = mapped_column(String(18), unique=True)


class User(Base):
    """A person who logs in; holds roles within an organisation."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    lead: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    roles: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class ApiToken(Base):
    """A personal API token: only its sha256 is stored; revocable."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """A failed login, kept to rate-limit guessing across every web worker."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_user_at", "username", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class StoredFile(Base):
    """Metadata of a content-addressed file under GGZY_HOME/files (the bytes live on disk by sha256)."""

    __tablename__ = "stored_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(100))
    original_name: Mapped[str] = mapped_column(String(300))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class UserRole(Base):
    """One role held by a user."""

    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class DefinitionVersion(Base):
    """An immutable, numbered version of a process (BPMN), decision (DMN) or form (JSON Schema).

    A process version is bound to the exact decision, form and called-process
    versions it was deployed with (``dependencies``), so its ``sha256`` covers
    them: deploying a new rule version yields a new version of every process
    that uses it, while running instances keep the rules they started with.
    """

    __tablename__ = "definition_versions"
    __table_args__ = (UniqueConstraint("kind", "key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200), default="")
    filename: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    dependencies: Mapped[list[int]] = mapped_column(JSON, default=list)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    deployed_by: Mapped[str] = mapped_column(String(64))


class Instance(Base):
    """A running (or finished) process instance, pinned to one process version."""

    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_timer", "next_timer_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("definition_versions.id"), index=True)
    process_key: Mapped[str] = mapped_column(String(200), index=True)
    category: Mapped[str | None] = mapped_column(String(32), index=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(Text)
    serializer_version: Mapped[str] = mapped_column(String(16))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    next_timer_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[dict | None] = mapped_column(JSON)
    status_reason: Mapped[str | None] = mapped_column(Text)
    centre_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(Integer, index=True)
    tenderer_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    started_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __mapper_args__ = {"version_id_col": revision}


class InboxTask(Base):
    """A READY user/manual task, materialized after every change for indexed inbox queries."""

    __tablename__ = "inbox_tasks"
    __table_args__ = (
        Index("ix_inbox_role_due", "role", "due_at"),
        Index("ix_inbox_centre_role_due", "centre_id", "role", "due_at"),
        Index("ix_inbox_assignee_due", "assignee_id", "due_at"),
        Index("ix_inbox_department_role_due", "department_id", "role", "due_at"),
        Index("ix_inbox_role_assignee_due", "role", "assignee_id", "due_at", "centre_id"),
    )

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    element_id: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(32))
    form_key: Mapped[str | None] = mapped_column(String(200))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    process_key: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(32))
    instance_title: Mapped[str] = mapped_column(String(300), default="")
    centre_id: Mapped[int | None] = mapped_column(Integer)
    department_id: Mapped[int | None] = mapped_column(Integer)
    project_id: Mapped[int | None] = mapped_column(Integer)
    tenderer_id: Mapped[int | None] = mapped_column(Integer)
    agency_id: Mapped[int | None] = mapped_column(Integer)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class TaskLog(Base):
    """Who completed which task, and when: the answer to "already completed by whom"."""

    __tablename__ = "task_log"

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    element_id: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    completed_by: Mapped[str] = mapped_column(String(64))
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """One link of the hash-chained audit log."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    project_id: Mapped[int | None] = mapped_column(Integer, index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row that serializes appends to the audit chain (locked FOR UPDATE)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Project(Base):
    """A trading project (交易项目): registered by a tenderer or its agency, traded through one process."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str | None] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(32), index=True)
    sub_type: Mapped[str] = mapped_column(String(32))
    location_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    estimate: Mapped[Decimal] = mapped_column(Money)
    funding: Mapped[str] = mapped_column(String(32))
    tenderer_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    centre_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    must_trade: Mapped[bool] = mapped_column(Boolean, default=True)
    process_key: Mapped[str | None] = mapped_column(String(200))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    status: Mapped[str] = mapped_column(String(32), index=True)
    contacts: Mapped[dict] = mapped_column(JSON, default=dict)
    documents: Mapped[list] = mapped_column(JSON, default=list)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Notice(Base):
    """A public notice (公告). Immutable once published: an amendment is a new notice linked to it."""

    __tablename__ = "notices"
    immutable_label = "notice"  # write-once: engine.notices registers the guard (engine/immutable.py)
    __table_args__ = (Index("ix_notices_published", "published_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    category: Mapped[str | None] = mapped_column(String(32), index=True)
    centre_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    amends_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_by: Mapped[str] = mapped_column(String(64))
