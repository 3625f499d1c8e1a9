"""A model's task says what its model takes; one function answers, and no module answers on its own."""

from __future__ import annotations

import re
from pathlib import Path

from audit.models.loading import TASKS as loading_tasks
from audit.models.tasks import TASKS, input_kind

ROOT = Path(__file__).resolve().parents[2]


def test_input_kind_of_every_task():
    assert {task: input_kind(task) for task in TASKS} == {"image-classification": "image",
                                                          "text-classification": "text"}
    assert input_kind(None) == "image" and input_kind("") == "image"
    assert loading_tasks is TASKS


def test_no_module_decides_the_kind_of_a_task_on_its_own():
    pattern = re.compile(r"""["']text["']\s+if\s+[^\n]*==\s*["']text-classification["']""")
    found = [f"{path.relative_to(ROOT)}:{n}" for folder in ("audit", "pages") for path in (ROOT / folder).rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line) and path != ROOT / "audit/models/tasks.py"]
    assert not found, f"use audit.models.tasks.input_kind: {found}"
