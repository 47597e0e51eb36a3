"""The package's layout rules (docs/layout.md): imports run one way, modules stay short.

Read from the source with ``ast``, so that an import inside a function counts
as much as one at the top of a module.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "skmultilogit"

# Lowest first: a module may import from its own layer's package or from a
# lower layer, never from a higher one (docs/layout.md).
LAYERS = [
    ["_kernel", "_scratch", "_array_api", "_threads"],
    ["_loss", "_group_norms", "_omission"],
    ["_hessian", "_cholesky", "_penalties", "_statistics", "_conditioning", "_memory"],
    ["_backends", "_scoring"],
    ["_objective"],
    ["_solvers"],
    ["_path", "_callbacks"],
    ["_validation"],
    ["_dask"],
    ["_prediction"],
    ["_classifier"],
    ["_cv_folds"],
    ["_cv"],
    ["_inference"],
    [""],  # skmultilogit/__init__.py
    ["onnx"],  # imported by users only (it needs the onnx extra), on top of the estimators
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}

# The math, data and penalty layers know no optimiser and no estimator.
NO_OPTIMISER_OR_ESTIMATOR = [
    "_scratch",
    "_loss",
    "_hessian",
    "_omission",
    "_cholesky",
    "_group_norms",
    "_penalties",
    "_statistics",
    "_conditioning",
    "_memory",
    "_backends",
    "_objective",
]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(name, path):
    """Every module this one imports, as dotted names (package-relative with a leading '.')."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
                yield from ("." + t.strip(".") for t in targets)
            else:
                yield node.module


def top(name):
    """The package-level module a dotted name belongs to (``_solvers._driver`` -> ``_solvers``)."""
    return name.strip(".").partition(".")[0]


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: str(v))
def test_imports_run_from_higher_layers_to_lower_ones(name, path):
    level = LAYER[top(name)]
    for target in imports(name, path):
        if not target.startswith("."):
            continue
        other = top(target)
        if other == top(name):
            continue  # inside one layer's own package
        assert LAYER[other] < level, f"{name} (layer {level}) imports {target} ({LAYER[other]})"


@pytest.mark.parametrize("layer", NO_OPTIMISER_OR_ESTIMATOR)
def test_math_and_data_layers_import_no_optimiser_and_no_estimator(layer):
    for name, path in modules():
        if top(name) != layer:
            continue
        for target in imports(name, path):
            assert not target.startswith(("scipy.optimize", "sklearn")), (name, target)


def test_solvers_import_no_estimator():
    for name, path in modules():
        if top(name) == "_solvers":
            for target in imports(name, path):
                assert not target.startswith("sklearn"), (name, target)


def test_no_module_is_longer_than_a_reader_can_follow():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules()}
    assert max(lengths.values()) <= 600, sorted(lengths.items(), key=lambda item: -item[1])[:3]
