"""The local stack: moto (AWS) and fakesnow (Snowflake) servers, the DynamoDB-to-Kinesis forwarder,
provisioning (the table, the stream, the alert topic ``claims-cdc-alerts`` with its inbox queue
``claims-cdc-alerts-inbox``, the Snowflake objects), and ``.local/stack.env`` for Airflow.

    PYTHONPATH=plugins:dev python -m claims_cdc_dev.stack up      # start clean (CDC_KEEP_STATE=1 keeps .local state)
    python -m claims_cdc_dev.stack up --airflow   # ... plus Airflow: api-server (UI), scheduler,
                                                    # dag-processor, triggerer; claims_cdc unpaused
    python -m claims_cdc_dev.stack down
    python -m claims_cdc_dev.stack status
    python -m claims_cdc_dev.stack provision   # only create the table, stream and Snowflake objects,
                                                 # on whatever the environment's connections point at

Airflow's processes get ``plugins/`` alone on their path, as a production deployment would; only the
stand-ins and tools (moto, fakesnow, the forwarder) also get ``dev/``. Everything binds to 127.0.0.1 and lives under ``.local/`` (git-ignored). ``CDC_FORWARDER=off`` starts
the stack without the forwarder, for tests that write Kinesis records themselves;
``CDC_CHAOS_DUPLICATE_RATE`` and ``CDC_CHAOS_REORDER_RATE`` (0..1) make it duplicate and reorder
deliveries as Kinesis may; ``CDC_SHARDS`` sets
the stream's shard count; ``CDC_MOTO_PORT`` and ``CDC_FAKESNOW_PORT`` move the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from claims_cdc.settings import PROJECT_ROOT

#: This folder's root on sys.path: the local tools are importable as ``claims_cdc_dev``.
DEV_DIR = PROJECT_ROOT / "dev"

REGION = "us-east-1"
#: Dummy credentials: moto accepts any; real ones never belong in this file.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
#: moto's account id: the local alert topic's ARN is known before moto starts, so stack.env can carry it.
ACCOUNT_ID = "123456789012"
#: The local alert inbox: alerts go to this SNS topic, which delivers them to this SQS queue (not raw: each
#: message is SNS' JSON envelope, so the subject and the time are kept). `make alerts` prints the queue.
ALERT_TOPIC = "claims-cdc-alerts"
ALERT_INBOX = "claims-cdc-alerts-inbox"
ALERT_TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{ALERT_TOPIC}"


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    moto_port: int = 4566
    fakesnow_port: int = 8765
    shards: int = 2
    forwarder: bool = True
    table: str = "InsuranceClaims"
    stream: str = "InsuranceClaimsStream"
    api_port: int = 8080

    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "stack.env"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


def config_from_env(env: dict[str, str] | None = None) -> StackConfig:
    env = dict(os.environ if env is None else env)
    forwarder = env.get("CDC_FORWARDER", "on").lower()
    if forwarder not in {"on", "off"}:
        raise SystemExit(f"CDC_FORWARDER={forwarder!r} must be on or off")
    return StackConfig(
        state_dir=Path(env.get("CDC_STATE_DIR") or PROJECT_ROOT / ".local"),
        moto_port=int(env.get("CDC_MOTO_PORT") or 4566),
        fakesnow_port=int(env.get("CDC_FAKESNOW_PORT") or 8765),
        api_port=int(env.get("CDC_API_PORT") or 8080),
        shards=int(env.get("CDC_SHARDS") or 2),
        forwarder=forwarder == "on",
    )


def fernet_key(state_dir: Path) -> str:
    """The stack's Fernet key (Airflow encrypts Variables and connections with it), kept in
    ``<state_dir>/fernet.key`` (0600) across restarts, which reset everything else.

    Workaround: without one set, every ``airflow db migrate`` of a fresh AIRFLOW_HOME writes an airflow.cfg
    with a new random key, while a process that imported Airflow before the restart keeps the old one. The
    test session imports Airflow before its stack starts: with an airflow.cfg left by an earlier session it
    encrypted Variables (the alert incidents) with that session's key, and every process started after could
    not read them. Covered by tests/unit/test_local_stack.py.
    """
    path = state_dir / "fernet.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()


def connection_env(cfg: StackConfig) -> dict[str, str]:
    """The environment that points Airflow, the hooks and the tools at this stack."""
    airflow_home = cfg.state_dir / "airflow"
    aws_conn = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": SECRET_KEY,
        "extra": {"region_name": REGION, "endpoint_url": cfg.endpoint},
    }
    snowflake_conn = {
        "conn_type": "snowflake",
        "login": "fake",
        "password": "snow",
        "schema": "CDC_SCHEMA",
        "extra": {
            "account": "fakesnow",
            "database": "CDC_DB",
            "warehouse": "CDC_WH",
            "host": "127.0.0.1",
            "port": cfg.fakesnow_port,
            "protocol": "http",
            # Give up after a minute: the connector retries fakesnow's HTTP 500 answers for much longer.
            "network_timeout": 60,
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        },
    }
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__FERNET_KEY": fernet_key(cfg.state_dir),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONPATH": str(PROJECT_ROOT / "plugins"),
        "AWS_ENDPOINT_URL": cfg.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws_conn),
        "AIRFLOW_CONN_SNOWFLAKE_DEFAULT": json.dumps(snowflake_conn),
        "CDC_SNOWFLAKE_EMULATOR": "fakesnow",
        "CDC_BATCH_ROOT": f"file://{cfg.state_dir / 'batches'}",
        "CDC_DYNAMODB_TABLE": cfg.table,
        "CDC_KINESIS_STREAM": cfg.stream,
        "CDC_ALERT_SNS_TOPIC_ARN": ALERT_TOPIC_ARN,
        "CDC_SNAPSHOT_BUCKET": SNAPSHOT_BUCKET,
        # No Deadline Alert where runs go through `airflow dags test` / dag.test() (the stack on its own, the
        # tests, the bench): there a run that succeeds fails at its end when the DAG has a deadline (an
        # Airflow surprise, reproduced in tests/platform). `make up` turns it on (airflow_env).
        "CDC_RUN_DEADLINE_SECONDS": os.environ.get("CDC_RUN_DEADLINE_SECONDS", "0"),
    }


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(port: int, name: str, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.1)
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise SystemExit(f"{name} did not listen on 127.0.0.1:{port} within {seconds:.0f}s; see {log}\n{tail}")


def tool_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a local tool (moto, fakesnow, the forwarder): ``dev/`` joins the pipeline's path."""
    return {**env, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(DEV_DIR)])}


