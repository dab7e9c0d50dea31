"""The `@hook` decorator."""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any, TypeVar, overload

from osa import _registry
from osa._typing import unwrap_optional
from osa.types.ingester import Limits
from osa.types.record import Record

F = TypeVar("F", bound=Callable[..., Any])


def _is_record(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is None or not typing.get_args(annotation):
        return False
    return origin is Record or getattr(origin, "__name__", None) == "Record"


def _output(return_type: Any) -> tuple[Any, _registry.Cardinality]:
    """`(output_type, cardinality)` of a return annotation; `None` is unwrapped."""
    if return_type is None:
        return None, "one"
    inner, _optional = unwrap_optional(return_type)
    if typing.get_origin(inner) is list and typing.get_args(inner):
        row, _ = unwrap_optional(typing.get_args(inner)[0])
        return row, "many"
    return inner, "one"


def _introspect(
    fn: Callable[..., Any], limits: Limits, localns: dict[str, Any] | None = None
) -> _registry.HookInfo:
    name = getattr(fn, "__name__", repr(fn))
    try:
        hints = typing.get_type_hints(fn, localns=localns)
    except Exception as e:  # NameError, TypeError from unresolvable annotations
        raise TypeError(f"Hook {name}: cannot resolve its annotations: {e}") from e
    record_param: str | None = None
    schema_type: Any = None
    dependencies: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters:
        if param not in hints:
            continue
        annotation = hints[param]
        if _is_record(annotation):
            record_param, schema_type = param, typing.get_args(annotation)[0]
        else:
            dependencies[param] = annotation
    if record_param is None:
        raise TypeError(f"Hook {name} must have a Record[T] parameter")
    dependencies.pop(record_param, None)
    return_type = hints.get("return")
    output_type, cardinality = _output(return_type)
    return _registry.HookInfo(
        fn=fn,
        name=name,
        hook_type="hook",
        schema_type=schema_type,
        return_type=return_type,
        output_type=output_type,
        cardinality=cardinality,
        dependencies=dependencies,
        limits=limits,
        record_param=record_param,
    )


@overload
def hook(fn: F, /) -> F: ...


@overload
def hook(*, limits: Limits | None = None) -> Callable[[F], F]: ...


def hook(fn: F | None = None, /, *, limits: Limits | None = None) -> F | Callable[[F], F]:
    """Registers a hook function and returns it unchanged.

    Use it bare (`@hook`) or with options (`@hook(limits=Limits(...))`, `@hook()`). The
    function takes a `Record[T]` parameter (any name, any position) and returns `None`
    (a validator), a pydantic model (one row) or `list[Model]` (any number of rows);
    `-> M | None` is the same as `-> M`. It may raise `osa.Reject` to reject the record.

    Raises:
        TypeError: the function has no `Record[T]` parameter, or its annotations do not
            resolve.
    """

    def register(f: F, localns: dict[str, Any] | None = None) -> F:
        if localns is None:
            localns = dict(sys._getframe(1).f_locals)
        _registry.register_hook(_introspect(f, limits if limits is not None else Limits(), localns))
        return f

    if fn is not None:
        # Names local to the defining scope (a class declared in a test function)
        # resolve in string annotations too.
        return register(fn, dict(sys._getframe(1).f_locals))
    return register
