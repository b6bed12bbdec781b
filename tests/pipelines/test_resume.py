"""What `kedro resume` plans from the run journal (cart_pipeline.resume), without running it."""

from __future__ import annotations

import json
import os
import socket

import pytest

from cart_pipeline.hooks import JOURNAL_FOLDER
from cart_pipeline.resume import ResumeError, plan_resume, unfinished_nodes

# validate -> (memory) valid -> build -> candidates (file) -> features -> evaluate
GRAPH = {
    "validate": {"inputs": ["manifest"], "outputs": ["valid", "rejects"]},
    "build": {"inputs": ["valid"], "outputs": ["candidates"]},
    "features": {"inputs": ["candidates"], "outputs": ["features"]},
    "evaluate": {"inputs": ["features", "candidates"], "outputs": ["metrics"]},
}


def entry(session_id: str, done: list[str], status: str = "failed", pid: int = 0) -> dict:
    return {
        "session_id": session_id,
        "status": status,
        "host": socket.gethostname(),
        "pid": pid,
        "resumes": None,
        "env": None,
        "conf_source": None,
        "pipeline_names": ["__default__"],
        "runtime_params": {"seed": 7},
        "nodes": list(GRAPH),
        "graph": GRAPH,
        "ephemeral": ["valid"],
        "done": done,
        "running": None,
    }


def write(project, *entries) -> None:
    folder = project / JOURNAL_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for e in entries:
        (folder / f"{e['session_id']}.json").write_text(json.dumps(e))


def test_unfinished_nodes_and_nothing_downstream_is_reused():
    assert unfinished_nodes(entry("a", ["validate", "build"])) == {"features", "evaluate"}


def test_a_finished_producer_of_an_in_memory_input_runs_again():
    # `build` did not finish and reads `valid`, which lived only in the killed process
    assert unfinished_nodes(entry("a", ["validate"])) == {
        "validate",
        "build",
        "features",
        "evaluate",
    }


def test_the_plan_is_the_newest_runs_unfinished_nodes_in_order(tmp_path):
    write(
        tmp_path,
        entry("2026-01-01T00.00.00.000Z", []),
        entry("2026-01-02T00.00.00.000Z", ["validate", "build"]),
    )
    plan = plan_resume(tmp_path)
    assert plan.remaining == ["features", "evaluate"]
    assert (
        plan.run["runtime_params"] == {"seed": 7}
        and plan.original_run == "2026-01-02T00.00.00.000Z"
    )


def test_a_resumed_resume_completes_the_first_run(tmp_path):
    write(
        tmp_path,
        {**entry("2026-01-02T00.00.00.000Z", ["features"]), "resumes": "2026-01-01T00.00.00.000Z"},
    )
    assert plan_resume(tmp_path).original_run == "2026-01-01T00.00.00.000Z"


@pytest.mark.parametrize(
    "entries, message",
    [
        ([], "no run recorded"),
        (
            [
                entry("2026-01-01T00.00.00.000Z", [], "failed"),
                entry("2026-01-02T00.00.00.000Z", list(GRAPH), "finished"),
            ],
            "nothing to resume: the last run (2026-01-02T00.00.00.000Z) finished",
        ),
        (
            [entry("2026-01-01T00.00.00.000Z", ["validate"], "running", pid=os.getpid())],
            "still running",
        ),
        ([entry("2026-01-01T00.00.00.000Z", list(GRAPH), "running")], "every node"),
    ],
    ids=["no-journal", "last-finished", "still-running", "all-nodes-done"],
)
def test_nothing_to_resume_says_why(tmp_path, entries, message):
    write(tmp_path, *entries)
    with pytest.raises(ResumeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_resume(tmp_path)
