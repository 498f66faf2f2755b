"""What the platform forbids in a diagram, found before anything is stored.

Each check names the file, line and element: every user/manual task sits in a
lane named after a role; every form, decision and called process resolves;
every piece of code compiles under RestrictedPython and calls only diagram
functions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

from lxml import etree

from engine import services
from engine.functions import FUNCTION_NAMES
from engine.models import ROLES
from engine.sandbox import decisions_called, lint_code
from engine.xmlsafe import NS, problem

FORM_PROPERTY = "formJsonSchemaFilename"
DUE_PROPERTY = "dueAt"
_HUMAN_TASKS = ("userTask", "manualTask")


@dataclass
class Snippet:
    """One piece of diagram code and where it sits."""

    element: etree._Element
    text: str
    expression: bool


@dataclass
class BpmnRefs:
    """What a BPMN file refers to outside itself."""

    processes: list[str] = field(default_factory=list)
    decisions: dict[str, etree._Element] = field(default_factory=dict)
    forms: dict[str, etree._Element] = field(default_factory=dict)
    called: dict[str, etree._Element] = field(default_factory=dict)


def _owner(element: etree._Element) -> etree._Element:
    """Return the nearest ancestor (or self) that carries an id."""
    node = element
    while node is not None and node.get("id") is None:
        node = node.getparent()
    return node if node is not None else element


def code_snippets(root: etree._Element) -> Iterator[Snippet]:
    """Yield every piece of code in a BPMN file."""
    for script in root.iterfind(".//bpmn:scriptTask/bpmn:script", NS):
        yield Snippet(_owner(script), script.text or "", expression=False)
    for tag in ("preScript", "postScript"):
        for node in root.iterfind(f".//spiffworkflow:{tag}", NS):
            if (node.text or "").strip():
                yield Snippet(_owner(node), node.text or "", expression=False)
    for path in (".//bpmn:conditionExpression", ".//bpmn:timeDate", ".//bpmn:timeDuration",
                 ".//bpmn:timeCycle", ".//bpmn:loopCardinality", ".//bpmn:completionCondition"):
        for node in root.iterfind(path, NS):
            if (node.text or "").strip():
                yield Snippet(_owner(node), node.text or "", expression=True)
    for node in root.iterfind(f".//spiffworkflow:property[@name='{DUE_PROPERTY}']", NS):
        yield Snippet(_owner(node), node.get("value", ""), expression=True)
    for node in root.iterfind(".//spiffworkflow:serviceTaskOperator/spiffworkflow:parameters/spiffworkflow:parameter",
                              NS):
        yield Snippet(_owner(node), node.get("value", ""), expression=True)


def bpmn_refs(root: etree._Element) -> BpmnRefs:
    """Collect a BPMN file's executable processes and its outside references."""
    refs = BpmnRefs()
    local = {p.get("id") for p in root.iterfind(".//bpmn:process", NS)}
    refs.processes = [p.get("id") for p in root.iterfind(".//bpmn:process", NS) if p.get("isExecutable") == "true"]
    for node in root.iterfind(".//bpmn:businessRuleTask", NS):
        ref = node.find("bpmn:extensionElements/spiffworkflow:calledDecisionId", NS)
        refs.decisions.setdefault((ref.text or "").strip() if ref is not None else "", node)
    for snippet in code_snippets(root):
        for decision in decisions_called(snippet.text):
            refs.decisions.setdefault(decision, snippet.element)
    for node in root.iterfind(f".//spiffworkflow:property[@name='{FORM_PROPERTY}']", NS):
        refs.forms.setdefault(node.get("value", ""), _owner(node))
    for node in root.iterfind(".//bpmn:callActivity", NS):
        called = node.get("calledElement", "")
        if called not in local:
            refs.called.setdefault(called, node)
    return refs


