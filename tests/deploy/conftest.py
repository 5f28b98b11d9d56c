"""A running deployment, started the way `make up` starts it: the local stack plus Airflow's api-server,
scheduler, dag-processor and triggerer, with claims_cdc unpaused and micro-batching on its own.
Module-scoped, so it stops when its module ends (tests/ has no packages: a "package" fixture would
live, polling, until the session's end).

It runs as a separate process tree on its own free ports under .local/test-deploy, so it never shares a
database or a stream with the session's test stack (whose tests run dag.test() on their own).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from claims_cdc.settings import PROJECT_ROOT as ROOT
from helpers import free_port


@dataclass(frozen=True)
class Deployment:
    env: dict[str, str]  # what `make up` wrote to stack.env
    ui_url: str
    user: str
    password: str
    artifacts: Path
    #: The deployment's state folder and fakesnow port (a test may stop and start fakesnow: "Snowflake down").
    state_dir: Path | None = None
    fakesnow_port: int | None = None

    def dynamodb_table(self) -> Any:
        """The claims table through plain boto3, pointed at this deployment's moto."""
        import boto3

        return boto3.resource(
            "dynamodb",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        ).Table(self.env["CDC_DYNAMODB_TABLE"])

    @contextmanager
    def snowflake(self) -> Iterator[Any]:
        """A session on this deployment's fakesnow, through the same hook the tasks use."""
        from claims_cdc.snowflake import session

        key = "AIRFLOW_CONN_SNOWFLAKE_DEFAULT"
        saved = os.environ[key]
        os.environ[key] = self.env[key]
        try:
            with session("snowflake_default", "fakesnow") as snow:
                yield snow
        finally:
            os.environ[key] = saved

    def alert_inbox(self) -> list[dict]:
        """The messages in this deployment's claims-cdc-alerts-inbox, oldest first, left in the queue (as
        `make alerts` reads them: claims_cdc_dev.alerts_inbox)."""
        import boto3

        from claims_cdc_dev import alerts_inbox

        sqs = boto3.client("sqs", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name=self.env["AWS_DEFAULT_REGION"],
                           aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])
        return alerts_inbox.read(sqs, sqs.get_queue_url(QueueName=alerts_inbox.ALERT_INBOX)["QueueUrl"])

    @cached_property
    def _token(self) -> str:
        """One login for the module's API calls (tests poll the API every second)."""
        return _post_json(f"{self.ui_url}/auth/token",
                          {"username": self.user, "password": self.password})["access_token"]

    def api(self, path: str, method: str = "GET", body: dict | None = None) -> Any:
        """Airflow's REST API (v2), logged in as the local user."""
        request = urllib.request.Request(
            f"{self.ui_url}/api/v2{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")


def _post_json(url: str, body: dict) -> Any:
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="module")
def deployment(request) -> Iterator[Deployment]:
    """A test module may set ``DEPLOYMENT_ENV`` (a dict) for settings of its own, short retries say."""
    from claims_cdc_dev import stack as local_stack

    state = ROOT / ".local" / "test-deploy"
    # `stack` is a local tool (plugins/ and dev/ on its path); it gives Airflow's own processes plugins/ alone.
    env = local_stack.tool_env({
        **os.environ,
        "CDC_STATE_DIR": str(state),
        "CDC_MOTO_PORT": str(free_port()),
        "CDC_FAKESNOW_PORT": str(free_port()),
        "CDC_API_PORT": str(free_port()),
        "CDC_FORWARDER": "on",
        **getattr(request.module, "DEPLOYMENT_ENV", {}),
    })
    command = [sys.executable, "-m", "claims_cdc_dev.stack"]
    started = subprocess.run([*command, "up", "--airflow"], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=600, check=False)
    if started.returncode != 0:
        subprocess.run([*command, "down"], env=env, cwd=ROOT, check=False, timeout=120)
        pytest.fail(f"`stack up --airflow` failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
    try:
        artifacts = ROOT / ".local" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        yield Deployment(
            env=_read_env_file(state / "stack.env"),
            ui_url=f"http://127.0.0.1:{env['CDC_API_PORT']}",
            user=local_stack.UI_USER,
            password=local_stack.UI_PASSWORD,
            artifacts=artifacts,
            state_dir=state,
            fakesnow_port=int(env["CDC_FAKESNOW_PORT"]),
        )
    finally:
        subprocess.run([*command, "down"], env=env, cwd=ROOT, check=False, timeout=120)
