"""Imports point one way: every module of src/dias imports only from its own layer or the layers below it.

The layers, top first (README, "Where things live"). A module may import from its own room (a folder's
modules from each other) and from any lower layer; an import that climbs back up fails this test, naming
the line. The package's front door (dias/__init__.py, lazily) and the command line sit above all layers.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dias"

# (layer, rooms); a room is a top-level module or a folder of src/dias
LAYERS = [
    ("entry points", ("__init__", "__main__", "cli")),
    ("the demo", ("demo",)),
    ("commands", ("commands",)),
    ("the training loop", ("train",)),
    ("config loading", ("config",)),
    ("renderers and the probe", ("viz", "probe")),
    ("methods", ("methods",)),
    ("modules", ("modules",)),
    ("pure functions", ("losses", "schedules", "metrics", "video_metrics", "baselines", "masks")),
    ("data and backbone weights", ("data", "weights")),
    ("runtime", ("runtime",)),
    ("schema, files, errors, version, shipped configs", ("schema", "io", "errors", "version", "configs")),
]
RANK = {room: rank for rank, (_, rooms) in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str:
    """The room of a dotted module name inside dias: "dias.train.loop" -> "train", "dias" -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dias module) for every `import dias...` and `from dias... import` in the file, lazy ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dias" and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "dias"]
    return found


MODULES = sorted(p for p in SRC.rglob("*.py"))


def test_every_room_has_a_layer():
    rooms = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in MODULES}
    assert rooms <= set(RANK), f"rooms without a layer: {sorted(rooms - set(RANK))}; add them to LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_climbs_back_up(path):
    room = path.relative_to(SRC).parts[0].removesuffix(".py")
    upward = [
        f"{path.relative_to(SRC)}:{line} imports {module} ({LAYERS[RANK[_room(module)]][0]}, above {room})"
        for line, module in _imports(path)
        if _room(module) != room and RANK[_room(module)] < RANK[room]
    ]
    assert not upward, "\n".join(upward)
