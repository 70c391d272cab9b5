"""Errors the user can act on. Pages show ``str(error)`` as it is, so each message
says what was received, what was expected, and what to do."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error caused by the user's input or environment."""


class ModelLoadError(WorkbenchError):
    """A model could not be found or loaded."""


class BadPromptError(WorkbenchError):
    """A prompt is empty, too long, or otherwise unusable."""


class NotSingleTokenError(WorkbenchError):
    """An answer token is not exactly one token of the model's vocabulary."""


class OutOfRangeError(WorkbenchError):
    """A layer, head or position index is outside the model."""


class UnknownHookError(WorkbenchError):
    """A hook-point name is not in the vocabulary, or this architecture lacks it."""


class DeviceError(ModelLoadError):
    """The requested device (``--device`` or ``$INTERP_DEVICE``) is unknown or absent on this machine."""


class UsageError(WorkbenchError):
    """A command-line argument is missing, malformed or not one of the choices."""


class UnsupportedArchitectureError(ModelLoadError):
    """The model's architecture has no adapter."""


def check_index(kind: str, value: int, size: int) -> int:
    """Return ``value`` if ``0 <= value < size``, else raise :class:`OutOfRangeError`."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < size:
        raise OutOfRangeError(f"{kind} must be between 0 and {size - 1} for this model, got {value!r}.")
    return value


class BadHeadIdError(WorkbenchError):
    """A head name is not of the form ``L{layer}H{head}`` (e.g. ``"L3H7"``)."""
