"""The trading catalog: the deployed 发改 tables decide must-trade, level, centre, department and process."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from test_projects import CATALOG_FILES, make_world

from engine import catalog
from engine.actors import load_actor
from engine.catalog import Cell, read_cell
from engine.deploy import Upload, deploy
from engine.errors import EngineError, NotFound, PermissionDenied
from engine.models import DefinitionVersion, Organisation


@pytest.fixture
def world(ctx):
    """Organisations, users, the catalog (deployed by 发改) and the stand-in construction process."""
    make_world(ctx)
    return ctx


def decide(ctx, **overrides) -> catalog.CatalogDecision:
    values = {"category": "construction", "sub_type": "works", "estimate": Decimal("4000000"), "funding": "state",
              "location_code": "zy-linze"}
    values.update(overrides)
    with ctx.sessions() as s:
        return catalog.decide(s, **values)


@pytest.mark.parametrize(("sub_type", "estimate", "funding", "must_trade"), [
    ("works", "3999900.00", "state", False),      # 399.99万
    ("works", "3999999.99", "state", False),
    ("works", "4000000.00", "state", True),       # 400万: 以上 includes the amount itself
    ("goods", "1999900.00", "state", False),      # 199.99万
    ("goods", "2000000.00", "state", True),       # 200万
    ("services", "999900.00", "state", False),    # 99.99万
    ("services", "1000000.00", "state", True),    # 100万
    ("works", "4000000.00", "mixed", True),       # 部分使用国有资金 counts (令16号 §2)
    ("goods", "2000000.00", "mixed", True),
    ("works", "4000000.00", "private", False),
    ("works", "900000000.00", "private", False),
    ("services", "1000000.00", "private", False),
])
def test_must_trade_at_each_threshold_edge(world, sub_type, estimate, funding, must_trade):
    decision = decide(world, sub_type=sub_type, estimate=Decimal(estimate), funding=funding)
    assert decision.must_trade is must_trade
    assert (decision.department_code, decision.process_key) == ("dept-zjj", "construction_tender")
    assert "发改委令第16号" in decision.basis
    assert decision.rule_versions == {"catalog": 1, "catalog_level": 1}


@pytest.mark.parametrize(("estimate", "location", "level", "centre"), [
    ("29999999.99", "zy-linze", "county", "zy-linze"),
    ("30000000.00", "zy-linze", "city", "zy-centre"),
    ("500000.00", "zy-sunan", "county", "zy-sunan"),
    ("120000000.00", "zy-gaotai", "city", "zy-centre"),
])
def test_level_and_centre_follow_the_amount_and_the_location(world, estimate, location, level, centre):
    decision = decide(world, estimate=Decimal(estimate), location_code=location)
    assert (decision.level, decision.centre_code) == (level, centre)


def test_a_location_must_be_a_county_sub_centre(world):
    with pytest.raises(EngineError, match="不是县区分中心"):
        decide(world, location_code="zy-centre")
    with pytest.raises(NotFound):
        decide(world, location_code="dept-zjj-nowhere")


def test_categories_outside_the_catalog_are_refused(world):
    with pytest.raises(EngineError, match="没有类别 'land'"):
        decide(world, category="land")
    with pytest.raises(EngineError, match="没有类别"):
        decide(world, sub_type="consulting")


def test_without_a_deployed_catalog_nothing_is_decided(ctx):
    with pytest.raises(NotFound, match="交易目录尚未发布"):
        decide(ctx)
    with ctx.sessions() as s:
        assert catalog.catalog_rows(s) == []


def test_the_catalog_belongs_to_fgw_and_only_fgw_changes_it(world):
    with world.sessions() as s:
        owners = {v.key: s.get(Organisation, v.department_id).code
                  for v in s.execute(select(DefinitionVersion).where(
                      DefinitionVersion.key.in_(catalog.CATALOG_DECISIONS))).scalars()}
    assert owners == {"catalog": "dept-fgw", "catalog_level": "dept-fgw"}
    changed = CATALOG_FILES[1].read_text().replace("30000000", "50000000")
    with world.sessions.begin() as s, pytest.raises(PermissionDenied):
        deploy(s, [Upload("catalog_level.dmn", changed.encode())], load_actor(s, "zjj"))


def test_a_new_catalog_version_changes_what_is_enforced_and_shown(world):
    assert decide(world, estimate=Decimal("4500000")).must_trade is True
    assert decide(world, estimate=Decimal("40000000")).level == "city"
    works = CATALOG_FILES[0].read_text().replace("Decimal('4000000')", "Decimal('5000000')")
    level = CATALOG_FILES[1].read_text().replace("Decimal('30000000')", "Decimal('50000000')")
    with world.sessions.begin() as s:
        deploy(s, [Upload("catalog.dmn", works.encode()), Upload("catalog_level.dmn", level.encode())],
               load_actor(s, "fgw"))
    decision = decide(world, estimate=Decimal("4500000"))
    assert (decision.must_trade, decision.rule_versions) == (False, {"catalog": 2, "catalog_level": 2})
    assert decide(world, estimate=Decimal("40000000")).level == "county"
    with world.sessions() as s:
        tables = {t.key: t for t in catalog.catalog_rows(s)}
    assert (tables["catalog"].version, tables["catalog_level"].version) == (2, 2)
    assert tables["catalog"].rows[0].inputs[3] == Cell(">= Decimal('5000000')", "cmp", ">=", (Decimal("5000000"),))


def test_catalog_rows_read_the_deployed_tables(world):
    with world.sessions() as s:
        tables = catalog.catalog_rows(s)
    assert [(t.key, t.version, t.department_code, t.hit_policy) for t in tables] == [
        ("catalog", 1, "dept-fgw", "FIRST"), ("catalog_level", 1, "dept-fgw", "FIRST")]
    main = tables[0]
    assert main.department_name == "张掖市发展和改革委员会"
    assert len(main.inputs) == 4 and len(main.outputs) == 4
    assert [r.rule_id for r in main.rows] == ["rule_works_required", "rule_goods_required", "rule_services_required",
                                              "rule_voluntary"]
    works = main.rows[0]
    assert [c.kind for c in works.inputs] == ["eq", "eq", "in", "cmp"]
    assert works.inputs[2].values == ("state", "mixed")
    assert [c.values for c in works.outputs[:3]] == [(True,), ("dept-zjj",), ("construction_tender",)]
    assert "400 万元以上" in works.description
    assert [c.kind for c in main.rows[3].inputs] == ["eq", "in", "any", "any"]
    assert [(r.inputs[1].values, r.outputs[0].values) for r in tables[1].rows] == [
        ((Decimal("30000000"),), ("city",)), ((), ("county",))]


@pytest.mark.parametrize(("text", "unary", "cell"), [
    ("", True, Cell("", "any")),
    ("-", True, Cell("-", "any")),
    ("'works'", True, Cell("'works'", "eq", values=("works",))),
    ("? in ('a', 'b')", True, Cell("? in ('a', 'b')", "in", "in", ("a", "b"))),
    ("not in ('a',)", True, Cell("not in ('a',)", "in", "not in", ("a",))),
    ("< 50", True, Cell("< 50", "cmp", "<", (50,))),
    (">= Decimal('1000000')", True, Cell(">= Decimal('1000000')", "cmp", ">=", (Decimal("1000000"),))),
    ("estimate > 5 and funding == 'x'", True, Cell("estimate > 5 and funding == 'x'", "expr")),
    ("True", False, Cell("True", "value", values=(True,))),
    ("'dept-zjj'", False, Cell("'dept-zjj'", "value", values=("dept-zjj",))),
    ("estimate * 2", False, Cell("estimate * 2", "expr")),
])
def test_cells_are_read_as_simple_tests_where_they_are(text, unary, cell):
    assert read_cell(text, unary=unary) == cell


def test_a_failing_cell_is_reported_with_its_cause(world):
    broken = CATALOG_FILES[1].read_text().replace("&gt;= Decimal('30000000')", "&gt;= Decimal(undefined_name)")
    with world.sessions.begin() as s:
        deploy(s, [Upload("catalog_level.dmn", broken.encode())], load_actor(s, "fgw"))
    with pytest.raises(EngineError, match="NameError"):
        decide(world)
