"""The project's electronic archive (电子档案, R8): a signed manifest and a zip of everything the project left.

Items come from contributors: functions registered with ``@contributor("kind")``
that take ``(session, project)`` and yield :class:`ArchiveItem`. The built-in ones
(``engine.archive_items``) give the project record, each instance's final data,
the definition versions the instances ran on, the notices, the audit segment
and every stored file the project's steps referred to; other domains (sealed
bids, opening records, score sheets, reports) add theirs in their own modules,
listed in :data:`CONTRIBUTOR_MODULES`. ``docs/archive.md`` documents the format.

:func:`build_archive` writes a deterministic zip (fixed timestamps, sorted names)
under ``GGZY_HOME/archives``, signs the manifest with the platform key, records
the build and audits it. The service task ``archive_project`` seals the
manifest at the end of a procedure (no zip: a service step has no file store).
``engine.archive_verify`` checks an archive without the database.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, clock, files, projects
from engine.actors import SYSTEM, Actor, load_actor
from engine.archive_verify import CHAIN, FORMAT, MANIFEST, PUBLIC_KEY, SIGNATURE
from engine.config import Config
from engine.db import Base, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import Project
from engine.pki_platform import platform_public_pem, sign_platform
from engine.services import ServiceCall, service

# Modules whose ``@contributor`` functions add items; a domain module adds itself here.
CONTRIBUTOR_MODULES: tuple[str, ...] = (
    "engine.archive_items",
)
READERS = ("staff", "regulator", "auditor", "admin")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20

Contributor = Callable[[Session, Project], Iterable["ArchiveItem"]]
_contributors: dict[str, Contributor] = {}
# The data of an instance whose engine step is running (its stored state is the one before the step).
live_data: ContextVar[dict[int, dict[str, Any]] | None] = ContextVar("ggzy_archive_live_data", default=None)


@dataclass(frozen=True)
class ArchiveItem:
    """One archived item: generated ``content``, or a file of the store named by its sha256 (``stored``).

    ``source`` says where it came from (ids, audit seqs, field paths), as JSON-able values.
    """

    kind: str
    name: str
    media_type: str
    source: dict[str, Any]
    content: bytes | None = None
    stored: str | None = None
    stored_size: int | None = None
    _digest: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.content is None) == (self.stored is None):
            raise ValueError(f"archive item {self.kind}/{self.name} needs content or a stored file, not both")
        if "/" in self.name or self.name in ("", ".", "..") or not self.name.isprintable():
            raise ValueError(f"archive item name {self.name!r} must be a plain file name")
        digest = hashlib.sha256(self.content).hexdigest() if self.content is not None else self.stored
        object.__setattr__(self, "_digest", digest)

    @property
    def path(self) -> str:
        """Return the item's name in the zip: ``items/<kind>/<name>``."""
        return f"items/{self.kind}/{self.name}"

    @property
    def sha256(self) -> str:
        """Return the sha256 of the item's bytes."""
        return self._digest

    @property
    def size(self) -> int:
        """Return the size of the item's bytes."""
        return len(self.content) if self.content is not None else int(self.stored_size or 0)

    def entry(self) -> dict[str, Any]:
        """Return the item's manifest entry."""
        return {"path": self.path, "kind": self.kind, "name": self.name, "media_type": self.media_type,
                "size": self.size, "sha256": self.sha256, "source": self.source}


def contributor(kind: str) -> Callable[[Contributor], Contributor]:
    """Register the function that yields a project's items of ``kind``."""

    def register(function: Contributor) -> Contributor:
        if kind in _contributors and _contributors[kind] is not function:
            raise ValueError(f"archive contributor {kind!r} is registered twice")
        _contributors[kind] = function
        return function

    return register


def contributors() -> dict[str, Contributor]:
    """Return every registered contributor by kind (importing the contributor modules first)."""
    for module in CONTRIBUTOR_MODULES:
        importlib.import_module(module)
    return dict(sorted(_contributors.items()))


def canonical_bytes(value: Any) -> bytes:
    """Encode a value as canonical JSON bytes (``engine.audit.canonical_json``; dates and others as text)."""
    return audit.canonical_json(json.loads(json.dumps(value, default=_plain))).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds") if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        raise TypeError("archive items carry bytes as content, not inside JSON")
    return str(value)


class ArchiveBuild(Base):
    """One archive of a project: a ``zip`` build (downloadable), or the ``seal`` of its procedure's last step."""

    __tablename__ = "archive_builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    archive_sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    items: Mapped[int] = mapped_column(Integer)
    audit_last_seq: Mapped[int | None] = mapped_column(Integer)
    archive_number: Mapped[str | None] = mapped_column(String(100))
    manifest: Mapped[str] = mapped_column(Text)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime)
    built_by: Mapped[str] = mapped_column(String(64))


def check_archive(actor: Actor, project: Project) -> None:
    """Refuse unless the actor reads archives by role (staff, regulators, auditors, admins)."""
    if actor.username == "system" or any(actor.has_role(r) for r in READERS):
        return
    raise PermissionDenied(f"{actor.username} 不能查看或生成项目 {project.code} 的电子档案 "
                           "(archives are for staff, regulators and auditors)", project=project.id)


