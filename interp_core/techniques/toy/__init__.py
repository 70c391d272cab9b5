"""Toy models: tiny GPT-2s trained on tasks we fully understand, then taken apart.

- :mod:`interp_core.techniques.toy.tasks`: the three tasks (data, vocabulary, model shape).
- :mod:`interp_core.techniques.toy.train`: a seeded training loop that saves an ordinary HF model directory.
- :mod:`interp_core.techniques.toy.analysis`: holdout accuracy, ablations, attention patterns and the
  pre-/post-MLP predictions of a trained toy.
"""

from interp_core.techniques.toy.tasks import TASKS, TaskSpec, ToyDataset, get_task, make_dataset

__all__ = ["TASKS", "TaskSpec", "ToyDataset", "get_task", "make_dataset"]
