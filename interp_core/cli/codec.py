"""Requests and results as plain JSON, and back, exactly (the experiment file's payload).

Every value carries a type tag where JSON alone would lose it: tuples, bytes, non-finite floats,
numpy arrays and scalars (raw bytes in base64, so floats come back bit for bit), torch tensors,
enums, data frames, and dataclasses. Decoding is closed: a dataclass or enum is only rebuilt when
its class lives in ``interp_core.techniques`` or ``interp_core.core`` (a file can never name an
arbitrary class to import), every field must be present with a value of its declared type, and a
request is rebuilt through its constructor, so its own validation runs. Anything else raises
:class:`ExperimentError` with the path of the offending value.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import importlib
import math
import types
import typing
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from interp_core.core.errors import WorkbenchError

ALLOWED_MODULES = ("interp_core.techniques", "interp_core.core")


class ExperimentError(WorkbenchError):
    """An experiment file (or a value to save in one) is malformed, tampered with, or of another kind."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise ExperimentError(f"{where}: expected base64 text, got {type(text).__name__}.")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as error:
        raise ExperimentError(f"{where}: not valid base64 ({error}).") from None


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def encode(value: object, where: str = "value") -> object:
    """``value`` as JSON-ready data with type tags (see the module docstring)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"__enum__": _qualified(type(value)), "value": encode(value.value, where)}
    if isinstance(value, int) and not isinstance(value, np.integer):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, bytes):
        return {"__bytes__": _b64(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {"__dict__": [[encode(k, where), encode(v, f"{where}[{k!r}]")] for k, v in value.items()]}
    if isinstance(value, np.generic):
        return {"__npscalar__": value.dtype.str, "data": _b64(np.asarray(value).tobytes())}
    if isinstance(value, np.ndarray):
        return _encode_array(value, where)
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        return {"__tensor__": str(tensor.dtype).removeprefix("torch."), "array": _encode_array(tensor.float().numpy()
                if tensor.dtype == torch.bfloat16 else tensor.numpy(), where)}
    if isinstance(value, pd.DataFrame):
        return {"__dataframe__": {"columns": encode(list(value.columns), where), "index": encode(value.index.to_numpy(), where),
                                  "data": [encode(value[c].to_numpy(), f"{where}.{c}") for c in value.columns]}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not cls.__module__.startswith(ALLOWED_MODULES):
            raise ExperimentError(f"{where}: {cls.__name__} is not a workbench type and cannot be saved.")
        return {"__dataclass__": _qualified(cls),
                "fields": {f.name: encode(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}}
    raise ExperimentError(f"{where}: a {type(value).__name__} cannot be saved in an experiment file.")


def _encode_array(array: np.ndarray, where: str) -> dict:
    if array.dtype == object:
        return {"__ndarray__": "object", "shape": list(array.shape), "items": [encode(v, where) for v in array.ravel().tolist()]}
    return {"__ndarray__": array.dtype.str, "shape": list(array.shape), "data": _b64(np.ascontiguousarray(array).tobytes())}


def decode(data: object, where: str = "value") -> object:
    """The value :func:`encode` wrote; raises :class:`ExperimentError` for anything malformed or not allowed."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, dict) or len(data) == 0:
        raise ExperimentError(f"{where}: unexpected {type(data).__name__} {str(data)[:60]!r}.")
    tag = next(iter(data))
    handler = _DECODERS.get(tag)
    if handler is None:
        raise ExperimentError(f"{where}: unknown type tag {tag!r}; expected one of {sorted(_DECODERS)}.")
    return handler(data, where)


def _float(data: dict, where: str) -> float:
    if data["__float__"] not in ("nan", "inf", "-inf"):
        raise ExperimentError(f"{where}: a tagged float must be 'nan', 'inf' or '-inf', got {data['__float__']!r}.")
    return float(data["__float__"])


def _tuple(data: dict, where: str) -> tuple:
    items = data["__tuple__"]
    if not isinstance(items, list):
        raise ExperimentError(f"{where}: a tuple must hold a list.")
    return tuple(decode(v, f"{where}[{i}]") for i, v in enumerate(items))


def _dict(data: dict, where: str) -> dict:
    pairs = data["__dict__"]
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ExperimentError(f"{where}: a mapping must be a list of [key, value] pairs.")
    out = {}
    for key, value in pairs:
        key = decode(key, where)
        try:
            out[key] = decode(value, f"{where}[{key!r}]")
        except TypeError:
            raise ExperimentError(f"{where}: a key of type {type(key).__name__} cannot key a mapping.") from None
    return out


def _dtype(text: object, where: str) -> np.dtype:
    try:
        dtype = np.dtype(text)  # type: ignore[arg-type]
    except TypeError:
        raise ExperimentError(f"{where}: {text!r} is not a numpy dtype.") from None
    if dtype.kind not in "biufcUSM?m":
        raise ExperimentError(f"{where}: arrays of dtype {dtype} cannot be loaded.")
    return dtype


