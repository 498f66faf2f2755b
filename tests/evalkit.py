"""The world of the evaluation tests: a construction project with 4 opened bids and a confirmed 5-expert committee.

Built from the existing helpers: the procedure of ``test_construction_tender`` (``Run``, ``to_bidding``,
``open_bids``), real sealed bids and their decryption (``bidworld``), the expert pool (``test_draw.expert``)
and a real draw (``draw.draw_committee``) whose experts confirm; each expert gets a demo CA certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import bidworld
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from test_construction_tender import Run, World, open_bids, to_bidding

from engine import clock, draw, experts, pki, seal
from engine.actors import SYSTEM, Actor, add_user, load_actor
from engine.models import User

NAMES = ["甘肃陇原建设工程有限公司", "张掖市河西路桥有限责任公司", "临泽县祁连建筑安装有限公司",
         "高台县黑河水利工程有限公司"]
USCCS = ["91620702MA7ABCD12A", "91620702MA7ABCD13D", "91620702MA7ABCD14G", bidworld.uscc(404)]
PRICES = ["7650000.00", "7720000.00", "7810000.00", "7900000.00"]
EXPERTS = [("ea1", "A01"), ("ea2", "A01"), ("ea3", "A01"), ("ed1", "D01"), ("ed2", "D01")]
PLAN = draw.Plan(5, 0, (("A01", 3), ("D01", 2)))
TRAINED = date(2025, 3, 1)


def expert(s, username: str, code: str, *, trained: date | None = TRAINED) -> int:
    """Admit an expert of 临泽 (password ``secret-<username>``); return the user id."""
    return experts.add_expert(s, SYSTEM, username=username, display_name="专家" + username, classes=[code],
                              region_code="zy-linze", employer_name="兰州理工大学", trained_on=trained,
                              password="secret-" + username).user_id


@dataclass
class EvalWorld:
    """Everything an evaluation test needs."""

    run: Run
    world: World
    project_id: int
    bid_ids: list[int]
    draw_id: int
    members: dict[str, Actor]
    keys: dict[str, bytes]
    outsider: Actor
    auditor: Actor

    def sign(self, username: str, sha256: str, key_of: str | None = None) -> bytes:
        """Sign the report's 32 digest bytes with an expert's PKCS#8 key (what the browser and CLI do)."""
        key = seal.load_private_key(self.keys[key_of or username])
        return key.sign(bytes.fromhex(sha256), ec.ECDSA(hashes.SHA256()))


def make_eval_world(ctx, fixed_clock, world: World, **tender) -> EvalWorld:
    """Run the procedure to the committee step with 4 opened bids, draw and confirm 5 experts, issue certificates."""
    run = Run(ctx, fixed_clock, world)
    to_bidding(run, **tender)
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    run.market = bidworld.make_market(ctx, NAMES, usccs=USCCS)
    run.at("2026-10-19T10:00:00+08:00")
    bid_ids = [bidworld.bid(ctx, run.market, world.project_id, bidder, price)
               for bidder, price in zip(run.market.bidders, PRICES, strict=True)]
    open_bids(run, bid_ids, "2026-10-20T09:30:01+08:00")
    run.at("2026-10-20T10:30:00+08:00")
    with ctx.sessions.begin() as s:
        for name, code in [*EXPERTS, ("ea4", "A01"), ("ed3", "D01")]:
            expert(s, name, code)
        outsider = expert(s, "e_outside", "A01", trained=None)
        add_user(s, "aud", ["auditor"], password="secret-aud")
        add_user(s, "stf_web", ["staff"], password="secret-stf_web", organisation_id=world.centre_id)
        chosen = draw.draw_committee(s, world.project_id, PLAN, world.actors["stf"],
                                     excluded_organisation_ids=[b.organisation_id for b in run.market.bidders],
                                     evaluation_at=clock.now() + timedelta(hours=1), nonce="eval-nonce-01")
        draw_id = chosen.id
        seats = draw.seats_of(s, draw_id)
        users = {u.id: u for u in s.execute(select(User).where(User.id.in_([x.expert_id for x in seats]))).scalars()}
        members, keys = {}, {}
        for seat in seats:
            user = users[seat.expert_id]
            actor = load_actor(s, user.username)
            draw.respond(s, seat.id, actor, accept=True)
            _, key_path = pki.issue_demo_certificate(s, run.market.demo, user, None)
            members[user.username], keys[user.username] = actor, key_path.read_bytes()
        outsider_actor = s.get(User, outsider)
        outsider_actor = load_actor(s, outsider_actor.username)
        auditor = load_actor(s, "aud")
    return EvalWorld(run, world, world.project_id, bid_ids, draw_id, dict(sorted(members.items())), keys,
                     outsider_actor, auditor)


COMPREHENSIVE = {"evaluation_method": "comprehensive",
                 "evaluation_weights": [{"factor": "投标报价", "weight": 60}, {"factor": "施工组织设计", "weight": 30},
                                        {"factor": "企业信誉", "weight": 10}]}
LOWEST_PRICE = {"evaluation_method": "lowest_price", "evaluation_weights": []}


def all_pass(bid_ids: list[int], criteria=("business_licence", "qualification", "project_manager", "credit"),
             **fails: tuple[int, str]) -> dict:
    """Return a qualification sheet passing everything except ``criterion=(bid_id, reason)``."""
    sheet = {str(b): {c: {"passed": True, "reason": ""} for c in criteria} for b in bid_ids}
    for criterion, (bid_id, reason) in fails.items():
        sheet[str(bid_id)][criterion] = {"passed": False, "reason": reason}
    return sheet
