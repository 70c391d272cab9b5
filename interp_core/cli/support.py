"""What the CLI's subcommands share: loading the model their flags name, and turning results into JSON.

It sits below both :mod:`interp_core.cli.main` (which discovers the subcommands) and the
subcommands themselves, so neither imports the other back.
"""

from __future__ import annotations

import argparse

import numpy as np

from interp_core.core.load_options import LoadOptions, make_options
from interp_core.core.loading import load_model
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Request, request_fields, run


def model_from_args(args: argparse.Namespace) -> LoadedModel:
    """Load the model named by ``--model`` on ``--device``, or as ``--dtype``/``--device-map``/... say."""
    return load_model(args.model, device=args.device, options=options_from_args(args))


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    """:class:`LoadOptions` from the global flags (absent flags: the defaults)."""
    return make_options(getattr(args, "dtype", None), getattr(args, "device_map", None),
                        getattr(args, "max_memory", None), getattr(args, "offload_folder", None))


def to_jsonable(value: object) -> object:
    """numpy arrays and scalars -> lists and floats, recursively; NaN -> None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def request_from_args(request_type: type[Request], args: argparse.Namespace, **extra: object) -> Request:
    """A technique request whose fields are read from the flags of the same name (``--top-k`` -> ``top_k``),
    plus ``extra``. Built, and so validated, before any model is loaded."""
    values = {name: getattr(args, name) for name in request_fields(request_type) if hasattr(args, name)}
    return request_type(**{**values, **extra})


def run_request(request_type: type[Request], args: argparse.Namespace, **extra: object) -> dict:
    """Build the request from the flags, load the model, run it, and return its JSON."""
    request = request_from_args(request_type, args, **extra)
    return run(model_from_args(args), request).to_json()