def _array(data: dict, where: str) -> np.ndarray:
    shape = data.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ExperimentError(f"{where}: an array's shape must be a list of sizes.")
    size = math.prod(shape)
    if data["__ndarray__"] == "object":
        items = data.get("items")
        if not isinstance(items, list) or len(items) != size:
            raise ExperimentError(f"{where}: an object array of shape {shape} needs {size} items.")
        array = np.empty(size, dtype=object)
        for i, item in enumerate(items):
            array[i] = decode(item, where)
        return array.reshape(shape)
    dtype = _dtype(data["__ndarray__"], where)
    raw = _unb64(data.get("data"), where)
    if len(raw) != size * dtype.itemsize:
        raise ExperimentError(f"{where}: {len(raw)} bytes do not fill an array of shape {shape} and dtype {dtype}.")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _scalar(data: dict, where: str) -> np.generic:
    dtype = _dtype(data["__npscalar__"], where)
    raw = _unb64(data.get("data"), where)
    if len(raw) != dtype.itemsize:
        raise ExperimentError(f"{where}: {len(raw)} bytes are not one {dtype}.")
    return np.frombuffer(raw, dtype=dtype)[0]


def _tensor(data: dict, where: str) -> torch.Tensor:
    dtype = getattr(torch, str(data["__tensor__"]), None)
    if not isinstance(dtype, torch.dtype):
        raise ExperimentError(f"{where}: {data['__tensor__']!r} is not a torch dtype.")
    array = decode(data.get("array"), where)
    if not isinstance(array, np.ndarray):
        raise ExperimentError(f"{where}: a tensor must hold an array.")
    return torch.from_numpy(array).to(dtype)


def _frame(data: dict, where: str) -> pd.DataFrame:
    body = data["__dataframe__"]
    if not isinstance(body, dict) or set(body) != {"columns", "index", "data"}:
        raise ExperimentError(f"{where}: a data frame needs exactly 'columns', 'index' and 'data'.")
    columns, index = decode(body["columns"], where), decode(body["index"], where)
    values = [decode(v, where) for v in body["data"]] if isinstance(body["data"], list) else None
    if (not isinstance(columns, list) or not isinstance(index, np.ndarray) or values is None or len(values) != len(columns)
            or not all(isinstance(v, np.ndarray) and v.shape == index.shape for v in values)):
        raise ExperimentError(f"{where}: a data frame's columns, index and data do not fit together.")
    return pd.DataFrame(dict(zip(range(len(columns)), values)), index=index).set_axis(columns, axis=1)


def _resolve(name: object, where: str) -> type:
    """The class ``module:QualName`` names, only from the workbench's own engine modules."""
    if not isinstance(name, str) or ":" not in name:
        raise ExperimentError(f"{where}: a class must be named 'module:Name', got {name!r}.")
    module_name, qualname = name.split(":", 1)
    if not module_name.startswith(ALLOWED_MODULES) or not all(part.isidentifier() for part in [*module_name.split("."), *qualname.split(".")]):
        raise ExperimentError(f"{where}: {name!r} is not a workbench type; only types of {' and '.join(ALLOWED_MODULES)} load.")
    try:
        found: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        raise ExperimentError(f"{where}: no type {name!r} in this version of the workbench.") from None
    if not isinstance(found, type):
        raise ExperimentError(f"{where}: {name!r} is not a type.")
    return found


def _enum(data: dict, where: str) -> enum.Enum:
    cls = _resolve(data["__enum__"], where)
    if not issubclass(cls, enum.Enum):
        raise ExperimentError(f"{where}: {data['__enum__']!r} is not an enum.")
    try:
        return cls(decode(data.get("value"), where))
    except ValueError as error:
        raise ExperimentError(f"{where}: {error}.") from None


def _dataclass(data: dict, where: str) -> object:
    from interp_core.techniques.contract import Request  # the contract sits above core; imported only when needed

    cls = _resolve(data["__dataclass__"], where)
    if not dataclasses.is_dataclass(cls):
        raise ExperimentError(f"{where}: {data['__dataclass__']!r} is not a data class.")
    raw = data.get("fields")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(raw, dict) or set(raw) != set(fields):
        got = sorted(raw) if isinstance(raw, dict) else raw
        raise ExperimentError(f"{where}: {cls.__name__} has fields {sorted(fields)}, the file gives {got}.")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, encoded in raw.items():
        value = decode(encoded, f"{where}.{name}")
        if not fits(value, hints.get(name, object)):
            raise ExperimentError(f"{where}.{name}: expected {_type_name(hints.get(name))}, got {type(value).__name__} {str(value)[:60]!r}.")
        values[name] = value
    if issubclass(cls, Request):  # rebuilt through its constructor, so the request validates itself
        try:
            return cls(**values)
        except (WorkbenchError, TypeError, ValueError) as error:
            raise ExperimentError(f"{where}: the saved {cls.__name__} is not valid: {error}") from None
    obj = cls.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)  # results hold what was computed; frozen ones too
    return obj


def _type_name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def fits(value: object, hint: object) -> bool:
    """Whether ``value`` is of the declared type ``hint`` (containers checked one level deep; unknown hints pass)."""
    if hint is object or hint is typing.Any or isinstance(hint, (str, typing.TypeVar)):
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        if origin is Callable or getattr(origin, "__name__", "") == "Callable":
            return value is None or callable(value)
        if not isinstance(origin, type) or not isinstance(value, origin):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if origin in (tuple, list) and len(args) == 1 and isinstance(value, (tuple, list)):
            return all(fits(v, args[0]) for v in value)
        return True
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (float, int, np.floating)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


_DECODERS: dict[str, Callable[[dict, str], object]] = {
    "__float__": _float, "__tuple__": _tuple, "__dict__": _dict, "__bytes__": lambda d, w: _unb64(d["__bytes__"], w),
    "__ndarray__": _array, "__npscalar__": _scalar, "__tensor__": _tensor, "__dataframe__": _frame,
    "__enum__": _enum, "__dataclass__": _dataclass,
}
