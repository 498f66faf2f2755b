"""The authorization matrix: every route x every role (and anonymous), generated from the URL map.

A route that is not in EXPECTED fails the test, so no new route ships without a decision on who may call it.
"""

from __future__ import annotations

import re

import pytest
from conftest import login

from engine.actors import add_user, load_actor
from engine.models import ROLES
from engine.tokens import create_token
from web.access import AUTHENTICATED, PUBLIC

ALL = frozenset(ROLES)
EXPECTED: dict[str, frozenset[str]] = {
    "home.index": frozenset([PUBLIC]),
    "auth.login": frozenset([PUBLIC]),
    "auth.language": frozenset([PUBLIC]),
    "auth.logout": frozenset([AUTHENTICATED]),
    "auth.password": frozenset([AUTHENTICATED]),
    "people.users": frozenset(["admin"]),
    "people.user_active": frozenset(["admin"]),
    "people.organisations": frozenset(["admin"]),
    "admin.deploy": frozenset(["admin", "regulator"]),
    "admin.deploy_edited": frozenset(["admin", "regulator"]),
    "admin.edit": frozenset(["admin", "regulator"]),
    "admin.versions": frozenset(["admin", "regulator", "auditor"]),
    "admin.history": frozenset(["admin", "regulator", "auditor"]),
    "admin.show": frozenset(["admin", "regulator", "auditor"]),
    "admin.source": frozenset(["admin", "regulator", "auditor"]),
    "admin.diff": frozenset(["admin", "regulator", "auditor"]),
    "instances.index": ALL,
    "instances.show": ALL,
    "instances.diagram": ALL,
    "instances.suspend": frozenset(["staff", "regulator", "admin"]),
    "instances.resume": frozenset(["staff", "regulator", "admin"]),
    "instances.terminate": frozenset(["staff", "regulator", "admin"]),
    "instances.retry": frozenset(["staff", "admin"]),
    "inbox.index": ALL - {"auditor"},
    "inbox.claim": ALL - {"auditor"},
    "inbox.unclaim": ALL - {"auditor"},
    "inbox.reassign": frozenset(["staff", "admin"]),
    "tasks.show": ALL - {"auditor"},
    "tasks.download": frozenset([AUTHENTICATED]),
    "tokens.index": frozenset([AUTHENTICATED]),
    "tokens.revoke": frozenset([AUTHENTICATED]),
    "api-docs.openapi_json": frozenset([PUBLIC]),
    "api_v1.start_instance": frozenset(["admin", "staff", "regulator", "tenderer", "agency"]),
    "api_v1.instance": frozenset([AUTHENTICATED]),
    "api_v1.tasks": frozenset([AUTHENTICATED]),
    "api_v1.task": frozenset([AUTHENTICATED]),
    "api_v1.complete": frozenset([AUTHENTICATED]),
    "projects.index": frozenset(["staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "projects.new": frozenset(["tenderer", "agency"]),
    "projects.show": frozenset(["staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "projects.close": frozenset(["tenderer", "agency", "staff", "admin"]),
    "portal.catalog": frozenset([PUBLIC]),
    "portal.notices": frozenset([PUBLIC]),
    "portal.notice": frozenset([PUBLIC]),
    # CA certificates (pki)
    "certificates.mine": frozenset(["bidder", "expert", "tenderer", "agency"]),
    "certificates.withdraw": frozenset(["bidder", "expert", "tenderer", "agency"]),
    "certificates.lookup": frozenset(["staff", "regulator", "auditor", "admin"]),
    "certificates.roots": frozenset(["admin"]),
    "certificates.root_active": frozenset(["admin"]),
    "certificates.crl": frozenset(["admin"]),
    # complaints (投诉, R17)
    "complaints.index": frozenset(["bidder", "tenderer", "agency", "staff", "regulator", "auditor", "admin"]),
    "complaints.new": frozenset(["bidder", "tenderer", "agency"]),
    "complaints.show": frozenset(["bidder", "tenderer", "agency", "staff", "regulator", "auditor", "admin"]),
    "complaints.withdraw": frozenset(["bidder", "tenderer", "agency"]),
    "complaints.decisions": frozenset([PUBLIC]),
    # market entities and credit (market)
    "companies.index": frozenset(["staff", "regulator", "expert", "auditor", "admin"]),
    "companies.show": frozenset(["staff", "regulator", "expert", "auditor", "admin"]),
    "companies.file": frozenset(["staff", "regulator", "expert", "auditor", "admin", "bidder"]),
    "companies.own": frozenset(["bidder"]),
    "companies.profile": frozenset(["bidder"]),
    "companies.add_licence": frozenset(["bidder"]),
    "companies.add_person": frozenset(["bidder"]),
    "companies.add_certificate": frozenset(["bidder"]),
    "companies.add_performance": frozenset(["bidder"]),
    "companies.add_commitment": frozenset(["bidder"]),
    "companies.withdraw": frozenset(["bidder"]),
    "credit.public": frozenset([PUBLIC]),
    "credit.events": frozenset(["regulator", "auditor", "admin"]),
    "credit.new": frozenset(["regulator"]),
    "credit.remove": frozenset(["regulator"]),
    # electronic archive (电子档案, R8)
    "archive.index": frozenset(["staff", "regulator", "auditor", "admin"]),
    "archive.build": frozenset(["staff", "regulator", "auditor", "admin"]),
    "archive.download": frozenset(["staff", "regulator", "auditor", "admin"]),
    # bid bonds and guarantees (bonds, R9); the bank API is signature-authenticated (unsigned: 400)
    "bank.notifications": frozenset([PUBLIC]),
    "bonds.index": frozenset(["bidder", "staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "bonds.open_account": frozenset(["bidder"]),
    "bonds.guarantee": frozenset(["bidder"]),
    "bonds.project": frozenset(["staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "bonds.compute": frozenset(["staff", "admin"]),
    "bonds.send": frozenset(["staff", "admin"]),
    "bonds.banks": frozenset(["admin"]),
    "bonds.issuers": frozenset(["admin"]),
    # expert pool and expert draws (R14)
    "experts.index": frozenset(["admin", "staff", "regulator", "auditor"]),
    "experts.new": frozenset(["admin", "staff"]),
    "experts.me": frozenset(["expert"]),
    "experts.show": frozenset(["admin", "staff", "regulator", "auditor", "expert"]),
    "experts.suspend": frozenset(["admin", "staff"]),
    "experts.reinstate": frozenset(["admin", "staff"]),
    "experts.train": frozenset(["admin", "staff"]),
    "experts.unavailable": frozenset(["admin", "staff", "expert"]),
    "experts.available": frozenset(["admin", "staff", "expert"]),
    "experts.health": frozenset(["admin", "staff", "regulator", "auditor"]),
    "experts.draws": frozenset(["staff", "auditor", "admin"]),
    "experts.draw_new": frozenset(["staff"]),
    "experts.draw_show": ALL,
    "experts.draw_run": frozenset(["staff"]),
    "experts.draw_reveal": frozenset(["staff"]),
    "experts.my_draws": frozenset(["expert"]),
    "experts.respond": frozenset(["expert"]),
    "experts.replay": frozenset(["staff", "auditor", "admin"]),
    # sealed bids and the opening (R7)
    "bids.index": frozenset(["bidder"]),
    "bids.register": frozenset(["bidder"]),
    "bids.project": frozenset(["bidder"]),
    "bids.document": frozenset(["bidder"]),
    "bids.submit": frozenset(["bidder"]),
    "bids.withdraw": frozenset(["bidder"]),
    "bids.receipt": frozenset(["bidder"]),
    "bids.package": frozenset(["bidder"]),
    "bids.decrypt": frozenset(["bidder"]),
    "bids.objection": frozenset(["bidder"]),
    "bids.opening": frozenset(["bidder", "staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "bids.platform_key": frozenset([PUBLIC]),
    # evaluation
    "evaluation.index": frozenset(["expert", "staff", "auditor"]),
    "evaluation.start": frozenset(["staff"]),
    "evaluation.evaluate": frozenset(["expert"]),
    "evaluation.save": frozenset(["expert"]),
    "evaluation.report": frozenset(["expert", "auditor"]),
    "evaluation.sign": frozenset(["expert"]),
    "evaluation.progress": frozenset(["expert", "staff", "auditor"]),
    # award and result letters (中标通知书, 法 §45)
    "letters.index": frozenset(["bidder"]),
    "letters.project": frozenset(["staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "letters.send": frozenset(["staff", "tenderer", "agency"]),
    "letters.show": frozenset(["bidder", "staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "letters.download": frozenset(["bidder", "staff", "regulator", "tenderer", "agency", "auditor", "admin"]),
    "evaluation.replace": frozenset(["staff"]),
    "evaluation.respond": frozenset(["expert"]),
}
SAMPLE = {"int": "1", "string": "x", "default": "x", "path": "x"}


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        url = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", lambda m: SAMPLE.get(m.group(1) or "default", "x"),
                     rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def _allowed(declared: frozenset[str], role: str | None) -> bool:
    if PUBLIC in declared:
        return True
    if role is None:
        return False
    return AUTHENTICATED in declared or role in declared


def test_every_route_has_an_expected_entry(app):
    from web.access import access_of

    with app.test_request_context():
        endpoints = {endpoint for endpoint, _, _ in _routes(app)}
        missing = sorted(endpoints - set(EXPECTED))
        assert missing == [], f"routes without an authorization-matrix entry: {missing}"
        for endpoint in endpoints:
            assert access_of(endpoint) == EXPECTED[endpoint], endpoint


@pytest.fixture
def people(ctx):
    with ctx.sessions.begin() as s:
        for role in ROLES:
            add_user(s, f"u_{role}", [role], password=f"pw-{role}-123")
    return {role: (f"u_{role}", f"pw-{role}-123") for role in ROLES}


def _bearer(ctx, username):
    """Return a fresh token's header (a sampled URL may revoke a token: POST /account/tokens/1/revoke)."""
    if username is None:
        return {}
    with ctx.sessions.begin() as s:
        return {"Authorization": "Bearer " + create_token(s, load_actor(s, username).user_id, "matrix")[1]}


@pytest.mark.parametrize("role", [None, *ROLES])
def test_access_is_enforced_for_every_route(app, ctx, people, role):
    client = app.test_client()
    api_client = app.test_client()  # the JSON API takes bearer tokens only, never the session cookie
    if role is not None:
        assert login(client, *people[role]).status_code == 302
    app.config["WTF_CSRF_ENABLED"] = False
    for endpoint, method, url in _routes(app):
        if endpoint in ("auth.logout", "auth.login", "auth.language"):
            continue
        if url.startswith("/api/"):
            response = api_client.open(url, method=method, headers=_bearer(ctx, role and people[role][0]))
        else:
            response = client.open(url, method=method)
        allowed = _allowed(EXPECTED[endpoint], role)
        where = f"{method} {url} as {role or 'anonymous'}"
        if allowed:
            assert response.status_code not in (401, 403), where
            assert "/login" not in response.headers.get("Location", ""), where
        elif role is None:
            assert response.status_code in (302, 401), where
            if response.status_code == 302:
                assert "/login" in response.headers["Location"], where
        else:
            assert response.status_code == 403, where
