"""The diagram sandbox: refused at deploy, and blocked at run time too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import FIXTURES
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException

from engine import bundles
from engine.errors import ScriptError
from engine.functions import FUNCTION_NAMES, make_script_engine
from engine.sandbox import RestrictedEnvironment, compile_expression, compile_script, lint_code

PWNED = Path("/tmp/ggzy_pwned")


@pytest.fixture
def env():
    return make_script_engine({}).environment


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('id')",
        "().__class__.__bases__[0].__subclasses__()",
        "x.__globals__",
        "_secret",
    ],
)
def test_dunder_and_private_names_do_not_compile(source):
    with pytest.raises(ScriptError):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("open('/etc/passwd').read()", NameError),
        ("eval('1')", (ScriptError, NameError)),
        ("exec('x = 1')", (ScriptError, NameError)),
        ("getattr(now, '__globals__')", NameError),
        ("globals()", NameError),
        ("'{0.__class__}'.format(1)", Exception),
        ("vars()", NameError),
    ],
)
def test_forbidden_builtins_are_absent_at_run_time(env, source, error):
    with pytest.raises(error):
        env.evaluate(source, {})


def test_lint_names_calls_that_are_not_diagram_functions():
    assert lint_code("add_working_days(submitted_at, 5)", FUNCTION_NAMES, expression=True) == []
    assert lint_code("rule('bond_cap', amount=Decimal('1.00'))", FUNCTION_NAMES, expression=True) == []
    assert "open" in lint_code("open('x')", FUNCTION_NAMES, expression=True)[0]
    assert "literal string" in lint_code("rule(name)", FUNCTION_NAMES, expression=True)[0]


def test_scripts_assign_into_task_data_and_leave_no_functions_behind(env):
    data = {"amount": 5}
    env.execute("total = amount * 2\nitems = [1, 2]\nitems.append(3)\ncount = len(items)", data)
    assert data == {"amount": 5, "total": 10, "items": [1, 2, 3], "count": 3}


def test_scripts_may_not_shadow_functions(env):
    with pytest.raises(ScriptError, match="now"):
        env.execute("x = 1", {"now": "yesterday"})


def test_compiled_code_is_cached():
    assert compile_script("a = 1") is compile_script("a = 1")


def test_unlinted_diagram_is_still_blocked_at_run_time():
    """Bypass deployment's lint entirely: the restricted engine still refuses the code."""
    source = (FIXTURES / "bad" / "import_os.bpmn").read_text()
    bundle = bundles.build("bad_import_os", [bundles.Source("process", "bad_import_os", "import_os.bpmn", source)],
                           [], {})
    workflow = BpmnWorkflow(bundle.spec, bundle.subprocess_specs, script_engine=bundle.script_engine)
    if PWNED.exists():
        os.unlink(PWNED)
    with pytest.raises(SpiffWorkflowException):
        workflow.do_engine_steps()
        for task in workflow.get_tasks(manual=True, state=8):
            task.run()
            workflow.do_engine_steps()
    assert not PWNED.exists()


def test_environment_has_no_module_access():
    env = RestrictedEnvironment({})
    with pytest.raises(NameError):
        env.evaluate("os", {})
