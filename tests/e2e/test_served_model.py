"""The registered MLflow model of `kedro run`, served by `mlflow models serve` and queried over
real HTTP on localhost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # `mlflow models serve` over HTTP

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def project(trained_project):
    project, result = trained_project
    assert result.returncode == 0, result.stderr[-3000:]
    return project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_run_registers_each_modality_with_its_metrics(project):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for modality in ("image", "audio", "video"):
        served = json.loads(
            (project / f"data/08_reporting/{modality}/served_model.json").read_text()
        )
        assert served["registered"] and served["name"] == f"cart-{modality}"
        version = client.get_model_version(served["name"], served["version"])
        assert version.run_id == served["run_id"]
        assert {"test.R_at_1", "test.R_at_10", "decoder_version"} <= set(version.tags)


def post(port: int, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_mlflow_models_serve_answers_a_query_with_ranked_items(project):
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the server runs `uvicorn`
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
        "DO_NOT_TRACK": "1",
    }
    command = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/cart-image/latest"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the server forks uvicorn: stop the whole group
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start: {server.stdout.read().decode()[-3000:]}")
                time.sleep(1)
        body = {"dataframe_records": [{"query": "a brown hen"}], "params": {"k": 3}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
        # any system the evaluation measured answers from the same served index
        status, body = post(port, {"dataframe_records": [{"query": "a hen"}],
                                   "params": {"k": 3, "system": "pair_lookup"}})  # fmt: skip
        assert status == 200 and [p["rank"] for p in body["predictions"]] == [1, 2, 3]
        # bad requests: a 400 whose message is the reason, no stack trace, no server paths
        for bad, reason in [
            ({"dataframe_records": [{"query": ["a", "b"]}]}, "query 1 must be a non-empty string"),
            ({"dataframe_records": [{"query": "  "}]}, "query 1 must be a non-empty string"),
            ({"dataframe_records": [{"query": "a hen"}], "params": {"beam_size": 0}},
             "params.beam_size must be in 1..1000, got 0"),
            ({"dataframe_records": [{"query": "a hen"}], "params": {"k": 5000}},
             "params.k must be in 1..1000, got 5000"),
            ({"dataframe_records": [{"query": "a hen"}], "params": {"system": "oracle"}},
             "params.system must be one of cart, cart_rerank, cart_lookup_rerank, dual_tower, "
             "pair_lookup, got 'oracle'"),
        ]:  # fmt: skip
            status, body = post(port, bad)
            assert status == 400, (bad, body)
            assert reason in body["message"] and not body.get("stack_trace"), body
            assert str(project) not in json.dumps(body)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    corpus = pd.read_parquet(project / "data/02_intermediate/image/candidates.parquet")
    assert [p["rank"] for p in predictions] == [1, 2, 3]
    assert {p["item_id"] for p in predictions} <= set(corpus.item_id)
    assert len({p["item_id"] for p in predictions}) == 3
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert all(p["query"] == "a brown hen" and p["media_path"] for p in predictions)
