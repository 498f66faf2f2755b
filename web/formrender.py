"""Task forms from their JSON Schema: a field tree for the templates, posted strings to typed data, messages.

The schema is the single source: ``title`` is the label, ``description`` the
help text, ``required`` marks fields, and the widget follows the type (see
``widget_of``). Values travel in two shapes: *data* (typed, what the engine
validates and stores) and *raw* (what the inputs show: strings, booleans, file
values, lists for repeatable groups). Inputs are named by their path joined
with dots (``items.0.price``); errors are keyed like the engine's, with
slashes (``items/0/price``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_babel import gettext as _
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage, MultiDict

from engine import clock, files
from engine.actors import Actor
from engine.config import Config
from engine.files import FileRefused
from engine.models import StoredFile

TEXTAREA_OVER = 200
MAX_EXPONENT = 30  # a number like 1e999999999 would take ages to become an int
ADD, REMOVE, KEPT = "_add", "_remove", "_kept."
GROUP = "_group."

# Takes (field, upload or None, kept "sha256:name" or None); returns the file value or None, raises FileRefused.
FileTaker = Callable[["Field", FileStorage | None, str | None], dict[str, Any] | None]


@dataclass
class Field:
    """One input (or fieldset) of a task form, ready for the template."""

    key: str
    path: str
    schema: dict[str, Any]
    widget: str
    required: bool = False
    value: Any = ""
    errors: list[str] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)
    items: list[list[Field]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Return the input name (the path with dots)."""
        return self.path.replace("/", ".")

    @property
    def dom_id(self) -> str:
        """Return the element id of the input."""
        return "f-" + self.path.replace("/", "-")

    @property
    def label(self) -> str:
        """Return the label: the schema's title, else the key."""
        return str(self.schema.get("title") or self.key)

    @property
    def help(self) -> str:
        """Return the help text: the schema's description."""
        return str(self.schema.get("description") or "")

    @property
    def options(self) -> list[tuple[str, str]]:
        """Return (value, label) pairs of an enum, select or checkbox list."""
        return options_of(self.schema.get("items", {}) if self.widget == "checkboxes" else self.schema)

    @property
    def item_count(self) -> int:
        """Return the number of groups of a repeatable field."""
        return len(self.items)

    @property
    def accept(self) -> str:
        """Return the ``accept`` attribute of a file input."""
        return ",".join(sorted(upload_limits(self.schema)[1]))

    @property
    def limit_text(self) -> str:
        """Return a file field's size limit for people."""
        return size_text(upload_limits(self.schema)[0])

    @property
    def file_size_text(self) -> str:
        """Return the size of the file a file field holds, for people."""
        return size_text(int(self.value["size"])) if isinstance(self.value, dict) else ""


