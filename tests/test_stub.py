"""The ``_core.pyi`` stub matches the compiled extension parameter by parameter.

``mypy.stubtest`` (scripts/lint.sh) checks which names exist, but pybind11 gives its
functions no ``__text_signature__``, so stubtest cannot see their parameters. pybind11
writes each signature as the first line of the docstring: compare those names, and
which ones have defaults, with the stub's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import w2sd
from w2sd import _core, testing

# Beside the package's Python files (the extension itself may live elsewhere: editable installs).
STUB = Path(w2sd.__file__).with_name("_core.pyi")
# The test-only submodule _core.testing, re-exported by w2sd.testing, has its own stub.
TESTING_STUB = Path(w2sd.__file__).with_name("testing.pyi")
MODULES = {"_core": (_core, STUB), "testing": (testing, TESTING_STUB)}


def _stub_functions(stub: Path = STUB) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(stub.read_text(encoding="utf-8"))
    found: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                is_property = isinstance(item, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                )
                if isinstance(item, ast.FunctionDef) and not is_property:
                    found[f"{node.name}.{item.name}"] = item
    return found


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, bool]]:
    args = fn.args.args
    defaults = len(fn.args.defaults)
    return [(a.arg, i >= len(args) - defaults) for i, a in enumerate(args) if a.arg != "self"]


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(" or ch == "{":
            depth += 1
        elif ch in "])}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def _runtime_params(obj: object, name: str) -> list[tuple[str, bool]]:
    first = (obj.__doc__ or "").strip().splitlines()[0]
    m = re.match(rf"{re.escape(name)}\((.*)\)(?: -> .*)?$", first)
    assert m, f"no pybind11 signature line in {name}'s docstring: {first!r}"
    params = []
    for part in _split_top_level(m.group(1)):
        pname = part.split(":")[0].strip()
        if pname != "self":
            params.append((pname, "=" in part.split(":", 1)[-1]))
    return params


STUB_FUNCTIONS = _stub_functions()
FUNCTIONS = {m: _stub_functions(stub) for m, (_, stub) in MODULES.items()}


@pytest.mark.parametrize(
    "module,qualname", sorted((m, q) for m, functions in FUNCTIONS.items() for q in functions)
)
def test_stub_parameters_match_the_extension(module, qualname):  # type: ignore[no-untyped-def]
    obj: object = MODULES[module][0]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    expected = _runtime_params(obj, qualname.split(".")[-1])
    assert _stub_params(FUNCTIONS[module][qualname]) == expected


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_public_function_is_in_the_stub(module):  # type: ignore[no-untyped-def]
    mod, _ = MODULES[module]
    stub_functions = FUNCTIONS[module]
    runtime = {n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))}
    classes = {n for n in runtime if isinstance(getattr(mod, n), type)}
    assert runtime - classes <= set(stub_functions)
    for cls in classes:
        methods = {
            n for n, v in vars(getattr(mod, cls)).items() if not n.startswith("_") and callable(v)
        }
        assert {f"{cls}.{m}" for m in methods} <= set(stub_functions), cls
