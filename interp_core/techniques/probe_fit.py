"""Every layer's linear probes, for every fold and for the real and the control task, fitted at once.

The reference probe is scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C=0.1))``
(:func:`interp_core.techniques.probing.make_probe`), one fit per (layer, fold, task): 2 x 5 x 11 =
110 iterative fits for the Probing page's default view, about 40 s on 2 CPU cores. Here each
problem is instead a **ridge classifier in closed form**: least squares from the standardised
states to the centred one-hot labels with penalty :data:`RIDGE_ALPHA`, predicting the class with
the largest output. All problems share one Gram matrix per layer
(each fold's training Gram is the layer's total minus its test items'), so the cost is one
``d_model x d_model`` Gram per layer and one batched solve, with no iterations.

It is a different loss than the reference's (squared error, not cross-entropy) on the same
standardised states and folds; the penalty was calibrated once against the reference on
SmolLM2-135M and the bundled POS set (5 folds, every third layer, real and control task): the
largest gap at any layer was 0.005 accuracy and 0.010 control accuracy with alpha = 1/0.03, against
0.005 and 0.020 with alpha = 1/0.1 and 0.009 and 0.030 with 1/0.01 (``tests/test_probing.py`` holds
the gaps to 0.02).

Standardisation is as ``StandardScaler`` on each fold's training items (population standard
deviation, a zero one counting as 1); classes absent from a fold's training labels are never
predicted, as scikit-learn's model knows only the classes it saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

RIDGE_ALPHA = 1 / 0.03  # ridge penalty on standardised states; calibrated against LogisticRegression(C=0.1), see above
ROW_CHUNK = 8  # layers fitted together: bounds the float64 Gram matrices (rows x folds x d_model^2) to about 100 MB


def fit_linear_probes(
    states: np.ndarray,
    targets: Sequence[np.ndarray],
    n_classes: int,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    alpha: float = RIDGE_ALPHA,
) -> np.ndarray:
    """Fit all the probes; return each item's prediction from the fold that tests it.

    Args:
        states: ``(n_rows, n_items, d_model)`` hidden states (any float dtype), one row per layer.
        targets: one ``(n_items,)`` int label array per task (e.g. the real and the control labels),
            values in ``0..n_classes-1``.
        splits: ``(train, test)`` index arrays; the test sets partition the items.
        alpha: the ridge penalty on standardised states (scikit-learn's ``RidgeClassifier(alpha=...)``).

    Returns:
        ``(n_tasks, n_rows, n_items)`` int predictions.
    """
    if len(states) > ROW_CHUNK:  # float64 Grams of every layer at once would take about 1.5 GB on the default model
        return np.concatenate([fit_linear_probes(states[i:i + ROW_CHUNK], targets, n_classes, splits, alpha=alpha)
                               for i in range(0, len(states), ROW_CHUNK)], axis=1)
    # float64 throughout: the residual stream holds coordinates near 3e4 (the attention sink), whose squares
    # summed over thousands of items leave float32 Gram matrices too little precision for the small directions.
    x = torch.as_tensor(np.asarray(states)).double()  # (R, n, d)
    x = x - x.mean(1, keepdim=True)  # a shift the intercept absorbs; keeps the Gram sums well conditioned
    y = torch.as_tensor(np.stack(targets)).long()  # (T, n)
    n_rows, n_items, d = x.shape
    n_tasks, n_folds, k = len(targets), len(splits), n_classes
    onehot = torch.nn.functional.one_hot(y, k).double()  # (T, n, K)
    train = torch.zeros(n_folds, n_items, dtype=torch.float64)
    for f, (idx, _) in enumerate(splits):
        train[f, torch.as_tensor(idx)] = 1.0
    count = train.sum(1)  # (F,)

    # standardisation per (row, fold) on its training items, as StandardScaler (ddof 0, zero sd -> 1)
    mu = torch.einsum("fn,rnd->rfd", train, x) / count[None, :, None]  # (R, F, d)
    var = torch.einsum("fn,rnd->rfd", train, x * x) / count[None, :, None] - mu * mu
    sd = var.clamp_min(0).sqrt()
    sd = torch.where(sd < 1e-6 * sd.amax(-1, keepdim=True).clamp_min(1e-12), torch.ones_like(sd), sd)
    inv_sd = 1.0 / sd

    total = x.transpose(1, 2) @ x  # (R, d, d); each fold's training Gram = total - its test items' Gram
    gram = torch.stack([total - (lambda t: t.transpose(1, 2) @ t)(x[:, train[f] == 0]) for f in range(n_folds)], dim=1)
    centred = gram - count[None, :, None, None] * mu[..., :, None] * mu[..., None, :]  # (R, F, d, d)
    std_gram = centred * inv_sd[..., :, None] * inv_sd[..., None, :] + alpha * torch.eye(d, dtype=torch.float64)

    # X_std^T (Y - mean Y) per (row, fold, task): (R, F, d, T*K)
    cross = torch.einsum("fn,rnd,tnk->rfdtk", train, x, onehot)
    ybar = torch.einsum("fn,tnk->ftk", train, onehot) / count[:, None, None]  # (F, T, K)
    rhs = (cross - count[None, :, None, None, None] * mu[..., None, None] * ybar[None, :, None]) * inv_sd[..., None, None]
    # numpy's LAPACK, not torch's: in the full test suite torch's solve failed ("Pivots given to lu_solve must
    # all be greater or equal to 1") after other tests had run torch work on background threads
    w = torch.from_numpy(np.linalg.solve(std_gram.numpy(), rhs.reshape(n_rows, n_folds, d, n_tasks * k).numpy()))
    w = w.reshape(n_rows, n_folds, d, n_tasks, k)  # weights on standardised states

    # outputs on every item: ((x - mu) / sd) @ W + ybar, absent classes masked out
    v = (w * inv_sd[..., None, None]).permute(0, 2, 1, 3, 4).reshape(n_rows, d, n_folds * n_tasks * k)
    out = torch.bmm(x, v).reshape(n_rows, n_items, n_folds, n_tasks, k)
    offset = ybar[None] - torch.einsum("rfd,rfdtk->rftk", mu * inv_sd, w)  # (R, F, T, K)
    present = torch.zeros(n_folds, n_tasks, k, dtype=torch.bool)
    for f in range(n_folds):
        for t in range(n_tasks):
            present[f, t, y[t][train[f] > 0].unique()] = True
    out = out + offset[:, None] + torch.where(present, 0.0, float("-inf"))[None, None]
    predicted = out.argmax(-1)  # (R, n, F, T)
    result = np.zeros((n_tasks, n_rows, n_items), dtype=np.int64)
    for f, (_, test) in enumerate(splits):
        result[:, :, test] = predicted[:, torch.as_tensor(test), f, :].permute(2, 0, 1).numpy()
    return result
