"""What `kedro resume` runs: exactly the nodes the newest `kedro run` did not finish.

The run journal (:class:`cart_pipeline.hooks.RunJournalHook`) lists, per run, the nodes it was
asked to run and those that finished. Resuming runs the rest (and the finished producers of
any in-memory dataset the rest reads), with the same pipelines, environment and ``--params``. That is correct, not just successful: every node downstream of
an unfinished node is itself unfinished and runs again, and the finished nodes' outputs are
the newest on disk because only the newest run can be resumed. The metrics, the report and
the index `cart-search` serves then all describe one run (its finished part plus the rest).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

from cart_pipeline.hooks import JOURNAL_FOLDER, process_alive


class ResumeError(RuntimeError):
    """Nothing to resume, or resuming would mix runs."""


# Keys whose change would give the unfinished nodes another split than the finished ones used
SPLIT_KEYS = ("ingest", "dataset_root", "modalities")


@dataclass(frozen=True)
class ResumePlan:
    run: dict  # the journal entry of the run to finish
    remaining: list[str]  # its unfinished nodes, in topological order
    runtime_params: dict  # the run's --params with the resume's corrections merged in

    @property
    def original_run(self) -> str:
        """The session id of the run this completes (a resumed resume completes the first)."""
        return self.run.get("resumes") or self.run["session_id"]


def journal(project: Path) -> list[dict]:
    """Every recorded run, oldest first (session ids are timestamps)."""
    runs = []
    for path in sorted((project / JOURNAL_FOLDER).glob("*.json")):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ResumeError(
                f"the run journal {path} cannot be read ({type(error).__name__}: {error}); "
                "remove it, or start a new run with `kedro run`"
            ) from None
    return runs


def corrected(recorded: dict, corrections: dict) -> dict:
    """The recorded --params with ``corrections`` merged in, key by key; a correction that
    would change the data split is refused (the finished nodes used the recorded one)."""
    changes_split = sorted(key for key in corrections if key in SPLIT_KEYS)
    if changes_split:
        raise ResumeError(
            f"--params {', '.join(changes_split)} would change the data split the finished "
            "nodes used: start a new run with `kedro run` and these --params instead"
        )
    return _merge(recorded, corrections)


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def plan_resume(project: Path, corrections: dict | None = None) -> ResumePlan:
    runs = journal(project)
    if not runs:
        raise ResumeError(
            f"no run recorded in {JOURNAL_FOLDER}: nothing to resume; start one with `kedro run`"
        )
    last = runs[-1]
    name = f"the last run ({last['session_id']})"
    if last["status"] == "finished":
        raise ResumeError(f"nothing to resume: {name} finished")
    if (
        last["status"] == "running"
        and last.get("host") == socket.gethostname()
        and process_alive(int(last.get("pid", 0)))
    ):
        raise ResumeError(f"{name} is still running (pid {last['pid']})")
    unfinished = unfinished_nodes(last)
    if not unfinished:  # killed between its last node and the end of the run
        raise ResumeError(f"nothing to resume: every node of {name} finished")
    runtime_params = corrected(last.get("runtime_params") or {}, corrections or {})
    return ResumePlan(last, [node for node in last["nodes"] if node in unfinished], runtime_params)


def unfinished_nodes(run: dict) -> set[str]:
    """The nodes that did not finish, plus the finished producers of in-memory datasets they
    read (those outputs died with the process)."""
    remaining = set(run["nodes"]) - set(run["done"])
    ephemeral, graph = set(run["ephemeral"]), run["graph"]
    while True:
        needed = {name for node in remaining for name in graph[node]["inputs"]} & ephemeral
        producers = {node for node, io in graph.items() if needed & set(io["outputs"])} - remaining
        if not producers:
            return remaining
        remaining |= producers
