"""Task instructions for end users: Jinja over the task data in a sandbox, then Markdown without raw HTML.

A diagram's ``spiffworkflow:instructionsForEndUser`` is a Jinja template with
the task data as context. It runs in an immutable sandbox whose unsafe
attribute access is an error (not a silent blank), with autoescaping; every
value it prints is also Markdown-escaped, so task data always shows as text.
The result is rendered by markdown-it in CommonMark mode with raw HTML off.
A template that fails is reported as a notice, with the raw text shown instead.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from SpiffWorkflow.task import Task

EXTENSION = "instructionsForEndUser"
# Markdown punctuation in data is backslash-escaped; & < > " ' are left to autoescaping.
_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in string.punctuation if c not in "&<>\"'"})


@dataclass(frozen=True)
class Instructions:
    """Rendered instructions: safe HTML, and a notice when the template could not be used."""

    html: str
    notice: str | None = None


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with unsafe attribute access raising instead of printing nothing."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


def _as_text(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "__html__"):
        return value
    return str(value).translate(_MARKDOWN_SPECIALS)


_jinja = _Sandbox(autoescape=True, finalize=_as_text)
_markdown = MarkdownIt("commonmark", {"html": False})


@lru_cache(maxsize=256)
def _template(text: str) -> Template:
    # Instructions belong to immutable deployed versions, so compiled templates can be reused.
    return _jinja.from_string(text)


def text_of(task: Task) -> str:
    """Return the instructions text of a task's spec ('' when it has none)."""
    return (task.task_spec.extensions or {}).get(EXTENSION) or ""


def render(text: str, data: Mapping[str, Any]) -> Instructions:
    """Render instructions with ``data`` as the template context; never raise for a bad template."""
    if not text.strip():
        return Instructions("")
    try:
        markdown = _template(text).render(dict(data))
    except SecurityError as err:
        return Instructions(_markdown.render(text), f"refused by the template sandbox: {err}")
    except Exception as err:  # diagram text may raise anything; the page must still show
        return Instructions(_markdown.render(text), f"the template failed: {type(err).__name__}: {err}")
    return Instructions(_markdown.render(markdown))


def render_task(task: Task) -> Instructions:
    """Render a task's instructions over its data."""
    return render(text_of(task), task.data)
