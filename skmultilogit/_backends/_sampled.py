"""The in-memory backends' Hessian on a row sample drawn by curvature (numpy, array-API)."""

import numpy as np

from .. import _hessian


def hessian_sample(data, coef, intercept, budget, seed):
    """``(rows, row_factor)`` of a Hessian on about ``budget`` rows drawn by curvature, or Nones.

    All rows (Nones) when the budget covers them or the coefficients are all
    zero (there the Hessian's Kronecker form is exact and cheap). ``data`` is
    an in-memory backend, which can give every row's curvature.
    """
    if budget is None or budget >= data.n_samples or not coef.any():
        return None, None
    rng = np.random.default_rng(seed)
    return _hessian.hessian_rows(data.curvature(coef, intercept), budget, rng)


def sampled_loss_gradient_hessian(data, coef, intercept, *, center, scale, budget, seed, dtype):
    """An in-memory backend's ``loss_gradient_hessian``: the Hessian on :func:`hessian_sample`."""
    loss, grad_coef, grad_intercept = data.loss_gradient(coef, intercept)
    rows, row_factor = hessian_sample(data, coef, intercept, budget, seed)
    hessian = data.hessian(
        coef, intercept, center=center, scale=scale, rows=rows, row_factor=row_factor, dtype=dtype
    )
    return loss, grad_coef, grad_intercept, hessian