def _start(cfg: StackConfig, name: str, argv: list[str], env: dict[str, str]) -> None:
    cfg.pid_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    log = cfg.log_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=PROJECT_ROOT)
    (cfg.pid_dir / f"{name}.pid").write_text(str(proc.pid))


def _alive(pid: int) -> bool:
    # A process this one started stays a zombie after it exits until it is reaped, and a zombie still
    # answers kill(pid, 0): reap it here, or every stop would wait out its whole grace period.
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped = 0  # not our child (started by another command): kill(pid, 0) alone tells
    if reaped == pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _signal_alive(pids, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group of each pid still alive (each was started in its own session)."""
    for pid in pids:
        if _alive(pid):
            try:
                os.killpg(pid, sig)
            except OSError:
                pass


def _stop(cfg: StackConfig, *names: str, grace: float = 5.0) -> None:
    """SIGTERM the named processes' groups all at once, give them ``grace`` seconds together, then SIGKILL.

    All at once: Airflow's components each take seconds to shut down, and one after the other they took
    their grace periods one after the other too.
    """
    pids = {}
    for name in names:
        pid_file = cfg.pid_dir / f"{name}.pid"
        if pid_file.exists():
            pids[pid_file] = int(pid_file.read_text())
    _signal_alive(pids.values(), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Every group, its leader gone or not: the scheduler exits on SIGTERM while the LocalExecutor's workers,
    # forked in its group by its forkserver, do not, and were left running (parent pid 1) by `make down`.
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:  # no process left in the group
            pass
    for pid_file in pids:
        pid_file.unlink(missing_ok=True)


AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
SERVICES = (*AIRFLOW_SERVICES, "forwarder", "moto", "fakesnow")

#: The local UI login. Local only: the api-server listens on 127.0.0.1 and holds fake data.
UI_USER = "admin"
UI_PASSWORD = "admin"


def down(cfg: StackConfig) -> None:
    _stop(cfg, *SERVICES)


def _local_secret(cfg: StackConfig, name: str) -> str:
    """A random secret kept in the state folder, so every Airflow component of this stack shares it."""
    path = cfg.state_dir / "airflow" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_env(cfg: StackConfig) -> dict[str, str]:
    """Settings of the local Airflow deployment: one machine, LocalExecutor, SQLite, simple auth manager.

    Tuned for freshness (see README, "Measured figures", freshness): the LocalExecutor's workers start from a
    forkserver that has imported ``claims_cdc.preload``, so each task process is forked with the Snowflake
    connector, the providers' hooks, boto3 and pyarrow already imported instead of importing them itself (2 to
    8 s a task here); the scheduler's idle sleep is 0.2 s (default 1), so the next task is queued sooner
    after the last one ends; and a task's supervisor looks at least once a second (default every 5 s) whether
    its task process has exited: when the process closes its sockets just before it is reapable, the
    supervisor otherwise waits out the whole interval, and a task that ends *skipped* (a reconciliation that
    is not due) is recorded as done, and its run as ended, only then. The Snowflake connector's platform
    detection (cloud metadata endpoints and an AWS STS call, here against moto, on each task's first
    connection) is off, as in docker-compose.yaml.
    """
    home = cfg.state_dir / "airflow"
    return {
        "CDC_RUN_DEADLINE_SECONDS": os.environ.get("CDC_RUN_DEADLINE_SECONDS", "3600"),  # the overrun alert
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cfg.ui_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{UI_USER}:admin",  # user:role
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(cfg.api_port),
        "AIRFLOW__API__BASE_URL": cfg.ui_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": _local_secret(cfg, "jwt_secret"),
        "AIRFLOW__API__SECRET_KEY": _local_secret(cfg, "api_secret_key"),
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "airflow.executors.local_executor,claims_cdc.preload",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true",
        # The REST API through which each claims_cdc run writes its note (CDC_AIRFLOW_API_CONN_ID).
        "AIRFLOW_CONN_AIRFLOW_API": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": cfg.api_port,
                                                "schema": "http", "login": UI_USER, "password": UI_PASSWORD}),
    }


def _airflow(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("airflow")), *args]


def start_airflow(cfg: StackConfig, env: dict[str, str]) -> None:
    """Start the api-server (UI), dag-processor, scheduler and triggerer; wait for the UI and the DAG."""
    if _port_open(cfg.api_port):
        raise SystemExit(f"127.0.0.1:{cfg.api_port} is taken; stop what holds it or set CDC_API_PORT")
    home = Path(env["AIRFLOW_HOME"])
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({UI_USER: UI_PASSWORD}))
    passwords.chmod(0o600)
    child_env = {**os.environ, **env}
    _start(cfg, "api-server", _airflow("api-server", "--host", "127.0.0.1", "--port", str(cfg.api_port)),
           child_env)
    for name in ("dag-processor", "scheduler", "triggerer"):
        _start(cfg, name, _airflow(name), child_env)
    _wait_for_port(cfg.api_port, "api-server", cfg.log_dir / "api-server.log", seconds=120)
    _unpause(cfg, child_env)


def _unpause(cfg: StackConfig, env: dict[str, str], seconds: float = 180) -> None:
    """Unpause claims_cdc once the dag-processor has parsed it (also when a kept state had it paused)."""
    deadline = time.monotonic() + seconds
    log = cfg.log_dir / "airflow-unpause.log"
    while time.monotonic() < deadline:
        with log.open("ab") as out:
            done = subprocess.run(_airflow("dags", "unpause", "claims_cdc"), check=False, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=PROJECT_ROOT).returncode == 0
        if done:
            return
        time.sleep(2)
    raise SystemExit(f"claims_cdc did not appear in Airflow within {seconds:.0f}s; see {cfg.log_dir}")


def start_forwarder(cfg: StackConfig, env: dict[str, str], duplicate_rate: float | None = None,
                    reorder_rate: float | None = None) -> None:
    """Start the forwarder; chaos rates default to CDC_CHAOS_DUPLICATE_RATE / CDC_CHAOS_REORDER_RATE."""
    argv = [sys.executable, "-m", "claims_cdc_dev.forwarder", "--table", cfg.table, "--stream", cfg.stream,
            "--state-file", str(cfg.state_dir / "forwarder.json"),
            "--duplicate-rate", str(duplicate_rate if duplicate_rate is not None
                                    else float(os.getenv("CDC_CHAOS_DUPLICATE_RATE") or 0)),
            "--reorder-rate", str(reorder_rate if reorder_rate is not None
                                  else float(os.getenv("CDC_CHAOS_REORDER_RATE") or 0))]
    if os.getenv("CDC_CHAOS_SEED"):
        argv += ["--chaos-seed", os.environ["CDC_CHAOS_SEED"]]
    _start(cfg, "forwarder", argv, tool_env({**os.environ, **env}))


def stop_forwarder(cfg: StackConfig) -> None:
    _stop(cfg, "forwarder")


def provision_aws(cfg: StackConfig, env: dict[str, str]) -> None:
    """Create the DynamoDB table (with its stream) and the Kinesis stream, through the provider's hooks."""
    os.environ.update(env)
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook
    from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

    create_table_and_stream(cfg, DynamoDBHook(aws_conn_id="aws_default").conn.meta.client,
                            KinesisHook(aws_conn_id="aws_default").get_conn())
    create_alert_inbox()