def lint_bpmn(
    root: etree._Element, filename: str, *, decisions: set[str], forms: set[str], processes: set[str]
) -> list[str]:
    """Return every problem of one BPMN file given the decisions, forms and processes that exist."""
    refs = bpmn_refs(root)
    problems = []
    if len(refs.processes) != 1:
        problems.append(problem(filename, root.sourceline, None,
                                f"a BPMN file must define exactly one executable process, found {len(refs.processes)}"))
    for snippet in code_snippets(root):
        for reason in lint_code(snippet.text, FUNCTION_NAMES, expression=snippet.expression):
            problems.append(_at(filename, snippet.element, f"code {snippet.text.strip()[:60]!r}: {reason}"))
    problems += _lint_lanes(root, filename)
    for decision, node in refs.decisions.items():
        if decision not in decisions:
            problems.append(_at(filename, node, f"decision {decision!r} is not deployed" + _hint(decision, decisions)))
    for form, node in refs.forms.items():
        if form not in forms:
            problems.append(_at(filename, node, f"form {form!r} is not deployed" + _hint(form, forms)))
    for called, node in refs.called.items():
        if called not in processes:
            problems.append(_at(filename, node, f"called process {called!r} is not deployed"))
    handlers = services.registry()
    element_ids = {e.get("id") for e in root.iter() if isinstance(e.tag, str) and e.get("id")
                   and etree.QName(e).localname not in ("serviceTaskOperator", "parameter")}
    for node in root.iterfind(".//bpmn:serviceTask", NS):
        operator = node.find("bpmn:extensionElements/spiffworkflow:serviceTaskOperator", NS)
        name = operator.get("id", "") if operator is not None else ""
        if name not in handlers:
            problems.append(_at(filename, node, f"service {name!r} is not a registered service task handler"
                                + _hint(name, set(handlers))))
        elif name in element_ids:
            # SpiffWorkflow indexes every element by id, operators included: the flows would reach the wrong one.
            problems.append(_at(filename, node, f"service operator {name!r} has the id of another element of the "
                                "diagram; rename that element"))
    return problems


def _lint_lanes(root: etree._Element, filename: str) -> list[str]:
    lane_of: dict[str, str] = {}
    for lane in root.iterfind(".//bpmn:lane", NS):
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            lane_of[(ref.text or "").strip()] = lane.get("name", "")
    problems = []
    for tag in _HUMAN_TASKS:
        for task in root.iterfind(f".//bpmn:{tag}", NS):
            lane = _lane_of(task, lane_of)
            if lane is None:
                problems.append(_at(filename, task, "a user task must sit in a lane named after a role"))
            elif lane not in ROLES:
                problems.append(_at(filename, task, f"lane {lane!r} is not a role; roles are {', '.join(ROLES)}"))
    return problems


def _lane_of(task: etree._Element, lane_of: dict[str, str]) -> str | None:
    node = task
    while node is not None:
        if node.get("id") in lane_of:
            return lane_of[node.get("id")]
        node = node.getparent()
    return None


def lint_dmn(root: etree._Element, filename: str) -> tuple[list[str], list[str]]:
    """Return (decision ids, problems) of one DMN file; cells must compile and call only diagram functions."""
    dmn = etree.QName(root).namespace
    ns = {"dmn": dmn}
    decisions = [d.get("id") for d in root.iterfind("dmn:decision", ns)]
    problems = []
    if len(decisions) != 1:
        problems.append(problem(filename, root.sourceline, None,
                                f"a DMN file must define exactly one decision, found {len(decisions)}"))
    for node in root.iterfind(".//dmn:inputExpression/dmn:text", ns):
        problems += _lint_cell(filename, node, node.text or "", unary=False)
    for node in root.iterfind(".//dmn:inputEntry/dmn:text", ns):
        problems += _lint_cell(filename, node, node.text or "", unary=True)
    for node in root.iterfind(".//dmn:outputEntry/dmn:text", ns):
        problems += _lint_cell(filename, node, node.text or "", unary=False)
    return decisions, problems


def _lint_cell(filename: str, node: etree._Element, text: str, *, unary: bool) -> list[str]:
    text = text.strip()
    if not text or (unary and text == "-"):
        return []
    reasons = lint_code(text.replace("?", "dmninputexpr"), FUNCTION_NAMES | {"dmninputexpr"}, expression=True)
    if reasons and unary:
        unary_reasons = lint_code(f"dmninputexpr {text}", FUNCTION_NAMES, expression=True)
        if not unary_reasons:
            return []
        reasons = unary_reasons if "__" in text or "(" in text else reasons
    return [_at(filename, node, f"cell {text[:60]!r}: {reason}") for reason in reasons]


def _at(filename: str, node: etree._Element, reason: str) -> str:
    owner = _owner(node)
    return problem(filename, node.sourceline, owner.get("id"), reason)


def _hint(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