def archive_project_of(session: Session, actor: Actor, project_id: int) -> Project:
    """Return a project whose archive the actor may see: in the actor's scope (as ``get_project``) and by role."""
    project = projects.get_project(session, actor, project_id)
    check_archive(actor, project)
    return project


def collect(session: Session, project: Project) -> list[ArchiveItem]:
    """Return every contributor's items for a project, sorted by path; refuse two items with one path."""
    items: dict[str, ArchiveItem] = {}
    for kind, function in contributors().items():
        for item in function(session, project):
            if item.kind != kind:
                raise EngineError(f"archive contributor {kind!r} yielded an item of kind {item.kind!r}")
            if item.path in items:
                raise EngineError(f"two archive items are named {item.path}")
            items[item.path] = item
    return [items[path] for path in sorted(items)]


def manifest_of(project: Project, items: list[ArchiveItem], *, built_by: str, built_at: datetime) -> dict[str, Any]:
    """Return the manifest of a project's items (``format: ggzy-archive/1``)."""
    chain = next((item for item in items if item.path == CHAIN), None)
    summary = dict(chain.source["summary"]) if chain else {"first_seq": None, "last_seq": None, "last_hash": None,
                                                            "events": 0, "links": 0}
    return {"format": FORMAT, "platform": "ggzy",
            "project": {"id": project.id, "code": project.code, "name": project.name},
            "built_at": built_at.astimezone(UTC).isoformat(timespec="microseconds"), "built_by": built_by,
            "audit": summary, "items": [item.entry() for item in items]}


@dataclass(frozen=True)
class Prepared:
    """A project's items and the canonical bytes of their manifest."""

    project: Project
    items: list[ArchiveItem]
    manifest: dict[str, Any]
    data: bytes

    @property
    def sha256(self) -> str:
        """Return the manifest's sha256."""
        return hashlib.sha256(self.data).hexdigest()


def prepare(session: Session, project: Project, actor: Actor) -> Prepared:
    """Collect a project's items and write their manifest, stamped now by the actor."""
    items = collect(session, project)
    manifest = manifest_of(project, items, built_by=actor.username, built_at=clock.now())
    return Prepared(project, items, manifest, canonical_bytes(manifest))


def archives_dir(config: Config) -> Path:
    """Return the folder of built archives (``GGZY_HOME/archives``, by the zip's sha256)."""
    return config.home / "archives"


def archive_path(config: Config, build: ArchiveBuild) -> Path:
    """Return where a build's zip lives."""
    if build.archive_sha256 is None:
        raise NotFound(f"电子档案 {build.id} 是归档封存记录，没有压缩包 (a seal has no zip)", build=build.id)
    path = archives_dir(config) / f"{build.archive_sha256}.zip"
    if not path.is_file():
        raise NotFound(f"电子档案 {build.id} 的压缩包不在档案目录中 ({path.name} is missing)", build=build.id)
    return path


def build_archive(session: Session, project_id: int, actor: Actor, *, config: Config) -> ArchiveBuild:
    """Build, sign and store a project's archive zip; record and audit the build."""
    prepared = prepare(session, archive_project_of(session, actor, project_id), actor)
    folder = archives_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".build-", suffix=".zip")
    os.close(fd)
    try:
        write_zip(Path(temporary), prepared, config)
        sha256, size = _digest_of(Path(temporary))
        os.replace(temporary, folder / f"{sha256}.zip")
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return _record(session, prepared, actor, kind="zip", archive_sha256=sha256, size=size)


def _record(session: Session, prepared: Prepared, actor: Actor, *, kind: str, archive_sha256: str | None = None,
            size: int | None = None, archive_number: str | None = None) -> ArchiveBuild:
    summary = prepared.manifest["audit"]
    row = ArchiveBuild(project_id=prepared.project.id, kind=kind, manifest_sha256=prepared.sha256,
                       archive_sha256=archive_sha256, size=size, items=len(prepared.items),
                       audit_last_seq=summary["last_seq"], archive_number=archive_number,
                       manifest=prepared.data.decode("utf-8"), built_at=clock.now(), built_by=actor.username)
    session.add(row)
    session.flush()
    audit.append(session, actor=actor.username, action=f"archive.{'build' if kind == 'zip' else 'seal'}",
                 project_id=prepared.project.id, instance_id=prepared.project.instance_id,
                 payload={"archive_id": row.id, "manifest_sha256": row.manifest_sha256,
                          "archive_sha256": archive_sha256, "size": size, "items": row.items,
                          "audit_last_seq": row.audit_last_seq, "archive_number": archive_number})
    return row


def write_zip(target: Path, prepared: Prepared, config: Config) -> None:
    """Write the archive: manifest, signature, platform key and items, sorted, with fixed timestamps."""
    fixed = {MANIFEST: prepared.data, SIGNATURE: sign_platform(config, prepared.data),
             PUBLIC_KEY: platform_public_pem(config)}
    entries: dict[str, bytes | ArchiveItem] = {**fixed, **{item.path: item for item in prepared.items}}
    with zipfile.ZipFile(target, "w") as archive:
        for name in sorted(entries):
            value = entries[name]
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            if isinstance(value, bytes):
                archive.writestr(info, value)
            elif value.content is not None:
                archive.writestr(info, value.content)
            else:
                _copy_stored(archive, info, value, config)


