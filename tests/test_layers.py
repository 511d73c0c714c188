"""The package's house rules, checked on the source (DEVELOPERS.md, "Layout"): a module imports
only from its own layer or below, `pipeline/` and `hgrnn_head/` never import each other, no
import cycle (function-local imports included: a cycle hidden inside a function is still one),
and hgrnn's own modules are imported at the top of a module outside `cli/`, except where a
function-local import keeps a heavy dependency out of a light path."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hgrnn"

# bottom to top; a module may import its own layer and the layers below
LAYERS = [
    ("hgrnn", "hgrnn.console", "hgrnn.torchfile", "hgrnn.losses", "hgrnn.allocator"),
    ("hgrnn.data",),
    ("hgrnn.metrics", "hgrnn.track", "hgrnn.track_config"),
    ("hgrnn.pipeline", "hgrnn.hgrnn_head"),
    ("hgrnn.apps",),
    ("hgrnn.cli", "hgrnn.__main__"),
]
SIBLINGS_APART = {("hgrnn.pipeline", "hgrnn.hgrnn_head"), ("hgrnn.hgrnn_head", "hgrnn.pipeline")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split("."))).is_dir()


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, tree: ast.Module, known: set[str]):
    """(imported hgrnn module, line, inside a function) for every import of hgrnn's own."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from hgrnn.data import ava` imports the module hgrnn.data.ava
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs or [base]
        for t in targets:
            if t == "hgrnn" or t.startswith("hgrnn."):
                while t not in known and "." in t:
                    t = t.rpartition(".")[0]
                yield t, node.lineno, id(node) in functions


def _layer(name: str) -> tuple[int, str]:
    best = None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            # the package itself is no prefix: a new top-level module must name its layer
            if name == prefix or (prefix != "hgrnn" and name.startswith(prefix + ".")):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    assert best is not None, f"{name}: in no layer of LAYERS (tests/test_layers.py)"
    return best


@pytest.fixture(scope="module")
def graph():
    trees = _modules()
    known = set(trees)
    return {name: list(_imports(name, tree, known)) for name, tree in trees.items()}


def test_no_module_imports_a_layer_above_its_own(graph):
    wrong = []
    for name, imports in graph.items():
        mine, my_prefix = _layer(name)
        for target, line, _ in imports:
            theirs, their_prefix = _layer(target)
            if theirs > mine or (my_prefix, their_prefix) in SIBLINGS_APART:
                wrong.append(f"{name}:{line} imports {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycle(graph):
    edges = {name: {t for t, _, _ in imports if t != name} for name, imports in graph.items()}
    # a package's __init__ re-exporting its own modules is no cycle: drop child -> parent
    # edges only where the parent imports the child (the child then needs the parent's
    # other names, which is the cycle the rule is about)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt.startswith(node + "."):      # a package importing its own submodule
                continue
            if node.startswith(nxt + ".") and node in edges.get(nxt, ()):
                continue                         # a submodule and its re-exporting package
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# function-local imports of hgrnn's own modules, each keeping a heavy dependency (torch,
# torchvision, PyAV, matplotlib, pyarrow, h5py) out of a path that must stay light
# (`hgrnn --help`, `import hgrnn.data.*`, `eval-csv`): module -> the modules it may import so
LIGHT_PATHS = {
    "hgrnn.data.synthetic": {"hgrnn.data.windows"},            # torch, for reading back only
    "hgrnn.track": {"hgrnn.data.windows"},                     # torch, with --store only
    "hgrnn.apps.report.inputs": {                            # torch, store GT only
                                 "hgrnn.hgrnn_head.infer"},
    "hgrnn.pipeline.backbones": {"hgrnn.pipeline.i3d"},       # torch: the table and the
                                                               # input settings stay light
    "hgrnn.pipeline.finetune_config": {"hgrnn.pipeline.flow",  # torch: the config stays
                                       "hgrnn.pipeline.person_layer"},  # light for --help
    "hgrnn.pipeline.extract.config": {"hgrnn.pipeline.flow",   # torch: the config stays light
                                      "hgrnn.pipeline.person_layer"},  # for --help
    "hgrnn.pipeline.extract": {"hgrnn.pipeline.extract.run", "hgrnn.pipeline.extract.plan",
                               "hgrnn.pipeline.extract.stage", "hgrnn.pipeline.extract.shards",
                               "hgrnn.pipeline.extract.loader", "hgrnn.pipeline.extract.features"},
}


def test_own_modules_are_imported_at_the_top_outside_the_cli(graph):
    local = []
    for name, imports in graph.items():
        if _layer(name)[1] in ("hgrnn.cli", "hgrnn.__main__"):
            continue
        for target, line, in_function in imports:
            if in_function and target not in LIGHT_PATHS.get(name, ()):
                local.append(f"{name}:{line} imports {target} inside a function")
    assert not local, ("function-local imports of hgrnn modules (move them to the top, or "
                       "name the light path in LIGHT_PATHS with the reason):\n" + "\n".join(local))
