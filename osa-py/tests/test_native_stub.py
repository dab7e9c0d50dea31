"""`osa/_native.pyi` matches the compiled module: names, parameters and defaults."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

import osa
from osa import _native

STUB = Path(osa.__file__).parent / "_native.pyi"
CHECKED_DUNDERS = {"__iter__", "__next__", "__enter__", "__exit__"}
NO_DEFAULT = object()


def stub_module() -> ast.Module:
    return ast.parse(STUB.read_text())


def stub_params(fn: ast.FunctionDef) -> list[tuple[str, Any]]:
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [NO_DEFAULT] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults
    ]
    params = list(zip([a.arg for a in positional], defaults, strict=True))
    params += [
        (a.arg, NO_DEFAULT if d is None else ast.literal_eval(d))
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if params and params[0][0] in ("self", "cls"):
        params = params[1:]
    return params


def runtime_params(obj: Any, *, bound_first: bool) -> list[tuple[str, Any]]:
    params = list(inspect.signature(obj).parameters.values())
    if bound_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
    return [
        (p.name, NO_DEFAULT if p.default is inspect.Parameter.empty else p.default) for p in params
    ]


def is_property(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


def runtime_public_names() -> set[str]:
    return {n for n in dir(_native) if not n.startswith("_") or n == "__version__"}


def test_stub_names_match_the_module():
    tree = stub_module()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    assert names == runtime_public_names()


def test_stub_constants_have_the_declared_types():
    for node in stub_module().body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            expected = {"str": str, "int": int}[ast.unparse(node.annotation)]
            assert isinstance(getattr(_native, node.target.id), expected), node.target.id


def stub_functions() -> list[ast.FunctionDef]:
    return [n for n in stub_module().body if isinstance(n, ast.FunctionDef)]


def stub_classes() -> list[ast.ClassDef]:
    return [n for n in stub_module().body if isinstance(n, ast.ClassDef)]


@pytest.mark.parametrize("fn", stub_functions(), ids=lambda f: f.name)
def test_function_signatures(fn):
    runtime = getattr(_native, fn.name)
    assert callable(runtime)
    assert stub_params(fn) == runtime_params(runtime, bound_first=False)


def exception_attributes(cls: ast.ClassDef) -> dict[str, str]:
    """Attributes a stub exception class declares, its stub bases' included."""
    by_name = {c.name: c for c in stub_classes()}
    declared: dict[str, str] = {}
    for base in cls.bases:
        if ast.unparse(base) in by_name:
            declared.update(exception_attributes(by_name[ast.unparse(base)]))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared[node.target.id] = ast.unparse(node.annotation)
    return declared


def test_every_engine_error_has_its_kind():
    kinds = {
        _native.EngineError: "internal",
        _native.NotFoundError: "not_found",
        _native.ConflictError: "conflict",
        _native.InvalidRequestError: "invalid",
        _native.UnavailableError: "unavailable",
    }
    for error, kind in kinds.items():
        assert error("message").kind == kind


@pytest.mark.parametrize("cls", stub_classes(), ids=lambda c: c.name)
def test_class_members(cls):
    runtime = getattr(_native, cls.name)
    assert isinstance(runtime, type)
    if issubclass(runtime, BaseException):
        # Exception classes: the stub declares the same base and the same attributes,
        # which every instance has (however it is raised), with the declared types.
        bases = [ast.unparse(b) for b in cls.bases]
        assert bases == [runtime.__base__.__name__]
        declared = exception_attributes(cls)
        own = [c for c in runtime.__mro__ if c.__module__ == _native.__name__]
        public = {n for c in own for n in vars(c) if not n.startswith("_")}
        assert public == set(declared)
        instance = runtime("message")
        for name, annotation in declared.items():
            assert isinstance(getattr(instance, name), {"str": str}[annotation]), name
        return
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef) and not is_property(n)}
    properties = {n.name for n in cls.body if isinstance(n, ast.FunctionDef) and is_property(n)}

    runtime_members = {
        name: value
        for name, value in vars(runtime).items()
        if not name.startswith("_") or name in CHECKED_DUNDERS
    }
    runtime_properties = {n for n, v in runtime_members.items() if inspect.isgetsetdescriptor(v)}
    runtime_methods = set(runtime_members) - runtime_properties
    assert properties == runtime_properties
    assert set(methods) - {"__new__"} == runtime_methods

    for name in runtime_methods:
        assert stub_params(methods[name]) == runtime_params(
            getattr(runtime, name), bound_first=True
        ), name

    if "__new__" in methods:
        assert stub_params(methods["__new__"]) == runtime_params(runtime, bound_first=False)
    else:
        with pytest.raises(TypeError, match=r"cannot create|No constructor defined"):
            runtime()