def _type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def options_of(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (value, label) pairs of ``enum`` (labels from ``x-enumNames``) or of ``oneOf``/``anyOf`` consts."""
    if "enum" in schema:
        names = schema.get("x-enumNames") or []
        return [(_text(v), str(names[i]) if i < len(names) else _text(v)) for i, v in enumerate(schema["enum"])]
    choices = schema.get("oneOf") or schema.get("anyOf") or []
    return [(_text(c["const"]), str(c.get("title", _text(c["const"])))) for c in choices if "const" in c]


def _has_choices(schema: dict[str, Any]) -> bool:
    return "enum" in schema or any("const" in c for c in schema.get("oneOf") or schema.get("anyOf") or [])


def is_file(schema: dict[str, Any]) -> bool:
    """Tell whether a property is a file upload."""
    return schema.get("format") == "file" or "contentMediaType" in schema


def upload_limits(schema: dict[str, Any]) -> tuple[int, frozenset[str]]:
    """Return a file field's size limit (``x-maxBytes``) and accepted types (``x-mediaTypes``/``contentMediaType``)."""
    limit = schema.get("x-maxBytes")
    max_bytes = limit if isinstance(limit, int) and 0 < limit <= files.MAX_BYTES else files.MAX_BYTES
    listed = schema.get("x-mediaTypes") or ([schema["contentMediaType"]] if "contentMediaType" in schema else [])
    return max_bytes, frozenset(map(str, listed)) or files.DEFAULT_TYPES


def widget_of(schema: dict[str, Any]) -> str:
    """Return the widget of a property schema (None-safe; unknown shapes fall back to text)."""
    chosen = schema.get("x-widget")
    kind = _type(schema)
    if is_file(schema):
        return "file"
    if kind == "array":
        items = schema.get("items") or {}
        if _type(items) == "object" or "properties" in items:
            return "group"
        return "checkboxes" if _has_choices(items) else "lines"
    if kind == "object" or "properties" in schema:
        return "object"
    if _has_choices(schema):
        return "radio" if chosen == "radio" else "select"
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return kind
    formats = {"date": "date", "date-time": "datetime", "decimal": "decimal"}
    if schema.get("format") in formats:
        return formats[schema["format"]]
    if chosen == "textarea" or (schema.get("maxLength") or 0) > TEXTAREA_OVER:
        return "textarea"
    return "text"


def _join(prefix: str, key: str | int) -> str:
    return f"{prefix}/{key}" if prefix else str(key)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _local_input(value: str) -> str:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return value
    if instant.tzinfo is not None:
        instant = instant.astimezone(clock.SHANGHAI)
    return instant.strftime("%Y-%m-%dT%H:%M")


# Data (typed, from the task) to raw values for the inputs.

def raw_of(schema: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Return the input values showing ``data`` (schema defaults where it has none)."""
    raw: dict[str, Any] = {}
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        value = data.get(key, prop.get("default")) if isinstance(data, dict) else prop.get("default")
        raw[key] = _raw_value(prop, value, key in (schema.get("required") or []))
    return raw


def _raw_value(prop: dict[str, Any], value: Any, required: bool) -> Any:
    widget = widget_of(prop)
    if widget == "group":
        count = max(int(prop.get("minItems") or 0), 1 if required else 0)
        values = value if isinstance(value, list) else [{}] * count
        return [raw_of(prop.get("items") or {}, v if isinstance(v, dict) else {}) for v in values]
    if widget == "object":
        return raw_of(prop, value if isinstance(value, dict) else {})
    if widget == "checkbox":
        return bool(value)
    if widget == "checkboxes":
        return [_text(v) for v in value] if isinstance(value, list) else []
    if widget == "lines":
        return "\n".join(map(_text, value)) if isinstance(value, list) else ""
    if widget == "file":
        return value if isinstance(value, dict) and "sha256" in value else None
    if widget == "datetime" and isinstance(value, str):
        return _local_input(value)
    return _text(value)


# The field tree.

def build(schema: dict[str, Any], raw: dict[str, Any], errors: dict[str, list[str]],
          prefix: str = "", used: set[str] | None = None) -> list[Field]:
    """Return the fields of an object schema with their values and messages; record matched error paths."""
    used = used if used is not None else set()
    fields = []
    required = set(schema.get("required") or [])
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        path = _join(prefix, key)
        widget = widget_of(prop)
        value = raw.get(key) if isinstance(raw, dict) else None
        # A list of lines also shows its items' messages ("tags/2").
        mine = [p for p in errors if p == path or (widget == "lines" and p.startswith(path + "/"))]
        item = Field(key, path, prop, widget, key in required, errors=[m for p in mine for m in errors[p]])
        used.update(mine)
        if widget == "group":
            item.items = [build(prop.get("items") or {}, v, errors, _join(path, i), used)
                          for i, v in enumerate(value or [])]
        elif widget == "object":
            item.children = build(prop, value or {}, errors, path, used)
        else:
            item.value = value if value is not None else ("" if widget not in ("checkboxes",) else [])
        fields.append(item)
    return fields


def general_errors(errors: dict[str, list[str]], used: set[str]) -> list[str]:
    """Return the messages that belong to no field (shown above the form)."""
    return [m for path, messages in errors.items() if path not in used for m in messages]


# Posted values to data.

@dataclass
class Parsed:
    """A posted form: typed data for the engine, raw values to show again, and conversion problems."""

    data: dict[str, Any]
    raw: dict[str, Any]
    problems: dict[str, list[str]]


def parse(schema: dict[str, Any], form: MultiDict, uploads: MultiDict, take_file: FileTaker) -> Parsed:
    """Convert a posted form to the schema's types (integer, number, boolean, arrays, files)."""
    parsed = Parsed({}, {}, {})
    _parse_object(schema, form, uploads, take_file, "", "", parsed.data, parsed.raw, parsed.problems)
    return parsed


def _parse_object(schema: dict[str, Any], form: MultiDict, uploads: MultiDict, take_file: FileTaker, name: str,
                  path: str, data: dict[str, Any], raw: dict[str, Any], problems: dict[str, list[str]]) -> None:
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        field_name = f"{name}.{key}" if name else key
        field_path = _join(path, key)
        widget = widget_of(prop)
        if widget == "group":
            data[key], raw[key] = [], []
            for position, index in enumerate(form.getlist(GROUP + field_name)):
                sub_data: dict[str, Any] = {}
                sub_raw: dict[str, Any] = {}
                _parse_object(prop.get("items") or {}, form, uploads, take_file, f"{field_name}.{index}",
                              _join(field_path, position), sub_data, sub_raw, problems)
                data[key].append(sub_data)
                raw[key].append(sub_raw)
        elif widget == "object":
            data[key], raw[key] = {}, {}
            _parse_object(prop, form, uploads, take_file, field_name, field_path, data[key], raw[key], problems)
            if not data[key] and key not in (schema.get("required") or []):
                del data[key]  # an optional object left blank is absent, not an empty object
        else:
            _parse_scalar(Field(key, field_path, prop, widget), field_name, form, uploads, take_file, data, raw,
                          problems)


def _parse_scalar(item: Field, name: str, form: MultiDict, uploads: MultiDict, take_file: FileTaker,
                  data: dict[str, Any], raw: dict[str, Any], problems: dict[str, list[str]]) -> None:
    key, widget = item.key, item.widget
    if widget == "checkbox":
        raw[key] = data[key] = name in form
        return
    if widget == "checkboxes":
        raw[key] = chosen = form.getlist(name)
        by_text = {_text(v): v for v in _choices(item.schema.get("items") or {})}
        data[key] = [by_text.get(c, c) for c in chosen]
        return
    if widget == "file":
        _parse_file(item, name, form, uploads, take_file, data, raw, problems)
        return
    text = form.get(name, "")
    if widget in ("textarea", "lines"):
        text = text.replace("\r\n", "\n")
    raw[key] = text
    if widget == "lines":
        data[key] = _parse_lines(item, text, problems)
        return
    if not text.strip():
        return
    try:
        data[key] = _convert(item, text)
    except ValueError as err:
        problems.setdefault(item.path, []).append(str(err))


@dataclass
class FileIntake:
    """Takes file fields: new uploads go to the file store; a kept one must be the user's own or already the task's.

    ``known`` maps sha256 to the file values already in the task's data.
    """

    session: Session
    actor: Actor
    config: Config
    known: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, item: Field, upload: FileStorage | None, kept: str | None) -> dict[str, Any] | None:
        max_bytes, allowed = upload_limits(item.schema)
        if upload is not None:
            stored = files.store(self.session, upload.read(), upload.filename or "", upload.mimetype, self.actor,
                                 config=self.config, max_bytes=max_bytes, allowed_types=allowed)
            return files.value_of(stored, files.clean_name(upload.filename or ""))
        sha256, _sep, name = (kept or "").partition(":")
        if sha256 in self.known:
            return self.known[sha256]
        row = self.session.get(StoredFile, sha256) if sha256 else None
        if row is None or row.uploaded_by != self.actor.username or not files.is_allowed(row.media_type, allowed):
            return None
        return files.value_of(row, files.clean_name(name) if name else None)


def files_in(value: Any) -> dict[str, dict[str, Any]]:
    """Return the file values (by sha256) found anywhere in task data."""
    found: dict[str, dict[str, Any]] = {}
    if isinstance(value, dict):
        if isinstance(value.get("sha256"), str):
            found[value["sha256"]] = value
        for item in value.values():
            found.update(files_in(item))
    elif isinstance(value, list):
        for item in value:
            found.update(files_in(item))
    return found


def _parse_lines(item: Field, text: str, problems: dict[str, list[str]]) -> list[Any]:
    """Return the items of a one-per-line list, each converted to the array's item type."""
    schema = item.schema.get("items") or {}
    values = []
    lines = [row.strip() for row in text.split("\n") if row.strip()]
    for position, line in enumerate(lines):
        try:
            values.append(_convert(Field(item.key, _join(item.path, position), schema, widget_of(schema)), line))
        except ValueError as err:
            problems.setdefault(item.path, []).append(_("第 %(n)s 行：%(message)s", n=position + 1, message=err))
    return values


def _parse_file(item: Field, name: str, form: MultiDict, uploads: MultiDict, take_file: FileTaker,
                data: dict[str, Any], raw: dict[str, Any], problems: dict[str, list[str]]) -> None:
    upload = uploads.get(name)
    kept = form.get(KEPT + name) or None
    try:
        value = take_file(item, upload if upload is not None and upload.filename else None, kept)
    except FileRefused as err:
        problems.setdefault(item.path, []).append(file_message(err))
        value = take_file(item, None, kept)
    raw[item.key] = value
    if value is not None:
        data[item.key] = value


def _choices(schema: dict[str, Any]) -> list[Any]:
    if "enum" in schema:
        return list(schema["enum"])
    return [c["const"] for c in schema.get("oneOf") or schema.get("anyOf") or [] if "const" in c]


def _convert(item: Field, text: str) -> Any:
    """Return the typed value of a posted string, or raise ValueError with the message to show."""
    widget = item.widget
    if widget in ("select", "radio"):
        return {_text(v): v for v in _choices(item.schema)}.get(text, text)
    if widget in ("integer", "number"):
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            raise ValueError(_("请输入整数") if widget == "integer" else _("请输入数字")) from None
        if not number.is_finite():
            raise ValueError(_("请输入数字"))
        if number.adjusted() > MAX_EXPONENT:
            raise ValueError(_("数值超出范围"))
        if number == number.to_integral_value():
            return int(number)
        if widget == "integer":
            raise ValueError(_("请输入整数"))
        return float(number)
    if widget == "date":
        try:
            return date.fromisoformat(text.strip()).isoformat()
        except ValueError:
            raise ValueError(_("请输入日期，格式为 年-月-日")) from None
    if widget == "datetime":
        return _shanghai_iso(text.strip())
    return text.strip() if widget != "textarea" else text


def _shanghai_iso(text: str) -> str:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(_("请输入日期和时间")) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=clock.SHANGHAI)
    return instant.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")


