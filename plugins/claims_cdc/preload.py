"""Everything the pipeline's tasks import, imported once by the process that starts them.

Airflow runs every task in a fresh fork of an executor worker. A task that imports what it needs itself
pays for the Snowflake connector (which imports pandas), the Snowflake and Amazon providers' hooks, boto3
and pyarrow, and Airflow's own DAG-file parsing, on every run: 4 to 10 s of each task's time on the 2-core
development machine under load, seven times per DAG run. A worker that has imported this module hands all of it to every task it forks, copy-on-write.

With the LocalExecutor (``make up``) the scheduler starts its workers from a forkserver that imports this
module first::

    AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
    AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=claims_cdc.preload

(Airflow's ``[scheduler] mp_start_method`` and ``mp_forkserver_preload``; dev/claims_cdc_dev/stack.py sets
them.) Imports only: it connects to nothing, reads no setting or file and starts no thread, so it is safe to
import in a process that forks afterwards. The price: tasks run the ``claims_cdc`` code of the moment the
scheduler started (the DAG file is still parsed afresh by each task); restart it to pick up an edit.
"""

from __future__ import annotations

# The task process's own runtime: the supervisor that forks it, the runner inside it, and what the runner
# parses the DAG file with (the bundle, the DagBag, the @task decorator's operator). Without these, each task
# imported them itself: 2 to 3 s here.
import airflow.dag_processing.bundles.local
import airflow.dag_processing.bundles.manager
import airflow.dag_processing.dagbag
import airflow.providers.standard.decorators.python
import airflow.sdk.definitions.decorators
import airflow.sdk.execution_time.supervisor
import airflow.sdk.execution_time.task_runner

# Clients the task bodies import inside functions (claims_cdc.aws), and the ObjectStoragePath of batch files.
from airflow.providers.amazon.aws.hooks.dynamodb import DynamoDBHook
from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook
from airflow.sdk import ObjectStoragePath

# The task bodies (the Snowflake hook and connector, pyarrow, the stages) and what the DAG file imports;
# the run's last tasks (its note, the alerts check, the reconciliation's cadence) and the destination Asset.
import claims_cdc.alerts
import claims_cdc.assets
import claims_cdc.cadence
import claims_cdc.pipeline
import claims_cdc.run_notes
import claims_cdc.sensors

__all__ = ["DynamoDBHook", "KinesisHook", "ObjectStoragePath", "airflow", "claims_cdc"]
