"""Ansible retry loops survive a failed attempt.

An ``until:`` condition is evaluated after every attempt, failed ones included. A failed
attempt of a module that reads something (a query against a server still starting) registers
no result fields, so a condition such as ``not x.query_result[0].recovering`` raises an
error on the first failure and the loop dies instead of retrying. Every loop must check
``x is succeeded`` before it reads ``x``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import harness

TASK_LISTS = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")


def _tasks(node: Any) -> Iterator[dict[str, Any]]:
    """Every task in a parsed playbook or task file, nested blocks included."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in TASK_LISTS:
            if key in node:
                yield from _tasks(node[key])


def _retry_loops() -> list[tuple[Path, dict[str, Any]]]:
    loops = []
    for path in sorted(harness.ANSIBLE_DIR.rglob("*.yml")):
        tasks = _tasks(yaml.safe_load(path.read_text()))
        loops.extend((path, task) for task in tasks if "until" in task)
    return loops


def unguarded(task: dict[str, Any]) -> bool:
    """True when the task's ``until`` reads its registered result without first checking the
    attempt succeeded."""
    name = task.get("register")
    condition = str(task["until"])
    if name is None or name not in condition:
        return False
    guard = re.compile(rf"\b{re.escape(name)}\s+is\s+(succeeded|success)\b")
    return not guard.search(condition)


def test_every_retry_loop_checks_the_attempt_succeeded() -> None:
    loops = _retry_loops()
    assert len(loops) >= 4, "the roles' retry loops were not found"
    bad = [
        f"{path.relative_to(harness.ANSIBLE_DIR)}: {task.get('name')}"
        for path, task in loops
        if unguarded(task)
    ]
    assert not bad, f"until: reads the result of a failed attempt: {bad}"


def test_the_guard_check_finds_the_loop_that_broke_the_drill() -> None:
    broken = {"register": "_state", "until": "not _state.query_result[0].recovering"}
    guarded = {
        "register": "_state",
        "until": "_state is succeeded and not _state.query_result[0].recovering",
    }
    assert unguarded(broken)
    assert not unguarded(guarded)


def test_the_drill_waits_for_connections_before_querying() -> None:
    drill = yaml.safe_load((harness.ANSIBLE_DIR / "roles/backup/tasks/drill.yml").read_text())
    names = [str(task.get("name")) for task in _tasks(drill)]
    ready = names.index("Drill | Wait for the scratch cluster to accept connections")
    query = names.index("Drill | Wait for recovery to reach the end of the archive and promote")
    assert ready < query
