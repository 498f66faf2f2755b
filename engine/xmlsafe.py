"""Parsing untrusted BPMN/DMN XML: no DTDs, no entities, no network, bounded size; XSD checks."""

from __future__ import annotations

import re
from functools import lru_cache

from lxml import etree
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.spiff.parser.process import VALIDATOR as SPIFF_BPMN_VALIDATOR

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}
_DECLARATION = re.compile(rb"<!(DOCTYPE|ENTITY)")
_PREFIXES = {v: k for k, v in NS.items()}


class XmlRefused(Exception):
    """The XML cannot be accepted; ``problems`` are ``FILE:LINE: ...`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def problem(filename: str, line: int | None, element_id: str | None, reason: str) -> str:
    """Format one deployment problem as ``FILE:LINE: element ID: reason``."""
    where = f"{filename}:{line or 0}"
    return f"{where}: element {element_id}: {reason}" if element_id else f"{where}: {reason}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=False)


def parse_xml(data: bytes, filename: str, max_bytes: int) -> etree._Element:
    """Parse untrusted XML; refuse DTDs and entity declarations before the parser sees them."""
    if len(data) > max_bytes:
        raise XmlRefused([problem(filename, 1, None, f"file is {len(data)} bytes; the limit is {max_bytes}")])
    match = _DECLARATION.search(data)
    if match:
        line = data.count(b"\n", 0, match.start()) + 1
        raise XmlRefused([problem(filename, line, None, "DOCTYPE and ENTITY declarations are not allowed")])
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as err:
        line = err.lineno if err.lineno else 0
        raise XmlRefused([problem(filename, line, None, f"not well-formed XML: {_short(err.msg)}")]) from None
    return root


@lru_cache(maxsize=8)
def _dmn_schema(namespace: str) -> etree.XMLSchema | None:
    path = DMN_SCHEMAS.get(namespace)
    return etree.XMLSchema(etree.parse(path)) if path else None


def validate_bpmn(root: etree._Element, filename: str) -> list[str]:
    """Validate against BPMN 2.0 plus SpiffWorkflow's extension schema."""
    SPIFF_BPMN_VALIDATOR.preprocess(root)
    return _xsd_problems(SPIFF_BPMN_VALIDATOR.validator, root, filename)


def validate_dmn(root: etree._Element, filename: str) -> list[str]:
    """Validate against the DMN schema of the file's namespace (1.1, 1.2 or 1.3)."""
    namespace = etree.QName(root).namespace or ""
    schema = _dmn_schema(namespace)
    if schema is None:
        known = ", ".join(DMN_SCHEMAS)
        return [problem(filename, root.sourceline, None, f"unknown DMN namespace {namespace!r}; use one of {known}")]
    return _xsd_problems(schema, root, filename)


def _xsd_problems(schema: etree.XMLSchema, root: etree._Element, filename: str) -> list[str]:
    if schema.validate(root):
        return []
    return [
        problem(filename, error.line, element_id_at(root, error.line), _short(error.message))
        for error in schema.error_log
    ]


def element_id_at(root: etree._Element, line: int | None) -> str | None:
    """Return the id of the first element starting on ``line``, if any."""
    for element in root.iter():
        if element.sourceline == line and element.get("id"):
            return element.get("id")
    return None


def element_by_id(root: etree._Element, element_id: str | None) -> etree._Element | None:
    """Find an element by its ``id`` attribute."""
    if not element_id:
        return None
    found = root.xpath("//*[@id=$id]", id=element_id)
    return found[0] if found else None


def _short(message: str) -> str:
    for namespace, prefix in _PREFIXES.items():
        message = message.replace("{" + namespace + "}", prefix + ":")
    return message.strip()
