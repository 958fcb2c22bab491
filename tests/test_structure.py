"""The tree shows the flow: imports run one way, no cycles (lazy imports
included), and functions on the run path take at most five parameters."""

import ast
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fpscale",)


@pytest.fixture(scope="module")
def graph():
    # grimp reads every import statement, those inside functions too
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def test_no_import_cycles(graph):
    cycles = []
    for m in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(m):
            back = graph.find_shortest_chain(importer=imported, imported=m)
            if back:
                cycles.append(" -> ".join((m,) + tuple(back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("package,forbidden", [("fpscale.synth", ("fpscale.matcher", "fpscale.bench")),
                                               ("fpscale.matcher", ("fpscale.synth", "fpscale.bench"))])
def test_imports_run_one_way(graph, package, forbidden):
    for other in forbidden:
        assert not graph.chain_exists(importer=package, imported=other, as_packages=True), \
            f"{package} imports {other}"


def test_measure_store_and_report_do_not_reach_back_into_the_run(graph):
    for package in ("fpscale.bench.measure", "fpscale.bench.store", "fpscale.bench.report"):
        assert not graph.chain_exists(importer=package, imported="fpscale.bench.run", as_packages=True), package


def _parameters(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return [n for n in names if n not in ("self", "cls")]


def test_run_path_functions_take_at_most_five_parameters():
    too_many = []
    for path in sorted((ROOT / "fpscale" / "bench" / "run").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = _parameters(node)
                if len(params) > 5:
                    too_many.append(f"{path.name}:{node.lineno} {node.name}({', '.join(params)})")
    assert not too_many, "\n".join(too_many)
