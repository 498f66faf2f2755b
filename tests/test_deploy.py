"""Deployment: validation, lint, versioning, atomicity, and hostile XML."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT, deploy_paths, deploy_texts
from sqlalchemy import func, select

from engine.deploy import versions
from engine.errors import DeploymentError, PermissionDenied
from engine.models import AuditEvent, DefinitionVersion

BAD = FIXTURES / "bad"
LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (element (?P<id>\S+): )?(?P<reason>.+)$")


def refused(ctx, *paths) -> list[str]:
    with pytest.raises(DeploymentError) as info:
        deploy_paths(ctx, *paths)
    for line in info.value.problems:
        assert LINE.match(line), f"not FILE:LINE: element ID: reason: {line!r}"
    return info.value.problems


def count_versions(ctx) -> int:
    with ctx.sessions() as s:
        return s.execute(select(func.count()).select_from(DefinitionVersion)).scalar()


def test_example_deploys_and_lists_versions(example):
    with example.sessions() as s:
        rows = {(v.kind, v.key): v for v in versions(s)}
    assert rows[("process", "document_review")].version == 1
    assert rows[("decision", "review_level")].version == 1
    assert ("form", "submit_documents.json") in rows
    process = rows[("process", "document_review")]
    with example.sessions() as s:
        deps = {s.get(DefinitionVersion, d).key for d in process.dependencies}
    assert {"review_level", "submit_documents.json", "review_documents.json"} <= deps


def test_identical_redeploy_is_unchanged_and_changed_is_next_version(example, tmp_path):
    outcomes = deploy_paths(example, ROOT / "rules", ROOT / "forms", ROOT / "bpmn")
    assert {o.status for o in outcomes} == {"unchanged"}
    changed = (ROOT / "bpmn" / "document_review.bpmn").read_text().replace("</bpmn:definitions>",
                                                                           "<!-- v2 --></bpmn:definitions>")
    (tmp_path / "document_review.bpmn").write_text(changed)
    outcomes = deploy_paths(example, tmp_path / "document_review.bpmn")
    assert [(o.key, o.version, o.status) for o in outcomes] == [("document_review", 2, "created")]


def test_new_rule_version_rebinds_processes_that_use_it(example, tmp_path):
    dmn = (ROOT / "rules" / "review_level.dmn").read_text()
    (tmp_path / "review_level.dmn").write_text(dmn.replace("</definitions>", "<!-- v2 --></definitions>"))
    outcomes = {(o.kind, o.key): o for o in deploy_paths(example, tmp_path / "review_level.dmn")}
    assert outcomes[("decision", "review_level")].version == 2
    assert outcomes[("process", "document_review")].status == "rebound"
    assert outcomes[("process", "document_review")].version == 2


@pytest.mark.parametrize(
    ("name", "element", "reason"),
    [
        ("xsd_invalid.bpmn", None, "taskk"),
        ("unknown_lane.bpmn", "mop_floor", "janitor"),
        ("missing_form.bpmn", "fill_form", "no_such_form.json"),
        ("dangling_decision.bpmn", "classify", "no_such_decision"),
        ("import_os.bpmn", "pwn", "__import__"),
        ("open_file.bpmn", "read_passwd", "open"),
        ("bad_condition.bpmn", "flow_bad", "__class__"),
        ("timer_escape.bpmn", "wait", "getattr"),
        ("bad_dmn_cell.dmn", "bad_cell", "__import__"),
        ("bad_form.json", None, "properties/name/type"),
    ],
)
def test_bad_file_is_refused_with_location(ctx, name, element, reason):
    problems = refused(ctx, BAD / name)
    joined = "\n".join(problems)
    assert str(BAD / name) in joined
    assert reason in joined
    if element:
        assert any(m and (m["id"] or "").startswith(element) for m in map(LINE.match, problems)), joined
    assert count_versions(ctx) == 0


def test_not_well_formed_names_the_line(ctx):
    (problem,) = refused(ctx, BAD / "not_well_formed.bpmn")
    assert "not well-formed" in problem
    assert int(LINE.match(problem)["line"]) > 1


@pytest.mark.parametrize("name", ["xxe.bpmn", "billion_laughs.bpmn"])
def test_entity_attacks_are_refused_without_leaking(ctx, name):
    (problem,) = refused(ctx, BAD / name)
    assert "DOCTYPE and ENTITY declarations are not allowed" in problem
    assert "root:" not in problem
    assert count_versions(ctx) == 0


def test_deploy_is_atomic(ctx):
    problems = refused(ctx, ROOT / "rules", ROOT / "forms", ROOT / "bpmn", BAD / "unknown_lane.bpmn")
    assert len(problems) == 1
    assert count_versions(ctx) == 0
    with ctx.sessions() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)).scalar() == 0


def test_oversized_file_is_refused(ctx):
    with pytest.raises(DeploymentError, match="the limit is"):
        from engine.actors import SYSTEM
        from engine.deploy import Upload, deploy

        with ctx.sessions.begin() as s:
            deploy(s, [Upload("big.bpmn", b"<a>" + b" " * 2048 + b"</a>")], SYSTEM, max_bytes=1024)


def test_duplicate_keys_in_one_deploy_are_refused(ctx):
    form = '{"type": "object"}'
    with pytest.raises(DeploymentError, match="also defined"):
        deploy_texts(ctx, {"a/x.json": form, "b/x.json": form})


def test_form_fields_may_not_shadow_functions(ctx):
    with pytest.raises(DeploymentError, match="shadow a diagram function"):
        deploy_texts(ctx, {"f.json": '{"type": "object", "properties": {"now": {"type": "string"}}}'})


def test_only_admins_and_regulators_deploy(ctx, users):
    from engine.deploy import collect, deploy

    with ctx.sessions.begin() as s, pytest.raises(PermissionDenied):
        deploy(s, collect([ROOT / "forms"]), users["li"])


def test_cli_deploy_errors_exit_nonzero_with_one_line_each(ctx, config):
    env = {"GGZY_HOME": str(config.home), "GGZY_ENV": "test", "PATH": "/usr/bin:/bin"}
    if config.database_url:
        env["DATABASE_URL"] = config.database_url
    run = subprocess.run([sys.executable, "-m", "engine.cli", "deploy", str(BAD / "unknown_lane.bpmn")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "element mop_floor" in run.stderr and "janitor" in run.stderr
    versions_run = subprocess.run([sys.executable, "-m", "engine.cli", "versions", "--json"],
                                  capture_output=True, text=True, env=env, cwd=ROOT)
    assert versions_run.returncode == 0 and versions_run.stdout.strip() == "[]"
