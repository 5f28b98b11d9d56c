"""The local stack's process handling (dev/claims_cdc_dev/stack.py), on a harmless child process."""

from __future__ import annotations

import shutil
import sys
import time

from claims_cdc_dev import stack


def test_stopping_a_child_that_exits_on_sigterm_does_not_wait_out_the_grace_period(tmp_path):
    cfg = stack.StackConfig(state_dir=tmp_path)
    stack._start(cfg, "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {})
    pid = int((cfg.pid_dir / "sleeper.pid").read_text())
    assert stack._alive(pid)

    started = time.monotonic()
    stack._stop(cfg, "sleeper")
    # The child exits at once on SIGTERM; before it was reaped, its zombie kept _stop waiting 5 s.
    assert time.monotonic() - started < 2
    assert not stack._alive(pid)
    assert not (cfg.pid_dir / "sleeper.pid").exists()


def test_the_local_executor_preloads_modules_that_exist(tmp_path):
    """The forkserver skips a preload module it cannot import without a word: a typo would only show as slow
    tasks. So every module ``make up`` names must be importable here (plugins/ on the path, as Airflow's)."""
    import importlib.util

    env = stack.airflow_env(stack.StackConfig(state_dir=tmp_path))
    assert env["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    modules = env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"].split(",")
    assert "claims_cdc.preload" in modules
    assert [m for m in modules if importlib.util.find_spec(m) is None] == []


def test_the_preload_module_imports_what_the_tasks_use():
    import sys

    import claims_cdc.preload  # noqa: F401 - the import is the test

    for module in ("claims_cdc.pipeline", "snowflake.connector", "airflow.providers.snowflake.hooks.snowflake",
                   "airflow.providers.amazon.aws.hooks.kinesis", "pyarrow.parquet"):
        assert module in sys.modules, module


def test_the_deployment_defines_the_api_connection_runs_write_their_notes_through(tmp_path):
    """`make up` gives run_note an HTTP connection to its own api-server, as the local admin user."""
    import json

    from claims_cdc import run_notes
    from claims_cdc.settings import load_settings

    cfg = stack.StackConfig(state_dir=tmp_path, api_port=18080)
    env = stack.airflow_env(cfg)
    conn = json.loads(env[f"AIRFLOW_CONN_{load_settings({}).airflow_api_conn_id.upper()}"])
    assert (conn["conn_type"], conn["login"], conn["password"]) == ("http", stack.UI_USER, stack.UI_PASSWORD)

    class _Conn:
        host, port, schema = conn["host"], conn["port"], conn["schema"]

    assert run_notes._api_base(_Conn()) == cfg.ui_url


def test_runs_have_a_deadline_under_make_up_only_since_airflow_dags_test_fails_on_one(tmp_path, monkeypatch):
    """`airflow dags test` / dag.test() fail a successful run of a DAG with a Deadline Alert (tests/platform):
    the stack on its own (tests, bench, `airflow dags test`) writes no deadline, `make up` the default one."""
    from claims_cdc.settings import load_settings

    monkeypatch.delenv("CDC_RUN_DEADLINE_SECONDS", raising=False)
    cfg = stack.StackConfig(state_dir=tmp_path)
    alone = stack.connection_env(cfg)
    deployed = {**alone, **stack.airflow_env(cfg)}
    assert load_settings(alone).run_deadline_seconds == 0
    assert load_settings(deployed).run_deadline_seconds == 3600
    monkeypatch.setenv("CDC_RUN_DEADLINE_SECONDS", "21")  # a test deployment's own (test_overrun_deployment)
    assert stack.airflow_env(cfg)["CDC_RUN_DEADLINE_SECONDS"] == "21"


def test_the_fernet_key_outlives_a_restart_that_resets_the_airflow_home(tmp_path):
    """Every process of a stack folder encrypts and decrypts Variables (the alert incidents) with one key, kept
    across restarts; before, each fresh AIRFLOW_HOME's `airflow db migrate` wrote a new random one, and a test
    session that had imported Airflow before its stack restarted wrote Variables no later process could read."""
    from cryptography.fernet import Fernet

    cfg = stack.StackConfig(state_dir=tmp_path / "state")
    key = stack.connection_env(cfg)["AIRFLOW__CORE__FERNET_KEY"]
    token = Fernet(key.encode()).encrypt(b"incident")
    (cfg.state_dir / "airflow").mkdir()
    (cfg.state_dir / "airflow" / "airflow.cfg").write_text("[core]\nfernet_key = another\n")
    shutil.rmtree(cfg.state_dir / "airflow")  # as `stack up` resets the folder (the key file stays)
    again = stack.connection_env(cfg)["AIRFLOW__CORE__FERNET_KEY"]
    assert Fernet(again.encode()).decrypt(token) == b"incident"
    assert (cfg.state_dir / "fernet.key").stat().st_mode & 0o777 == 0o600
    assert stack.connection_env(stack.StackConfig(state_dir=tmp_path / "other"))["AIRFLOW__CORE__FERNET_KEY"] != key


def test_stopping_a_service_stops_its_group_members_that_outlive_it(tmp_path):
    """The LocalExecutor's workers stay in the scheduler's process group and shrug off SIGTERM; once the
    scheduler had exited, `make down` sent SIGKILL only to groups whose leader was alive, and left them
    running (parent pid 1)."""
    cfg = stack.StackConfig(state_dir=tmp_path)
    child_pid = tmp_path / "child.pid"
    leader = (
        "import os, signal, sys, time\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        f"open({str(child_pid)!r}, 'w').write(str(child))\n"
        "time.sleep(60)\n"
    )
    stack._start(cfg, "leader", [sys.executable, "-c", leader], {})
    deadline = time.monotonic() + 10
    while not (child_pid.exists() and child_pid.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(child_pid.read_text())
    assert stack._alive(pid)

    stack._stop(cfg, "leader")
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie (the orphan's new parent, init, reaps it in its own time)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
