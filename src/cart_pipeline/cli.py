"""Project commands: `kedro run` with short errors, and `kedro resume`.

Kedro loads this module's ``cli`` group and lets it override its own commands (see
"Use case 3: how to add or modify CLI commands" in the Kedro docs). `run` is Kedro's own
command, with the same options, plus ``--verbose``: a problem the user can fix (a bad
manifest, a file that cannot be read or written, an interrupted run) ends with one line
saying which and why, instead of a page of traceback. Anything else still shows its traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io.core import DatasetError
from kedro.utils import find_kedro_project

from cart_pipeline import run_lock
from cart_pipeline.core.config import ConfigError
from cart_pipeline.core.errors import InputError
from cart_pipeline.hooks import RESUMES_ENV, RunInterrupted
from cart_pipeline.resume import ResumeError, plan_resume

VERBOSE_HELP = "show the full traceback of an error"


def short_message(error: BaseException) -> str | None:
    """One line for an error the user can act on; None for anything else (a bug)."""
    if RunInterrupted.received:  # whatever the exception became on its way out
        return f"run interrupted by {RunInterrupted.received}"
    if isinstance(error, (InputError, RunInterrupted, ResumeError)):
        return str(error)
    if isinstance(error, DatasetError):
        text = str(error)
        where = re.search(r"filepath=(?:PurePosixPath\()?'([^']*)'", text)
        action = re.search(r"Failed while (loading|saving) data", text)
        cause = error.__cause__
        while cause is not None and cause.__cause__ is not None:
            cause = cause.__cause__
        if action and where and cause is not None:
            reason = "the file is empty" if type(cause).__name__ == "EmptyDataError" else f"{cause}"
            verb = "read" if action.group(1) == "loading" else "write"
            return f"cannot {verb} {where.group(1)}: {' '.join(reason.split())}"
        return " ".join(text.split())
    return None


def _run_reporting_errors(run: Callable[[], Any], verbose: bool) -> None:
    try:
        run()
    except Exception as error:  # noqa: BLE001 - sorted into the user's problems and bugs
        message = short_message(error)
        if message is None or verbose:
            raise
        click.secho(f"Error: {message}", fg="red", err=True)
        if RunInterrupted.received:
            click.echo(
                "Finish the run with `kedro resume`: it runs only what did not finish.", err=True
            )
        elif not isinstance(error, (ResumeError, ConfigError, run_lock.ProjectLocked)):
            # the run had started: what finished is saved, and resume runs the rest
            click.echo("Once fixed, `kedro resume` runs only what did not finish.", err=True)
        sys.exit(1)


@click.group(name="cart_pipeline")
def cli() -> None:
    """Project commands of cart-pipeline."""


def _locked(run: Callable[[], Any]) -> Callable[[], Any]:
    """``run`` holding the project's run lock (run_lock.py): a second run stops at once."""

    def locked() -> None:
        project = find_kedro_project(Path.cwd()) or Path.cwd()
        run_lock.acquire(project)
        try:
            run()
        finally:
            run_lock.release(project)

    return locked


@cli.command(name="run", params=[*kedro_run.params], help=kedro_run.help)
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
def run(verbose: bool, **kwargs: Any) -> None:
    _run_reporting_errors(_locked(lambda: kedro_run.callback(**kwargs)), verbose)


# Kedro's own `--params` option (the same parsing as `kedro run`'s), for corrections on resume
PARAMS_OPTION = next(option for option in kedro_run.params if option.name == "params")


@cli.command(params=[PARAMS_OPTION])
@click.option("--dry-run", is_flag=True, help="only say which nodes would run")
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
@click.pass_context
def resume(ctx: click.Context, dry_run: bool, verbose: bool, params: dict) -> None:
    """Finish the newest `kedro run` that did not: run exactly its unfinished nodes, with the
    same pipelines, environment and --params (the record is in data/09_tracking/runs/).
    `--params` corrects the recorded ones (a typo, a value that stopped the run), unless
    it would change the data split the finished nodes used."""

    def _resume() -> None:
        plan = plan_resume(Path.cwd(), corrections=params or {})
        click.echo(
            f"Resuming run {plan.run['session_id']} ({plan.run['status']}): "
            f"{len(plan.remaining)} of {len(plan.run['nodes'])} nodes left, from {plan.remaining[0]}",
            err=True,
        )
        if dry_run:
            click.echo("\n".join(plan.remaining))
            return
        # Kedro's own option parsing gives every option its processed default
        options = kedro_run.make_context("run", [], parent=ctx).params
        options.update(
            pipelines=plan.run["pipeline_names"],
            node_names=plan.remaining,
            env=plan.run["env"],
            params=plan.runtime_params,
            **({"conf_source": plan.run["conf_source"]} if plan.run.get("conf_source") else {}),
        )
        os.environ[RESUMES_ENV] = plan.original_run
        kedro_run.callback(**options)

    _run_reporting_errors(_locked(_resume), verbose)
