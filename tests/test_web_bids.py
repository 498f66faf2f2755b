"""The bidder's pages: registration, upload of a sealed package, receipts, isolation between bidders, the opening."""

from __future__ import annotations

import io
import re
from datetime import datetime

from bidworld import document, pay_bond, sealed
from conftest import csrf_of, login
from test_bids import CODE, scenario  # noqa: F401 - the scenario fixture
from test_construction_tender import world  # noqa: F401 - the world fixture

from engine import bids, seal
from engine.actors import add_user
from engine.models import AuditEvent

PAID_AT = datetime.fromisoformat("2026-10-19T10:00:00+08:00")


def _login(app, username: str, password: str):
    client = app.test_client()
    assert login(client, username, password).status_code == 302
    return client


def _bidder_client(app, index: int):
    return _login(app, f"bidder{index}", f"secret-bidder{index}")


def _upload(client, project_id: int, package: bytes):
    token = csrf_of(client, f"/bids/projects/{project_id}")
    return client.post(f"/bids/projects/{project_id}/submit", data={
        "csrf_token": token, "device_fingerprint": "fp-browser-1",
        "package": (io.BytesIO(package), "bid.sealed")}, content_type="multipart/form-data")


def test_bidders_see_only_their_own_bids_and_everyone_sees_the_record_after_the_opening(
        app, ctx, scenario, world):  # noqa: F811
    run, market, bidders = scenario
    with ctx.sessions.begin() as s:
        add_user(s, "stf2", ["staff"], password="secret-stf2", organisation_id=world.centre_id)
    run.at("2026-10-19T10:00:00+08:00")
    chosen = {2: "7650000.00", 4: "7720000.00", 5: "7810000.00"}
    for index in chosen:
        pay_bond(ctx, market, world.project_id, bidders[index], "160000.00", PAID_AT)
    clients = {i: _bidder_client(app, i) for i in (*chosen, 0)}
    for index, price in chosen.items():
        response = _upload(clients[index], world.project_id, sealed(bidders[index], CODE, price,
                                                                    document(bidders[index])))
        assert response.status_code == 302
    with ctx.sessions() as s:
        mine = {i: bids.my_bids(s, bidders[i].actor, world.project_id)[0] for i in chosen}
    a, b = mine[2], mine[4]
    assert (a.remote_addr, a.device_fingerprint) == ("127.0.0.1", "fp-browser-1")

    # A's receipt and package are A's only; B gets 404 for them and cannot withdraw A's bid.
    receipt = clients[2].get(f"/bids/{a.id}/receipt")
    assert receipt.status_code == 200 and seal.verify_receipt(
        receipt.data, clients[0].get("/platform-key?download=1").data)["bid_id"] == a.id
    for path in (f"/bids/{a.id}/receipt", f"/bids/{a.id}/package"):
        assert clients[4].get(path).status_code == 404
    token = csrf_of(clients[4], f"/bids/projects/{world.project_id}")
    assert clients[4].post(f"/bids/{a.id}/withdraw", data={"csrf_token": token}).status_code == 404
    page_b = clients[4].get(f"/bids/projects/{world.project_id}").get_data(as_text=True)
    assert a.package_sha256[:16] not in page_b and b.package_sha256[:16] in page_b
    assert bidders[2].name not in page_b

    # Staff see neither names nor the count before the opening (法 §22).
    staff = _login(app, "stf2", "secret-stf2")
    before = staff.get(f"/opening/{world.project_id}").get_data(as_text=True)
    assert "尚未生成" in before and not any(bidders[i].name in before for i in chosen)
    assert clients[0].get(f"/opening/{world.project_id}").status_code == 403  # bidder 0 never bid

    # Decrypting before the deadline: refused, and the attempt is audited.
    token = csrf_of(clients[2], f"/bids/projects/{world.project_id}")
    clients[2].post(f"/bids/{a.id}/decrypt", data={"csrf_token": token, "content_key": seal.b64(bytes(32))})
    with ctx.sessions() as s:
        assert s.query(AuditEvent).filter(AuditEvent.action == "bid.open_refused").count() == 1

    # The opening: the deadline passes, two bidders decrypt in the window, one does not.
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    assert run.sweep("2026-10-20T09:30:01+08:00") == 1
    run.at("2026-10-20T09:35:00+08:00")
    for index in (2, 4):
        bid = mine[index]
        package = clients[index].get(f"/bids/{bid.id}/package").data
        key = seal.unwrap_key(seal.parse(package), bidders[index].key)
        token = csrf_of(clients[index], f"/bids/projects/{world.project_id}")
        page = clients[index].post(f"/bids/{bid.id}/decrypt", data={"csrf_token": token,
                                                                    "content_key": seal.b64(key)},
                                   follow_redirects=True).get_data(as_text=True)
        assert "已解密" in page
    assert run.sweep("2026-10-20T10:00:02+08:00") == 1
    for client in (clients[2], clients[5], staff):
        record = client.get(f"/opening/{world.project_id}").get_data(as_text=True)
        assert "7650000.00" in record and "7720000.00" in record and "7810000.00" not in record
        assert all(bidders[i].name in record for i in chosen)
    bidder_view = clients[5].get(f"/opening/{world.project_id}").get_data(as_text=True)
    assert re.search(r"未解密", bidder_view) and "串通投标迹象" not in bidder_view
    staff_view = staff.get(f"/opening/{world.project_id}").get_data(as_text=True)
    assert "串通投标迹象" in staff_view and 'data-kind="same_device"' in staff_view  # one browser for all three


def test_the_platform_key_is_public_and_registration_goes_through_the_form(app, ctx, scenario, world):  # noqa: F811
    client = app.test_client()
    page = client.get("/platform-key").get_data(as_text=True)
    assert "BEGIN PUBLIC KEY" in page
    other = _bidder_client(app, 1)
    token = csrf_of(other, "/bids")
    response = other.post("/bids/register", data={"csrf_token": token, "project_code": CODE},
                          follow_redirects=True)
    assert "已报名" in response.get_data(as_text=True)  # registered once already by the scenario
    assert other.get("/bids").status_code == 200
    assert other.get("/bids/projects/999").status_code == 404
    pdf = world.pdf  # the tender documents of the tender notice, recorded at registration
    download = other.get(f"/bids/projects/{world.project_id}/documents/{pdf['sha256']}")
    assert download.status_code == 200 and download.data.startswith(b"%PDF")
    download.close()
    assert other.get(f"/bids/projects/{world.project_id}/documents/{'0' * 64}").status_code == 404
    outsider = app.test_client()  # not logged in
    assert outsider.get(f"/bids/projects/{world.project_id}/documents/{pdf['sha256']}").status_code in (302, 401, 403)
