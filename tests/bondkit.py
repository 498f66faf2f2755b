"""The world of the bond tests: a project whose process holds a bid bond and deadline, bidders, a bank, a CA.

The project runs ``bond_test``, a small real process deployed through the engine: a tender step whose data
sets ``bid_bond`` and ``bid_deadline`` (as ``construction_tender``'s tender form does), a contract step, and
the ``refund_bonds`` service task (its element id must differ from the operator id: SpiffWorkflow's parser
resolves flows by id and would find the operator element). ``ct_bond_refund`` is deployed by the 住建
regulator, as in the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from conftest import ROOT, deploy_texts
from sqlalchemy import select

from engine import bank, bonds, clock, pki, runtime
from engine.actors import SYSTEM, Actor, add_user, load_actor
from engine.deploy import collect, deploy
from engine.models import InboxTask, Project
from engine.orgs import add_organisation, uscc_check_char

BID_BOND = Decimal("80000.00")
DEADLINE = datetime.fromisoformat("2026-10-20T09:30:00+08:00")
CODE = "LZ-2026-0007"
PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="definitions_bond_test"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="bond_test" name="保证金测试 Bond test" isExecutable="true">
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_tenderer" name="tenderer">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>tender</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>sign_contract</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>compute_refunds</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>archive</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="tender" name="招标文件 Tender"><bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="sign_contract" name="签订合同 Contract">
      <bpmn:extensionElements>
        <spiffworkflow:postScript>contract_signed_at = now()</spiffworkflow:postScript>
      </bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:serviceTask id="compute_refunds" name="退还保证金 Refund bonds">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="refund_bonds" resultVariable="refunds">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="contract_signed_at" type="any" value="contract_signed_at" />
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:userTask id="archive" name="归档 Archive"><bpmn:incoming>f4</bpmn:incoming>
      <bpmn:outgoing>f5</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f5</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="tender" />
    <bpmn:sequenceFlow id="f2" sourceRef="tender" targetRef="sign_contract" />
    <bpmn:sequenceFlow id="f3" sourceRef="sign_contract" targetRef="compute_refunds" />
    <bpmn:sequenceFlow id="f4" sourceRef="compute_refunds" targetRef="archive" />
    <bpmn:sequenceFlow id="f5" sourceRef="archive" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def uscc(region: str, serial: int) -> str:
    """A valid 统一社会信用代码."""
    first17 = f"91{region}MA7BXND{serial:02d}"
    return first17 + uscc_check_char(first17)


@dataclass
class World:
    """Everything a bond test needs."""

    project_id: int
    instance_id: int
    tenderer_id: int
    bidders: list[int]
    names: list[str]
    actors: dict[str, Actor]
    bank_key: object
    ca: pki.Issued
    issuer: pki.Issued
    issuer_uscc: str
    tenderer_uscc: str
    bidder_usccs: list[str]


BIDDER_NAMES = ("甘肃陇原建设工程有限公司", "张掖市河西路桥有限责任公司", "临泽县祁连建筑安装有限公司")


def make_world(ctx, *, bank_url: str = "http://127.0.0.1:9/bank") -> World:
    """Create organisations, users, the bank partner, a trusted CA with an approved issuer, and the project."""
    from engine.guarantees import approve_issuer

    now = clock.now()
    with ctx.sessions.begin() as s:
        centre = add_organisation(s, "zy-linze", "临泽县公共资源交易分中心", "centre", level="county")
        zjj = add_organisation(s, "dept-zjj", "张掖市住房和城乡建设局", "department")
        tenderer_uscc = uscc("620723", 1)
        tenderer = add_organisation(s, "lz-water", "临泽县水务投资有限公司", "company", uscc=tenderer_uscc)
        usccs = [uscc("620100", 10 + i) for i in range(len(BIDDER_NAMES))]
        bidders = [add_organisation(s, f"bidder-{i}", name, "company", uscc=usccs[i])
                   for i, name in enumerate(BIDDER_NAMES)]
        add_user(s, "ten", ["tenderer"], organisation_id=tenderer.id, password="secret-ten")
        add_user(s, "stf", ["staff"], organisation_id=centre.id, password="secret-stf")
        add_user(s, "reg", ["regulator"], organisation_id=zjj.id, password="secret-reg")
        add_user(s, "adm", ["admin"], password="secret-adm")
        for i, org in enumerate(bidders):
            add_user(s, f"b{i}", ["bidder"], organisation_id=org.id, password=f"secret-b{i}")
        actors = {n: load_actor(s, n) for n in ("ten", "stf", "reg", "adm", "b0", "b1", "b2")}
        key = bank.generate_key()
        bonds.register_bank(s, actors["adm"], code="simbank", name="模拟银行张掖分行",
                            public_key_pem=bank.public_pem(key), base_url=bank_url)
        ca = pki.make_root("测试 CA", not_before=now - timedelta(days=1), not_after=now + timedelta(days=3650))
        pki.add_trusted_root(s, SYSTEM, ca.cert_pem, name="测试 CA")
        pki.upload_crl(s, SYSTEM, pki.make_crl(ca, [], this_update=now, next_update=now + timedelta(days=365)))
        issuer_uscc = uscc("620700", 90)
        issuer = pki.issue_certificate(ca, common_name="张掖某担保有限公司保函专用章", uscc=issuer_uscc,
                                       usage=("signature",), not_before=now - timedelta(days=1),
                                       not_after=now + timedelta(days=730))
        approve_issuer(s, actors["adm"], uscc=issuer_uscc, name="张掖某担保有限公司")
        ids = (centre.id, zjj.id, tenderer.id, [b.id for b in bidders])
    with ctx.sessions.begin() as s:
        deploy(s, collect([str(ROOT / "rules" / "ct_bond_refund.dmn")]), load_actor(s, "reg"))
    deploy_texts(ctx, {"bond_test.bpmn": PROCESS})
    with ctx.sessions.begin() as s:
        project = Project(code=CODE, name="临泽县城区供水管网改造工程", category="construction", sub_type="works",
                          location_id=ids[0], estimate=Decimal("8000000.00"), funding="state", tenderer_id=ids[2],
                          centre_id=ids[0], department_id=ids[1], process_key="bond_test", status="registered",
                          registered_by="ten")
        s.add(project)
        s.flush()
        instance = runtime.start_instance(s, "bond_test", {"project_id": project.id, "project_code": CODE}, SYSTEM,
                                          project_id=project.id, centre_id=ids[0], department_id=ids[1],
                                          tenderer_id=ids[2], category="construction", title=project.name)
        project.instance_id = instance.id
        project_id, instance_id = project.id, instance.id
    world = World(project_id, instance_id, ids[2], ids[3], list(BIDDER_NAMES), actors, key, ca, issuer,
                  issuer_uscc, tenderer_uscc, usccs)
    complete(ctx, world, "tender", {"bid_bond": BID_BOND, "bid_deadline": DEADLINE.isoformat()})
    return world


def complete(ctx, world: World, element: str, data: dict) -> None:
    """Complete the open task ``element`` of the project's instance as the tenderer."""
    with ctx.sessions.begin() as s:
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == world.instance_id,
                                                 InboxTask.element_id == element)).scalar_one()
        runtime.complete_task(s, task.task_id, data, world.actors["ten"])
