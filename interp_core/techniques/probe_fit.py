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
from threadpoolctl import threadpool_limits

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
    onehot = torch.nn.functional.one_hot(y, k).double().permute(1, 0, 2).reshape(n_items, n_tasks * k)  # (n, T*K)
    tests = [torch.as_tensor(test) for _, test in splits]
    if not torch.equal(torch.cat(tests).sort().values, torch.arange(n_items)):
        raise ValueError("the test sets of the splits must partition the items (each item tested by exactly one fold)")
    count = torch.tensor([float(n_items - len(test)) for test in tests], dtype=torch.float64)  # training items per fold (F,)

    # Every sum over a fold's training items is the sum over all items minus the one over its test items, and the
    # test sets partition the items: one pass over each test set gives both (Gram, sums, cross-products).
    x_test = [x[:, test] for test in tests]  # (R, n_f, d) each
    test_gram = np.empty((n_rows, n_folds, d, d))
    with threadpool_limits(1):  # OpenBLAS's threads spin while they wait: on a busy 2-core machine two took 15x the CPU
        for f, t in enumerate(x_test):
            for r in range(n_rows):
                a = t[r].numpy()
                np.matmul(a.T, a, out=test_gram[r, f])  # numpy makes a.T @ a one symmetric rank-k update: half the work
    test_gram = torch.from_numpy(test_gram)
    test_sum = torch.stack([t.sum(1) for t in x_test], dim=1)  # (R, F, d)
    test_cross = torch.stack([t.transpose(1, 2) @ onehot[test] for t, test in zip(x_test, tests)], dim=1)  # (R, F, d, T*K)
    test_ysum = torch.stack([onehot[test].sum(0) for test in tests])  # (F, T*K)
    total = test_gram.sum(1, keepdim=True)
    gram = test_gram.neg_().add_(total)  # each fold's training Gram, all items' minus its test items', in place (R, F, d, d)
    mu = (test_sum.sum(1, keepdim=True) - test_sum) / count[None, :, None]  # (R, F, d)
    cross = test_cross.sum(1, keepdim=True) - test_cross  # X_train^T Y_train (R, F, d, T*K)
    ybar = (test_ysum.sum(0) - test_ysum) / count[:, None]  # (F, T*K)

    # standardisation per (row, fold) on its training items, as StandardScaler (ddof 0, zero sd -> 1)
    var = gram.diagonal(dim1=-2, dim2=-1) / count[None, :, None] - mu * mu
    sd = var.clamp_min(0).sqrt()
    sd = torch.where(sd < 1e-6 * sd.amax(-1, keepdim=True).clamp_min(1e-12), torch.ones_like(sd), sd)
    inv_sd = 1.0 / sd
    # the standardised, penalised Gram, in place (each (R, F, d, d) float64 temporary is ~100 MB):
    # (gram - count mu mu^T) / (sd sd^T) + alpha I
    std_gram = gram.sub_((count[None, :, None] * mu)[..., :, None] * mu[..., None, :])
    std_gram.mul_(inv_sd[..., :, None]).mul_(inv_sd[..., None, :]).diagonal(dim1=-2, dim2=-1).add_(alpha)
    # X_std^T (Y - mean Y) per (row, fold): (R, F, d, T*K)
    rhs = (cross - count[None, :, None, None] * mu[..., None] * ybar[None, :, None]) * inv_sd[..., None]
    # numpy's LAPACK, not torch's: in the full test suite torch's solve failed ("Pivots given to lu_solve must
    # all be greater or equal to 1") after other tests had run torch work on background threads; one BLAS thread
    with threadpool_limits(1):
        w = torch.from_numpy(np.linalg.solve(std_gram.numpy(), rhs.numpy()))  # weights on standardised states
    w = w.reshape(n_rows, n_folds, d, n_tasks, k)

    # outputs on each fold's test items only: ((x - mu) / sd) @ W + ybar, absent classes masked out
    offset = ybar.reshape(n_folds, n_tasks, k)[None] - torch.einsum("rfd,rfdtk->rftk", mu * inv_sd, w)  # (R, F, T, K)
    result = np.zeros((n_tasks, n_rows, n_items), dtype=np.int64)
    for f, (train, test) in enumerate(splits):
        present = torch.zeros(n_tasks, k, dtype=torch.bool)
        for t in range(n_tasks):
            present[t, y[t][torch.as_tensor(train)].unique()] = True
        out = x_test[f] @ (w[:, f] * inv_sd[:, f, :, None, None]).reshape(n_rows, d, n_tasks * k)  # (R, n_f, T*K)
        out = out.reshape(n_rows, -1, n_tasks, k) + offset[:, f, None] + torch.where(present, 0.0, float("-inf"))
        result[:, :, test] = out.argmax(-1).permute(2, 0, 1).numpy()
    return result
