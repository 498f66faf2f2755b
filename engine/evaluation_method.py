"""The evaluation methods of the tender documents and the price formula, as data (pure, except reading the rule).

经评审的最低投标价法 (``lowest_price``) ranks the qualified bids by price. 综合评估法
(``comprehensive``) scores the tender's weighted factors: each factor's part (technical,
commercial, price) follows its name; the experts score the technical and commercial factors within
their weights, and the one price factor is computed with the parameters of 住建's decision
``ct_price_score``:

    base price  = mean(prices of the qualified bids) x base_factor            (rounded to 0.01)
    deviation % = (price - base) / base x 100
    price score = max(0, max - |deviation %| x (penalty_above if deviation > 0 else penalty_below))  (0.01)

where ``max`` is the price factor's weight. Rounding is half-up throughout.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.orm import Session

from engine import decisions
from engine.errors import EngineError, NotFound
from engine.models import Project

METHODS = {"lowest_price": "经评审的最低投标价法", "comprehensive": "综合评估法"}
CRITERIA = (("business_licence", "营业执照"), ("qualification", "资质"), ("project_manager", "项目经理"),
            ("credit", "信用"))
PARTS = {"technical": "技术", "commercial": "商务", "price": "价格"}
TECHNICAL_WORDS = ("技术", "施工组织", "方案", "设计", "工期", "质量", "安全", "环保")
PRICE_WORDS = ("报价", "价格")
PRICE_DECISION = "ct_price_score"
MAX_CANDIDATES = 3
CENT = Decimal("0.01")

def part_of(factor: str) -> str:
    """Return the part (price, technical or commercial) a tender factor's name belongs to."""
    if any(word in factor for word in PRICE_WORDS):
        return "price"
    return "technical" if any(word in factor for word in TECHNICAL_WORDS) else "commercial"


def method_parameters(method: str, weights: list[dict[str, Any]], formula: dict[str, Any]) -> dict[str, Any]:
    """Return the frozen parameters of a method: criteria, scored factors, the price formula, the outlier rule."""
    if method not in METHODS:
        raise EngineError(f"招标文件未载明评标方法 (unknown evaluation method {method!r}; 条例 §49)",
                          field="evaluation_method")
    parameters: dict[str, Any] = {"criteria": [{"key": k, "label": label} for k, label in CRITERIA],
                                  "factors": [], "price": None, "outlier_percent": str(formula["outlier_percent"]),
                                  "rule_version": formula.get("rule_version")}
    if method == "lowest_price":
        return parameters
    total, prices = Decimal(0), []
    for index, row in enumerate(weights or []):
        name, weight = str(row["factor"]), Decimal(str(row["weight"]))
        total += weight
        if part_of(name) == "price":
            prices.append({"factor": name, "max": str(weight)})
        else:
            parameters["factors"].append({"key": f"f{index + 1}", "factor": name, "part": part_of(name),
                                          "max": str(weight)})
    if total != 100 or len(prices) != 1:
        raise EngineError(f"综合评估法的权重合计应为 100 且恰有一项投标报价 (weights sum to {total}, "
                          f"{len(prices)} price factor(s))", field="evaluation_weights")
    parameters["price"] = {**prices[0], "base_factor": str(formula["base_factor"]),
                           "penalty_above": str(formula["penalty_above"]),
                           "penalty_below": str(formula["penalty_below"])}
    return parameters


def price_scores(price: dict[str, str], prices: dict[int, Decimal]) -> tuple[Decimal, dict[int, dict[str, str]]]:
    """Return the base price and each bid's deviation and price score (the formula of ``ct_price_score``)."""
    mean = sum(prices.values(), Decimal(0)) / len(prices)
    base = (mean * Decimal(price["base_factor"])).quantize(CENT, ROUND_HALF_UP)
    top, out = Decimal(price["max"]), {}
    for bid_id, amount in prices.items():
        deviation = (amount - base) / base * 100
        penalty = Decimal(price["penalty_above"] if deviation > 0 else price["penalty_below"])
        score = max(Decimal(0), top - abs(deviation) * penalty).quantize(CENT, ROUND_HALF_UP)
        out[bid_id] = {"deviation": str(deviation.quantize(Decimal("0.0001"), ROUND_HALF_UP)), "score": str(score)}
    return base, out


def formula_of(session: Session, project: Project) -> dict[str, Any]:
    """Return the price-formula parameters the latest deployed ``ct_price_score`` gives for a project."""
    version = decisions.latest(session, PRICE_DECISION)
    if version is None:
        raise NotFound(f"价格分计算规则尚未发布 (the decision {PRICE_DECISION} is not deployed)")
    out = decisions.evaluate(version, sub_type=project.sub_type)
    if not out:
        raise EngineError(f"{PRICE_DECISION} v{version.version} has no rule for sub-type {project.sub_type!r}")
    return {**{k: str(out[k]) for k in ("base_factor", "penalty_above", "penalty_below", "outlier_percent")},
            "rule_version": version.version}




def rank(method: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order the qualified bids: by total, lower price, higher technical score (综合评估法) or by price; then time."""
    if method == "comprehensive":
        return sorted(rows, key=lambda r: (-Decimal(r["total"]), Decimal(r["price"]), -Decimal(r["technical"]),
                                           r["submitted_at"], r["bid_id"]))
    return sorted(rows, key=lambda r: (Decimal(r["price"]), r["submitted_at"], r["bid_id"]))