def _copy_stored(archive: zipfile.ZipFile, info: zipfile.ZipInfo, item: ArchiveItem, config: Config) -> None:
    """Stream a stored file into the zip, refusing one whose bytes no longer match its sha256."""
    digest = hashlib.sha256()
    info.file_size = item.size
    with files.open_file(config, item.stored or "") as source, \
            archive.open(info, "w", force_zip64=item.size > 1 << 31) as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != item.sha256:
        raise InvalidState(f"stored file {item.name} no longer matches its sha256 {item.sha256}; "
                           "the file store was altered", file=item.sha256)


def _digest_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def list_builds(session: Session, actor: Actor, project_id: int) -> list[ArchiveBuild]:
    """Return a project's archive builds and seals, newest first."""
    archive_project_of(session, actor, project_id)
    query = (select(ArchiveBuild).where(ArchiveBuild.project_id == project_id)
             .order_by(ArchiveBuild.built_at.desc(), ArchiveBuild.id.desc()))
    return list(session.execute(query).scalars())


def get_build(session: Session, actor: Actor, project_id: int, build_id: int) -> ArchiveBuild:
    """Return one build of a project that the actor may download."""
    archive_project_of(session, actor, project_id)
    row = session.get(ArchiveBuild, build_id)
    if row is None or row.project_id != project_id:
        raise NotFound(f"项目 {project_id} 没有电子档案 {build_id}", build=build_id)
    return row


def download_name(project: Project, build: ArchiveBuild) -> str:
    """Return the file name offered for a build's zip."""
    stamp = build.built_at.astimezone(clock.SHANGHAI).strftime("%Y%m%d-%H%M%S")
    return f"{project.code or project.id}-archive-{stamp}.zip"


@service("archive_project")
def seal_archive(call: ServiceCall, archive_number: str | None = None) -> dict[str, Any]:
    """Service task: seal the project's manifest at the end of its procedure and audit its sha256."""
    if call.project_id is None:
        raise InvalidState(f"instance {call.instance_id} belongs to no project; there is nothing to archive")
    project = call.session.get(Project, call.project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {call.project_id}", project=call.project_id)
    actor = load_actor(call.session, call.actor)
    token = live_data.set({call.instance_id: dict(call.data)})
    try:
        prepared = prepare(call.session, project, actor)
    finally:
        live_data.reset(token)
    row = _record(call.session, prepared, actor, kind="seal",
                  archive_number=str(archive_number) if archive_number else None)
    return {"archive_id": row.id, "manifest_sha256": row.manifest_sha256, "items": row.items,
            "sealed_at": row.built_at.astimezone(clock.SHANGHAI).isoformat()}


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``ggzy archive verify FILE [--key PEM]`` and ``ggzy archive build CODE --out FILE``."""
    parser = command("archive", _cmd_build, "build or verify a project's electronic archive", as_user=True)
    actions = parser.add_subparsers(dest="archive_action", required=True)
    verify = actions.add_parser("verify", help="check an archive on its own, without the database")
    verify.add_argument("file")
    verify.add_argument("--key", help="the platform's public key (PEM); default: the key in the archive")
    verify.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    verify.set_defaults(handler=cmd_verify, standalone=True)
    build = actions.add_parser("build", help="build a project's archive zip")
    build.add_argument("project_code")
    build.add_argument("--out", required=True, help="where to write the zip")
    build.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    build.add_argument("--as", dest="as_user", default=argparse.SUPPRESS, metavar="USER",
                       help="act as USER (default: the system actor)")


def cmd_verify(_ctx: Any, args: argparse.Namespace) -> int:
    """Verify an archive file; needs no context (``ctx`` may be None)."""
    from engine.archive_verify import run

    return run(args)


def _cmd_build(ctx: Any, args: argparse.Namespace) -> int:
    with ctx.sessions.begin() as session:
        project_id = session.execute(select(Project.id).where(Project.code == args.project_code)).scalar()
        if project_id is None:
            raise NotFound(f"没有交易项目 {args.project_code}")
        actor = load_actor(session, args.as_user) if getattr(args, "as_user", None) else SYSTEM
        row = build_archive(session, project_id, actor, config=ctx.config)
        result = {"archive_id": row.id, "project": args.project_code, "manifest_sha256": row.manifest_sha256,
                  "archive_sha256": row.archive_sha256, "size": row.size, "items": row.items, "out": args.out}
        source = archive_path(ctx.config, row)
    out = Path(args.out)
    try:
        out.write_bytes(source.read_bytes())
    except OSError as err:
        raise EngineError(f"cannot write {out}: {err.strerror}") from None
    if getattr(args, "json", False):
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"archived {result['project']}: {result['items']} items, {result['size']} bytes, "
              f"manifest sha256 {result['manifest_sha256']} -> {out}")
    return 0
