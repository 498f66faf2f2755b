"""The ggzy CLI: JSON outputs for scripts, one-line errors for people."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from engine.cli import main


@pytest.fixture
def cli(ctx, config, monkeypatch, capsys):
    monkeypatch.setenv("GGZY_HOME", str(config.home))
    if config.database_url:
        monkeypatch.setenv("DATABASE_URL", config.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)

    def run(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_deploy_start_tasks_complete_as_users(cli):
    assert cli("deploy", str(ROOT / "rules"), str(ROOT / "forms"), str(ROOT / "bpmn"))[0] == 0
    assert cli("user", "add", "zhang", "--role", "tenderer", "--password", "pw-zhang")[0] == 0
    code, out, _ = cli("start", "document_review", "--as", "zhang", "--json")
    instance_id = json.loads(out)["instance_id"]
    code, out, _ = cli("tasks", "--instance", str(instance_id), "--json")
    (task,) = json.loads(out)
    assert {"task_id", "name", "title", "role", "instance_id", "due_at"} <= set(task)
    assert (task["name"], task["role"], task["instance_id"]) == ("submit_documents", "tenderer", instance_id)
    data = json.dumps({"project_name": "临泽县供水工程", "page_count": 10, "estimate": "1200000"})
    assert cli("complete", task["task_id"], "--data", data, "--as", "zhang")[0] == 0
    code, out, _ = cli("instance", str(instance_id), "--json")
    shown = json.loads(out)
    assert shown["status"] == "running"
    assert [t["name"] for t in shown["tasks"]] == ["review_documents"]
    code, out, _ = cli("versions", "document_review", "--json")
    (version,) = json.loads(out)
    assert set(version) >= {"key", "version", "sha256", "deployed_at", "deployed_by"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("start", "nope"), "no deployed process 'nope'"),
        (("start", "nope", "--data", "{bad"), "--data is not valid JSON"),
        (("start", "nope", "--data", "[1]"), "must be a JSON object"),
        (("start", "nope", "--as", "ghost"), "no active user 'ghost'"),
        (("instance", "retry", "999"), "no instance 999"),
        (("versions", "nope"), "nothing deployed under key 'nope'"),
        (("complete", "x", "--data", "{}"), "no open task x"),
        (("sweep", "--now", "2026-10-01T00:00:00"), "--now must carry a UTC offset"),
    ],
)
def test_user_errors_are_one_line(cli, args, message):
    code, out, err = cli(*args)
    assert code == 1
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_role_is_refused_by_the_parser(cli):
    with pytest.raises(SystemExit) as info:
        cli("user", "add", "x", "--role", "janitor")
    assert info.value.code == 2


def test_uninitialised_database_is_a_clear_error(tmp_path):
    env = {"GGZY_HOME": str(tmp_path / "fresh"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "engine.cli", "tasks"], env=env, capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 1
    assert "run `ggzy init` first" in run.stderr and "Traceback" not in run.stderr


def test_production_refuses_a_fixed_clock(tmp_path):
    env = {"GGZY_HOME": str(tmp_path), "GGZY_ENV": "production", "GGZY_NOW": "2026-10-01T00:00:00+08:00",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "engine.cli", "init"], env=env, capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 1
    assert "GGZY_NOW" in run.stderr and "production" in run.stderr