def create_alert_inbox() -> str:
    """The alert topic and the inbox queue subscribed to it (idempotent: both calls return what exists).

    Not raw delivery: each message keeps SNS' envelope (Subject, Message, Timestamp), which `make alerts`
    prints. Returns the queue's URL.
    """
    from airflow.providers.amazon.aws.hooks.sns import SnsHook
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    sns = SnsHook(aws_conn_id="aws_default").get_conn()
    sqs = SqsHook(aws_conn_id="aws_default").get_conn()
    topic_arn = sns.create_topic(Name=ALERT_TOPIC)["TopicArn"]
    if topic_arn != ALERT_TOPIC_ARN:
        raise SystemExit(f"the alert topic is {topic_arn}, not {ALERT_TOPIC_ARN} as stack.env says")
    queue_url = sqs.create_queue(QueueName=ALERT_INBOX)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscribed = {s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]}
    if queue_arn not in subscribed:
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return queue_url


#: The bucket claims_cdc_snapshot exports the table to (CDC_SNAPSHOT_BUCKET) on the local stack.
SNAPSHOT_BUCKET = "claims-cdc-snapshots"


def create_table_and_stream(cfg: StackConfig, ddb, kinesis) -> None:
    """The DynamoDB table (streams on, new and old images, point-in-time recovery on, which
    ExportTableToPointInTime needs), the snapshot bucket and the Kinesis stream, unless they exist."""
    import boto3
    existing = ddb.list_tables()["TableNames"]
    if cfg.table not in existing:
        ddb.create_table(
            TableName=cfg.table,
            KeySchema=[{"AttributeName": "claim_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "claim_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    ddb.update_continuous_backups(TableName=cfg.table,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    s3 = boto3.client("s3", endpoint_url=cfg.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY)
    if SNAPSHOT_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=SNAPSHOT_BUCKET)
    if cfg.stream not in kinesis.list_streams()["StreamNames"]:
        kinesis.create_stream(StreamName=cfg.stream, ShardCount=cfg.shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=cfg.stream, WaiterConfig={"Delay": 0.2})


def start_fakesnow(cfg: StackConfig, env: dict[str, str], setup: bool = False) -> None:
    """Start the fakesnow server on its port, with its databases under the state folder (kept across restarts)."""
    _start(cfg, "fakesnow", [sys.executable, "-m", "claims_cdc_dev.fakesnow_server", "--port", str(cfg.fakesnow_port),
                             "--db-path", str(cfg.state_dir / "fakesnow"), *(["--setup"] if setup else [])],
           tool_env({**os.environ, **env}))


def stop_fakesnow(cfg: StackConfig) -> None:
    """Stop the fakesnow server (Snowflake "down"); its tables stay for :func:`restart_fakesnow`."""
    _stop(cfg, "fakesnow")


def restart_fakesnow(cfg: StackConfig, env: dict[str, str]) -> None:
    """Start fakesnow again on its kept databases, as Snowflake coming back after an outage.

    Platform surprise (tests/platform/test_platform_quirks.py): fakesnow keeps its stages in memory, so a
    restarted server has the tables but not the load stage. ``--setup`` (claims_cdc_dev.fakesnow_server)
    runs the idempotent set-up before the server listens, so no task ever sees it without its stage.
    """
    start_fakesnow(cfg, env, setup=True)
    _wait_for_port(cfg.fakesnow_port, "fakesnow", cfg.log_dir / "fakesnow.log", seconds=120)


def provision_snowflake(env: dict[str, str]) -> list[str]:
    os.environ.update(env)
    from claims_cdc import warehouse
    from claims_cdc.mapping import load_mapping
    from claims_cdc.settings import load_settings
    from claims_cdc.snowflake import session

    settings = load_settings()
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        return warehouse.run_setup(snow, settings, load_mapping(settings.mapping_path))


def start_airflow_migration(env: dict[str, str], log: Path) -> subprocess.Popen | None:
    """Start ``airflow db migrate`` in the background (it takes about as long as the servers' start-up and
    needs none of them); None when the database already exists. Wait for it with :func:`finish_migration`."""
    home = Path(env["AIRFLOW_HOME"])
    if (home / "airflow.db").exists():
        return None
    home.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    with log.open("ab") as out:
        return subprocess.Popen([str(airflow), "db", "migrate"], env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)


def finish_migration(migration: subprocess.Popen | None, log: Path) -> None:
    if migration is not None and migration.wait(timeout=600) != 0:
        raise SystemExit(f"`airflow db migrate` failed (exit {migration.returncode}); see {log}")


def write_env_file(cfg: StackConfig, env: dict[str, str]) -> None:
    lines = ["# Written by `make stack-up`: points Airflow and the hooks at the local stack.", ""]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    cfg.env_file.write_text("\n".join(lines) + "\n")


def up(cfg: StackConfig, keep_state: bool = False, airflow: bool = False) -> dict[str, str]:
    """Start the stack (clean unless ``keep_state``), provision it and write ``stack.env``.

    ``airflow`` also starts the Airflow deployment (:func:`start_airflow`).
    """
    down(cfg)
    for port, name in ((cfg.moto_port, "moto"), (cfg.fakesnow_port, "fakesnow")):
        if _port_open(port):
            raise SystemExit(f"127.0.0.1:{port} is taken; stop what holds it or set CDC_{name.upper()}_PORT")
    if not keep_state:
        for sub in ("fakesnow", "batches", "forwarder.json", "airflow", "logs"):
            path = cfg.state_dir / sub
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    env = connection_env(cfg)
    if airflow:
        env.update(airflow_env(cfg))
    migration_log = cfg.log_dir / "airflow-migrate.log"
    migration = start_airflow_migration(env, migration_log)
    try:
        child_env = tool_env({**os.environ, **env})
        _start(cfg, "moto", [sys.executable, "-m", "claims_cdc_dev.moto_server", "-H", "127.0.0.1", "-p",
                             str(cfg.moto_port)], child_env)
        start_fakesnow(cfg, env)
        _wait_for_port(cfg.moto_port, "moto", cfg.log_dir / "moto.log")
        _wait_for_port(cfg.fakesnow_port, "fakesnow", cfg.log_dir / "fakesnow.log")
        provision_aws(cfg, env)
        skipped = provision_snowflake(env)
        if skipped:
            print(f"setup.sql: skipped on fakesnow (real Snowflake only): {', '.join(skipped)}")
        if cfg.forwarder:
            start_forwarder(cfg, env)
    except BaseException:
        if migration is not None:
            migration.kill()  # nothing half-done left running
        raise
    finish_migration(migration, migration_log)
    write_env_file(cfg, env)
    if airflow:
        try:
            start_airflow(cfg, env)
        except BaseException:
            down(cfg)  # leave nothing half-started behind
            raise
    return env


def status(cfg: StackConfig) -> int:
    running = 0
    for name in SERVICES:
        pid_file = cfg.pid_dir / f"{name}.pid"
        alive = pid_file.exists() and _alive(int(pid_file.read_text()))
        running += alive
        print(f"{name:10s} {'running' if alive else 'stopped'}")
    return 0 if running else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "provision"])
    parser.add_argument("--airflow", action="store_true", help="with up: also start the Airflow deployment")
    args = parser.parse_args(argv)
    cfg = config_from_env()
    if args.command == "provision":
        # Used by docker-compose's one-shot `cdc-provision` service: the connections come from its environment.
        provision_aws(cfg, {})
        skipped = provision_snowflake({})
        print(f"provisioned {cfg.table}, {cfg.stream} ({cfg.shards} shards) and the Snowflake objects"
              + (f"; skipped on the emulator: {', '.join(skipped)}" if skipped else ""))
        return 0
    if args.command == "up":
        up(cfg, keep_state=os.environ.get("CDC_KEEP_STATE", "") in {"1", "true", "yes"}, airflow=args.airflow)
        print(f"local stack up: moto {cfg.endpoint}, fakesnow http://127.0.0.1:{cfg.fakesnow_port}, "
              f"forwarder {'on' if cfg.forwarder else 'off'}")
        if args.airflow:
            print(f"Airflow UI: {cfg.ui_url}  (login {UI_USER} / {UI_PASSWORD}); claims_cdc is unpaused and "
                  "micro-batching. Logs: " + str(cfg.log_dir))
            print("write claims:  set -a; . .local/stack.env; set +a; "
                  "PYTHONPATH=plugins:dev .venv/bin/python -m claims_cdc_dev.generator ingest 10")
            print("stop:          make down")
        else:
            print(f"next: source {cfg.env_file} && .venv/bin/airflow dags test claims_cdc")
        return 0
    if args.command == "down":
        down(cfg)
        print("local stack down")
        return 0
    return status(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
