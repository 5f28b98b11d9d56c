"""The package's imports go one way: DAG -> task bodies -> stages -> clients (-> configuration).

Read from the source (every import, also those inside functions), so a shortcut taken anywhere shows.
"""

from __future__ import annotations

import ast

from claims_cdc.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "plugins" / "claims_cdc"

#: Each module's layer; a module may import its own layer or any lower one, never a higher one.
LAYERS = {
    "settings": 0, "mapping": 0, "assets": 0,                        # configuration (and the Asset it names)
    "aws": 1, "snowflake": 1,                                        # clients: the providers' hooks
    "transform": 2, "sql": 2, "kinesis_reader": 2, "warehouse": 2,   # stages
    "batch_files": 2, "load_files": 2, "cadence": 2, "dynamodb_reader": 2,
    "pipeline": 3, "triggers": 3, "alerts": 3,                       # task bodies, the trigger's loop, alerts
    "status": 3, "summaries": 3, "run_notes": 3,                     # status at a glance, downstream summaries, run notes
    "snapshot": 3, "replay": 3, "audit": 3,                          # task bodies of the side DAGs
    "sensors": 4,                                                    # operators the DAG wires
    "side_dags": 4,                                                  # what the side DAG files share
    "admin": 5,                                                      # the operator's command line
    "preload": 5,                                                    # what the task-starting process imports
}


def _imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "claims_cdc":
                names |= {alias.name for alias in node.names}
            elif node.module.startswith("claims_cdc."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("claims_cdc.")}
    return names


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules == set(LAYERS)
    assert [p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"] == []


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, layer in LAYERS.items():
        for imported in _imported_modules(PACKAGE / f"{module}.py"):
            if LAYERS[imported] > layer:
                upward.append(f"{module} (layer {layer}) imports {imported} (layer {LAYERS[imported]})")
    assert upward == []


def test_the_dag_imports_operators_and_configuration_and_reaches_task_bodies_inside_tasks_only():
    tree = ast.parse((PROJECT_ROOT / "dags" / "claims_cdc.py").read_text())
    top_level = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert {m for m in top_level if m.startswith("claims_cdc")} == {
        "claims_cdc.sensors", "claims_cdc.settings", "claims_cdc.mapping", "claims_cdc.assets"}
