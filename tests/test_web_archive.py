"""The 电子档案 page: past builds, build and download (CSRF), scope and roles, English, and a real browser download."""

from __future__ import annotations

import re

import pytest
import test_construction_tender as ct
from browser import browser_login, shot
from conftest import csrf_of, login
from sqlalchemy import select
from test_archive import finished

from engine import archive
from engine.actors import add_user, hash_password
from engine.archive_verify import verify_archive
from engine.models import Instance, User
from engine.orgs import add_organisation
from engine.services import ServiceCall

world = ct.world
PASSWORD = "secret-archive"


@pytest.fixture
def project(ctx, fixed_clock, world):
    """A finished project; every scenario user can log in with PASSWORD; returns the project id."""
    finished(ctx, fixed_clock, world)
    with ctx.sessions.begin() as s:
        other = add_organisation(s, "zy-gaotai", "高台县公共资源交易分中心", "centre", level="county")
        add_user(s, "stf2", ["staff"], organisation_id=other.id)
        add_user(s, "bid", ["bidder"])
        add_user(s, "aud", ["auditor"])
        for user in s.execute(select(User)).scalars():
            user.password_hash = hash_password(PASSWORD)
    return world.project_id


def client_of(app, username: str):
    client = app.test_client()
    assert login(client, username, PASSWORD).status_code == 302
    return client


def test_staff_build_and_download_a_verifiable_archive(app, ctx, project, tmp_path):
    staff = client_of(app, "stf")
    page = staff.get(f"/projects/{project}/archive")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "电子档案" in html and "ggzy archive verify" in html
    assert "尚未生成电子档案" not in html  # the finished procedure sealed the manifest (service task seal_archive)
    assert re.search(r'id="platform-key">[0-9a-f]{64}<', html)
    assert staff.post(f"/projects/{project}/archive").status_code == 400  # no CSRF token
    with ctx.sessions() as s:
        assert [b.kind for b in s.execute(select(archive.ArchiveBuild)).scalars()] == ["seal"]
    token = csrf_of(staff, f"/projects/{project}/archive")
    response = staff.post(f"/projects/{project}/archive", data={"csrf_token": token})
    assert response.status_code == 303
    download = staff.get(response.headers["Location"])
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert re.fullmatch(r'attachment; filename=LZ-2026-0001-archive-\d{8}-\d{6}\.zip',
                        download.headers["Content-Disposition"])
    (tmp_path / "a.zip").write_bytes(download.data)
    download.close()
    assert verify_archive(tmp_path / "a.zip").ok
    html = staff.get(f"/projects/{project}/archive").get_data(as_text=True)
    assert html.count("data-build=") == 2  # the seal and this zip and "尚未生成电子档案" not in html
    again = client_of(app, "reg").get(response.headers["Location"])
    assert again.data == download.data
    again.close()
    assert client_of(app, "aud").get(f"/projects/{project}/archive").status_code == 200


def test_others_are_refused(app, ctx, project):
    staff = client_of(app, "stf")
    token = csrf_of(staff, f"/projects/{project}/archive")
    location = staff.post(f"/projects/{project}/archive", data={"csrf_token": token}).headers["Location"]
    for name in ("stf2", "bid", "ten"):
        other = client_of(app, name)
        assert other.get(f"/projects/{project}/archive").status_code == 403, name
        assert other.get(location).status_code == 403, name
        if name == "stf2":
            token = csrf_of(other, "/projects")
            assert other.post(f"/projects/{project}/archive", data={"csrf_token": token}).status_code == 403
    with ctx.sessions() as s:
        assert [(b.kind, b.built_by) for b in s.execute(select(archive.ArchiveBuild).order_by(archive.ArchiveBuild.id))
                .scalars()] == [("seal", "stf"), ("zip", "stf")]
    assert staff.get(f"/projects/{project}/archive/999.zip").status_code == 404


def test_a_seal_is_listed_but_has_no_zip(app, ctx, project, world):
    with ctx.sessions.begin() as s:
        instance_id = s.execute(select(Instance.id).where(Instance.project_id == project)).scalar_one()
        sealed = archive.seal_archive(ServiceCall(s, instance_id, project, "stf", {}, "seal_archive"),
                                      archive_number="DA-9")
    staff = client_of(app, "stf")
    staff.get("/lang/en")
    html = staff.get(f"/projects/{project}/archive").get_data(as_text=True)
    assert "Electronic archive" in html and "Seal at archiving" in html and "DA-9" in html
    assert staff.get(f"/projects/{project}/archive/{sealed['archive_id']}.zip").status_code == 404


def test_in_the_browser(page, ctx, project, tmp_path):
    browser_login(page, "stf", PASSWORD)
    page.goto(f"{page.base_url}/projects/{project}/archive")
    assert page.inner_text("h1") == "电子档案"
    with page.expect_download() as info:
        page.click("#build-archive")
    target = tmp_path / "browser.zip"
    info.value.save_as(target)
    assert info.value.suggested_filename.startswith("LZ-2026-0001-archive-")
    assert verify_archive(target).ok
    page.goto(f"{page.base_url}/projects/{project}/archive")
    assert page.locator("#archive-builds tbody tr[data-build]").count() == 2  # the seal and this zip
    shot(page, "archive")
    assert page.js_errors == []
