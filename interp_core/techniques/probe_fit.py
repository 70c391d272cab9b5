"""Every layer's linear probes, for every fold and for the real and the control task, fitted at once.

The probe is scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C))`` (the
reference, :func:`interp_core.techniques.probing.make_probe`), solved as one batched problem in
torch instead of one scikit-learn fit per (layer, fold, task): 2 x 5 x 11 = 110 fits on the
Probing page's default view. The problems are independent, so minimising the sum of their
objectives minimises each; one L-BFGS run over all of them shares every matrix product.

Exactly the reference's model, per problem (layer ``r``, fold ``f``, task ``t``):

- standardise with the training items' mean and (population) standard deviation, a zero
  standard deviation counting as 1; these are folded into the weights, so the states are
  never copied per fold: ``logits = X @ (W / sd) + (b - (mu / sd) @ W)``;
- multinomial logistic regression over the classes present in the fold's training items
  (absent classes can never be predicted), minimising ``0.5 ||W||^2 + C * sum CE`` (intercept
  unpenalised). With two classes scikit-learn fits one sigmoid; a softmax over two classes with
  ``C / 2`` is the same model with the same optimum, so that is what is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def fit_linear_probes(
    states: np.ndarray,
    targets: Sequence[np.ndarray],
    n_classes: int,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    C: float = 0.1,
    max_iter: int = 100,
) -> np.ndarray:
    """Fit all the probes; return each item's prediction from the fold that tests it.

    Args:
        states: ``(n_rows, n_items, d_model)`` hidden states (any float dtype), one row per layer.
        targets: one ``(n_items,)`` int label array per task (e.g. the real and the control labels),
            values in ``0..n_classes-1``.
        splits: ``(train, test)`` index arrays; the test sets partition the items.
        C: inverse L2 strength, as scikit-learn's ``LogisticRegression(C=...)``.
        max_iter: L-BFGS iterations over the whole batch.

    Returns:
        ``(n_tasks, n_rows, n_items)`` int predictions.
    """
    x = torch.as_tensor(states).float()  # (R, n, d)
    x = x - x.mean(1, keepdim=True)  # a shift the free intercept absorbs; keeps the Gram sums well conditioned
    y = torch.as_tensor(np.stack(targets)).long()  # (T, n)
    n_rows, n_items, d = x.shape
    n_tasks, n_folds, k = len(targets), len(splits), n_classes
    train = torch.zeros(n_folds, n_items)
    for f, (idx, _) in enumerate(splits):
        train[f, torch.as_tensor(idx)] = 1.0
    count = train.sum(1)  # (F,)

    # standardisation per (row, fold) on its training items, as StandardScaler (ddof 0, zero sd -> 1)
    mu = torch.einsum("fn,rnd->rfd", train, x) / count[None, :, None]
    var = torch.einsum("fn,rnd->rfd", train, x * x) / count[None, :, None] - mu * mu
    sd = var.clamp_min(0).sqrt()
    sd = torch.where(sd < 1e-6 * sd.amax(-1, keepdim=True).clamp_min(1e-12), torch.ones_like(sd), sd)

    # classes present in each (fold, task)'s training labels; the rest are masked out
    present = torch.zeros(n_folds, n_tasks, k, dtype=torch.bool)
    for f in range(n_folds):
        for t in range(n_tasks):
            present[f, t, y[t][train[f] > 0].unique()] = True
    mask = torch.where(present, 0.0, float("-inf"))  # (F, T, K)
    strength = torch.full((n_folds, n_tasks), C) / torch.where(present.sum(-1) == 2, 2.0, 1.0)  # see the module doc
    onehot = torch.nn.functional.one_hot(y, k).float()  # (T, n, K)
    item_weight = train[:, None, :] * strength[:, :, None] / count[:, None, None]  # (F, T, n): C / n_train on train items

    w0, b0 = _ridge_start(x, onehot, train, mu, sd, present, ridge=1.0 / C)
    w = w0.requires_grad_(True)
    b = b0.requires_grad_(True)
    scale = (1.0 / sd)[:, :, None, :, None]  # (R, F, 1, d, 1)
    shift = (mu / sd)  # (R, F, d)

    def logits() -> torch.Tensor:
        """``(R, F, T, n, K)`` logits of every problem on every item, absent classes at -inf."""
        v = (w * scale).permute(0, 3, 1, 2, 4).reshape(n_rows, d, n_folds * n_tasks * k)
        out = torch.bmm(x, v).reshape(n_rows, n_items, n_folds, n_tasks, k).permute(0, 2, 3, 1, 4)
        c = b - torch.einsum("rfd,rftdk->rftk", shift, w)
        return out + c[:, :, :, None, :] + mask[None, :, :, None, :]

    optimiser = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=10, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        logp = logits().log_softmax(-1).nan_to_num(neginf=0.0)  # masked classes have zero target weight
        ce = -(logp * onehot[None, None]).sum(-1)  # (R, F, T, n)
        penalty = 0.5 * (w * w).sum((-1, -2)) / count[None, :, None]  # (R, F, T): 0.5 ||W||^2 / n_train
        loss = (ce * item_weight[None]).sum() + penalty.sum()
        loss.backward()
        return loss

    if max_iter > 0:
        optimiser.step(closure)
    with torch.no_grad():
        predicted = logits().argmax(-1)  # (R, F, T, n)
    out = np.zeros((n_tasks, n_rows, n_items), dtype=np.int64)
    for f, (_, test) in enumerate(splits):
        out[:, :, test] = predicted[:, f, :, torch.as_tensor(test)].permute(1, 0, 2).numpy()
    return out


def _ridge_start(x: torch.Tensor, onehot: torch.Tensor, train: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor,
                 present: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form start: ridge regression of the centred one-hot labels on the standardised states,
    per (row, fold, task), from one Gram matrix per row (``x (R, n, d)``, ``onehot (T, n, K)``,
    ``train (F, n)``). Its argmax is already close to the logistic probe's; scaled up so the softmax
    is not flat, it leaves L-BFGS a few steps. Returns ``W (R, F, T, d, K)`` and ``b (R, F, T, K)``."""
    count = train.sum(1)  # (F,)
    total = x.transpose(1, 2) @ x  # (R, d, d); each fold's training Gram = total - its test items' Gram
    gram = torch.stack([total - (lambda t: t.transpose(1, 2) @ t)(x[:, train[f] == 0]) for f in range(len(train))], dim=1)
    cross = torch.einsum("fn,rnd,tnk->rftdk", train, x, onehot)  # (R, F, T, d, K)
    ybar = torch.einsum("fn,tnk->ftk", train, onehot) / count[:, None, None]  # (F, T, K)
    centred = gram - count[None, :, None, None] * mu[..., :, None] * mu[..., None, :]
    inv_sd = 1.0 / sd
    std_gram = centred * inv_sd[..., :, None] * inv_sd[..., None, :]
    std_gram = std_gram + ridge * torch.eye(x.shape[-1])
    rhs = (cross - count[None, :, None, None, None] * mu[:, :, None, :, None] * ybar[None, :, :, None, :]) * inv_sd[:, :, None, :, None]
    n_rows, n_folds, n_tasks, d, k = rhs.shape
    solved = torch.linalg.solve(std_gram.double(), rhs.permute(0, 1, 3, 2, 4).reshape(n_rows, n_folds, d, n_tasks * k).double())
    w = solved.float().reshape(n_rows, n_folds, d, n_tasks, k).permute(0, 1, 3, 2, 4).contiguous()
    w = w * 4.0 * present[None, :, :, None, :]  # one-hot scale -> logit scale; absent classes at 0
    b = torch.zeros(n_rows, n_folds, n_tasks, k)
    return w, b
