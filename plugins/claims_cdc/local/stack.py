"""The local stack: moto (AWS) and fakesnow (Snowflake) servers, the DynamoDB-to-Kinesis forwarder,
provisioning, and ``.local/stack.env`` for Airflow.

    python -m claims_cdc.local.stack up      # start clean (CDC_KEEP_STATE=1 keeps .local state)
    python -m claims_cdc.local.stack down
    python -m claims_cdc.local.stack status

Everything binds to 127.0.0.1 and lives under ``.local/`` (git-ignored). ``CDC_FORWARDER=off`` starts
the stack without the forwarder, for tests that write Kinesis records themselves;
``CDC_CHAOS_DUPLICATE_RATE`` and ``CDC_CHAOS_REORDER_RATE`` (0..1) make it duplicate and reorder
deliveries as Kinesis may; ``CDC_SHARDS`` sets
the stream's shard count; ``CDC_MOTO_PORT`` and ``CDC_FAKESNOW_PORT`` move the servers.
"""

from __future__ import annotations

import argparse
import json
import os
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

REGION = "us-east-1"
#: Dummy credentials: moto accepts any; real ones never belong in this file.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    moto_port: int = 4566
    fakesnow_port: int = 8765
    shards: int = 2
    forwarder: bool = True
    table: str = "InsuranceClaims"
    stream: str = "InsuranceClaimsStream"

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


def config_from_env(env: dict[str, str] | None = None) -> StackConfig:
    env = dict(os.environ if env is None else env)
    forwarder = env.get("CDC_FORWARDER", "on").lower()
    if forwarder not in {"on", "off"}:
        raise SystemExit(f"CDC_FORWARDER={forwarder!r} must be on or off")
    return StackConfig(
        state_dir=Path(env.get("CDC_STATE_DIR") or PROJECT_ROOT / ".local"),
        moto_port=int(env.get("CDC_MOTO_PORT") or 4566),
        fakesnow_port=int(env.get("CDC_FAKESNOW_PORT") or 8765),
        shards=int(env.get("CDC_SHARDS") or 2),
        forwarder=forwarder == "on",
    )


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


def _start(cfg: StackConfig, name: str, argv: list[str], env: dict[str, str]) -> None:
    cfg.pid_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    log = cfg.log_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                cwd=PROJECT_ROOT)
    (cfg.pid_dir / f"{name}.pid").write_text(str(proc.pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _stop(cfg: StackConfig, name: str) -> None:
    pid_file = cfg.pid_dir / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
    pid_file.unlink(missing_ok=True)


SERVICES = ("forwarder", "moto", "fakesnow")


def down(cfg: StackConfig) -> None:
    for name in SERVICES:
        _stop(cfg, name)


def start_forwarder(cfg: StackConfig, env: dict[str, str], duplicate_rate: float | None = None,
                    reorder_rate: float | None = None) -> None:
    """Start the forwarder; chaos rates default to CDC_CHAOS_DUPLICATE_RATE / CDC_CHAOS_REORDER_RATE."""
    argv = [sys.executable, "-m", "claims_cdc.local.forwarder", "--table", cfg.table, "--stream", cfg.stream,
            "--state-file", str(cfg.state_dir / "forwarder.json"),
            "--duplicate-rate", str(duplicate_rate if duplicate_rate is not None
                                    else float(os.getenv("CDC_CHAOS_DUPLICATE_RATE") or 0)),
            "--reorder-rate", str(reorder_rate if reorder_rate is not None
                                  else float(os.getenv("CDC_CHAOS_REORDER_RATE") or 0))]
    if os.getenv("CDC_CHAOS_SEED"):
        argv += ["--chaos-seed", os.environ["CDC_CHAOS_SEED"]]
    _start(cfg, "forwarder", argv, {**os.environ, **env})


def stop_forwarder(cfg: StackConfig) -> None:
    _stop(cfg, "forwarder")


def provision_aws(cfg: StackConfig, env: dict[str, str]) -> None:
    """Create the DynamoDB table (with its stream) and the Kinesis stream, through the provider's hooks."""
    os.environ.update(env)
    from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook
    from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

    ddb = DynamoDBHook(aws_conn_id="aws_default").conn.meta.client
    kinesis = KinesisHook(aws_conn_id="aws_default").get_conn()
    existing = ddb.list_tables()["TableNames"]
    if cfg.table not in existing:
        ddb.create_table(
            TableName=cfg.table,
            KeySchema=[{"AttributeName": "claim_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "claim_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
    if cfg.stream not in kinesis.list_streams()["StreamNames"]:
        kinesis.create_stream(StreamName=cfg.stream, ShardCount=cfg.shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=cfg.stream, WaiterConfig={"Delay": 0.2})


def provision_snowflake(env: dict[str, str]) -> list[str]:
    os.environ.update(env)
    from claims_cdc import warehouse
    from claims_cdc.mapping import load_mapping
    from claims_cdc.settings import load_settings
    from claims_cdc.snowflake import session

    settings = load_settings()
    with session(settings.snowflake_conn_id, settings.snowflake_emulator) as snow:
        return warehouse.run_setup(snow, settings, load_mapping(settings.mapping_path))


def migrate_airflow(env: dict[str, str], log: Path) -> None:
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    with log.open("ab") as out:
        subprocess.run([str(airflow), "db", "migrate"], env={**os.environ, **env}, check=True, stdout=out,
                       stderr=subprocess.STDOUT)


def write_env_file(cfg: StackConfig, env: dict[str, str]) -> None:
    lines = ["# Written by `make stack-up`: points Airflow and the hooks at the local stack.", ""]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    cfg.env_file.write_text("\n".join(lines) + "\n")


def up(cfg: StackConfig, keep_state: bool = False) -> dict[str, str]:
    """Start the stack (clean unless ``keep_state``), provision it and write ``stack.env``."""
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
    child_env = {**os.environ, **env}
    _start(cfg, "moto", [sys.executable, "-m", "claims_cdc.local.moto_server", "-H", "127.0.0.1", "-p",
                         str(cfg.moto_port)], child_env)
    _start(
        cfg,
        "fakesnow",
        [sys.executable, "-m", "claims_cdc.local.fakesnow_server", "--port", str(cfg.fakesnow_port),
         "--db-path", str(cfg.state_dir / "fakesnow")],
        child_env,
    )
    _wait_for_port(cfg.moto_port, "moto", cfg.log_dir / "moto.log")
    _wait_for_port(cfg.fakesnow_port, "fakesnow", cfg.log_dir / "fakesnow.log")
    provision_aws(cfg, env)
    skipped = provision_snowflake(env)
    if skipped:
        print(f"setup.sql: skipped on fakesnow (real Snowflake only): {', '.join(skipped)}")
    if cfg.forwarder:
        start_forwarder(cfg, env)
    if not (Path(env["AIRFLOW_HOME"]) / "airflow.db").exists():
        migrate_airflow(env, cfg.log_dir / "airflow-migrate.log")
    write_env_file(cfg, env)
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
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    cfg = config_from_env()
    if args.command == "up":
        up(cfg, keep_state=os.environ.get("CDC_KEEP_STATE", "") in {"1", "true", "yes"})
        print(f"local stack up: moto {cfg.endpoint}, fakesnow http://127.0.0.1:{cfg.fakesnow_port}, "
              f"forwarder {'on' if cfg.forwarder else 'off'}")
        print(f"next: source {cfg.env_file} && .venv/bin/airflow dags test claims_cdc")
        return 0
    if args.command == "down":
        down(cfg)
        print("local stack down")
        return 0
    return status(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