def file_message(err: FileRefused) -> str:
    """Return the message to show for a refused upload."""
    context = err.context
    if err.reason == "empty":
        return _("文件为空")
    if err.reason == "too_large":
        return _("文件过大：%(size)s，上限为 %(limit)s", size=size_text(int(context["size"])),
                 limit=size_text(int(context["limit"])))
    if err.reason == "type":
        return _("不接受此类文件（%(type)s）；可上传：%(allowed)s", type=context["media_type"],
                 allowed="、".join(map(str, context["allowed"])))
    return _("文件内容（%(type)s）与其扩展名或声明的类型（%(expected)s）不符", type=context["media_type"],
             expected=context["expected"])


def size_text(size: int) -> str:
    """Return a byte count for people (KB, MB)."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


# Server-side add and remove of repeatable groups.

def apply_action(schema: dict[str, Any], raw: dict[str, Any], action: str, target: str) -> bool:
    """Add a group to the array at ``target`` or remove the group at ``target``, within minItems/maxItems."""
    parts = [p for p in target.split("/") if p]
    if action == ADD:
        container, array = _locate(schema, raw, parts)
        if not isinstance(container, list) or array is None or len(container) >= array.get("maxItems", float("inf")):
            return False
        container.append(raw_of(array.get("items") or {}, {}))
        return True
    if not parts or not parts[-1].isdigit():
        return False
    container, array = _locate(schema, raw, parts[:-1])
    index = int(parts[-1])
    if not isinstance(container, list) or array is None or index >= len(container) \
            or len(container) <= array.get("minItems", 0):
        return False
    container.pop(index)
    return True


def _locate(schema: dict[str, Any], raw: Any, parts: list[str]) -> tuple[Any, dict[str, Any] | None]:
    """Walk raw values and the schema along a path; return the value there and, if it is a group, its schema."""
    node, node_schema = raw, schema
    for part in parts:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node, node_schema = node[int(part)], node_schema.get("items") or {}
        elif isinstance(node, dict) and part in node:
            node, node_schema = node[part], (node_schema.get("properties") or {}).get(part) or {}
        else:
            return None, None
    return node, node_schema if parts and widget_of(node_schema) == "group" else None


# Messages in the user's language, keyed like the engine's errors.

def messages(schema: dict[str, Any], data: dict[str, Any]) -> dict[str, list[str]]:
    """Validate like ``engine.runtime.validate_form`` and return translated messages by field path."""
    validator = validator_for(schema, default=Draft202012Validator)(schema)
    found: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = "/".join(map(str, error.absolute_path))
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path = "/".join(filter(None, [path, missing]))
        found.setdefault(path or "(form)", []).append(_message(error))
    return found


def explain(schema: dict[str, Any], data: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Return the engine's errors with translated messages where they are known."""
    translated = messages(schema, data)
    return {path: translated.get(path) or found for path, found in errors.items()}


def _message(error: Any) -> str:
    value = error.validator_value
    kind = error.validator
    if kind == "required":
        return _("此项为必填项")
    if kind == "type":
        names = {"integer": _("请输入整数"), "number": _("请输入数字"), "string": _("请输入文字")}
        return names.get(value if isinstance(value, str) else "", _("格式不正确"))
    if kind == "minLength":
        return _("此项不能为空") if value == 1 else _("至少 %(n)s 个字符", n=value)
    simple = {
        "maxLength": _("最多 %(n)s 个字符", n=value), "minimum": _("不能小于 %(n)s", n=value),
        "maximum": _("不能大于 %(n)s", n=value), "exclusiveMinimum": _("必须大于 %(n)s", n=value),
        "exclusiveMaximum": _("必须小于 %(n)s", n=value), "pattern": _("格式不正确"),
        "enum": _("请从给定的选项中选择"), "const": _("取值不符合要求"), "minItems": _("至少需要 %(n)s 项", n=value),
        "maxItems": _("最多 %(n)s 项", n=value), "additionalProperties": _("包含表单未定义的字段"),
    }
    return simple.get(kind, error.message)
