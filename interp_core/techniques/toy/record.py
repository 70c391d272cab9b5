"""A trained toy model's own record: how it was trained, and its training curve.

:func:`interp_core.techniques.toy.train.save_toy` writes ``toy_task.json`` beside the weights (task,
hyperparameters, the holdout curve). :class:`TrainingRecordRequest` reads it back for a loaded toy
model as a result like any other, so the Toy Models page's training curve is cached on the weights'
fingerprint (a retrained toy shows its new curve) and is reproducible from code:
``run(model, TrainingRecordRequest()).tables()["toy_training_curve"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from interp_core.core.errors import WorkbenchError
from interp_core.core.loading import TOY_PREFIX, toy_model_dir
from interp_core.core.model import LoadedModel
from interp_core.techniques.contract import Progress, Request
from interp_core.techniques.toy.train import read_task_record


@dataclass(frozen=True)
class TrainingRecord:
    """What ``toy_task.json`` says about how a toy model was trained.

    Attributes:
        curve: the holdout checks along the run, one row each, with the columns ``toy_task.json`` has
            (:class:`~interp_core.techniques.toy.train.CurvePoint`'s; models saved before ``step`` was
            recorded lack it); no rows for a model saved without a curve.
        seconds, device: how long the training took, and where.
        final_loss: the final weights' training loss, nats (NaN when not recorded).
    """

    task: str
    hyperparameters: dict
    curve: pd.DataFrame
    seconds: float
    device: str
    final_loss: float

    @property
    def seed(self) -> int:
        """The data seed it was trained with (0 when not recorded): its holdout split holds sequences it never saw."""
        return int(self.hyperparameters.get("seed", 0))

    def to_json(self) -> dict:
        return {"task": self.task, "hyperparameters": self.hyperparameters, "history": self.curve.to_dict(orient="records"),
                "seconds": self.seconds, "device": self.device, "final_loss": self.final_loss}

    def tables(self) -> dict[str, pd.DataFrame]:
        """``toy_training_curve``: one row per curve point (step, epoch, train and holdout loss, holdout accuracy)."""
        return {"toy_training_curve": self.curve.copy()}


def _model_dir(model: LoadedModel) -> Path:
    name = model.info.name
    if name.startswith(TOY_PREFIX):
        return toy_model_dir(name)
    return Path(name).expanduser()


@dataclass(frozen=True)
class TrainingRecordRequest(Request):
    """The loaded toy model's training record (its ``toy_task.json``; no forward pass)."""

    label = "Reading how the toy model was trained"

    def check(self, model: LoadedModel) -> None:
        if model is None or read_task_record(_model_dir(model)) is None:
            name = "no model" if model is None else repr(model.info.name)
            raise WorkbenchError(f"Only a toy model trained by this workbench has a training record (toy_task.json), "
                                 f"got {name}. Pick a toy model (toy:NAME).")

    def compute(self, model: LoadedModel, on_progress: Progress) -> TrainingRecord:
        record = read_task_record(_model_dir(model)) or {}
        return TrainingRecord(str(record.get("task", "")), dict(record.get("hyperparameters") or {}),
                              pd.DataFrame(record.get("history") or []), float(record.get("seconds") or 0.0),
                              str(record.get("device", "")), float(record.get("final_loss", float("nan"))))
