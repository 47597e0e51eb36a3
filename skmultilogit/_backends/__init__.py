"""Backends: where the rows of X live, and how the data term is summed over them.

The objective (``_objective.MultinomialLoss``) is a data term, summed over
rows, plus a penalty. A backend evaluates the data term and its derivatives
for the rows it holds, with the row-block math of ``_loss``; it never
changes the math, only where and how blocks are evaluated and added up.
Everything above (penalties, the change of variables, the solvers) sees the
backend only through the protocol below, so a new backend (a compiled
kernel, an array-API namespace) is one new class here and nothing else.

Backends today: :class:`NumpyBackend` (dense or CSR/CSC X in this process,
evaluated block by block while a block is in cache),
``_backends._dask.DaskBackend`` (row blocks of a Dask array on the workers of
a cluster, each evaluated by a :class:`NumpyBackend` where it lives and
summed by Dask's tree reduction; imported only for Dask input) and
``_backends._array_api.ArrayAPIBackend`` (an array of another array-API
namespace, PyTorch or CuPy say, evaluated in that namespace on its device).

The protocol
------------
A backend holds X's rows, their class indices ``y`` and sample weights
``s`` (sample weight times class weight). Its data term is
``sum_i omega_i (-log P[i, y_i])`` with per-sample factors
``omega = s * multiplier / divisor``, the objective's normalisation (see
``_objective.weighting``).

Attributes
    ``n_samples``, ``n_features``, ``n_classes``; ``dtype`` (X's: float32 or
    float64, the precision of the matrix products); ``sparse`` (whether X's
    blocks are sparse); ``total_weight`` (``sum(s)``); ``stored_entries``
    (the entries of X a pass reads: ``n d`` dense, ``nnz`` sparse; the cost
    unit of the solvers' budgets); ``passes_are_rounds`` (whether every
    evaluation is a round of communication: then Newton's method fuses a
    gradient with a Hessian in one round and solves on the client, instead
    of taking conjugate-gradient steps of a round each); ``newton_by_default``
    (whether ``solver="auto"`` may pick Newton's method when its Hessian
    fits).
``with_factor(multiplier, divisor)``
    The same data with ``omega = s * multiplier / divisor``; shares X.
``rows(index)``
    A backend of the same kind on the rows ``index`` (a cross-validation
    fold; in memory only).
``loss_gradient(coef, intercept)``
    ``(loss, grad_coef, grad_intercept)``: the data term and its gradient,
    float64, ``grad_intercept`` of shape (K,) even when ``intercept`` is
    None (no intercept).
``hessp(coef, intercept, dir_coef, dir_intercept)``
    ``(product_coef, product_intercept)``: the data term's Hessian times a
    direction. Products at one point reuse its probabilities.
``hessp_at(coef, intercept, *, center, scale, inert)`` (optional)
    ``hessp`` at one point as a function of the direction alone,
    ``product(dir_coef, dir_intercept)``, for a solve's products at that
    point: what they share is prepared once (the numpy backend's compiled
    dense pass: its tables). With ``center`` and ``scale`` (None: the
    model's own coordinates) the direction and the product are in the
    coordinates of the design rows ``[(x - center) / scale, 1]``, as the
    solvers take them, the features of the mask ``inert`` (zero design
    columns) moving nothing and getting zero (``_design``). It keeps copies
    of the point, not the caller's arrays. Where a backend has none, the
    objective binds ``hessp`` to a copy of the point itself and changes
    coordinates around it.
``hessian(coef, intercept, *, center, scale, rows, row_factor, dtype, on_device, omit, out)``
    The data term's Hessian for the design rows ``[(x - center) / scale, 1]``
    (the 1 only with an intercept), optionally on the rows ``rows`` with
    their factors multiplied by ``row_factor`` (in memory only); the upper
    triangle of a Fortran-ordered numpy matrix in ``dtype``. With
    ``on_device=True`` a backend that computes in another array namespace
    may instead return it there, whole and symmetric, for ``_cholesky`` to
    factor where it is. It may leave out positive semidefinite terms whose
    spectral norms sum to at most ``omit`` (a preconditioner's; the numpy
    backend does, ``_omission.add_class_pairs_omitting``), or none. ``out``:
    an array the numpy result may be written into where it fits (a
    preconditioner's last factor, ``_hessian.hessian_storage``), or None.
``loss_gradient_hessian(coef, intercept, *, center, scale, budget, seed, dtype)``
    ``(loss, grad_coef, grad_intercept, hessian)`` in one evaluation (one
    round on a cluster), the Hessian on a row sample of about ``budget`` rows
    drawn by curvature where the rows live, when that is fewer than the rows.
``gram(*, center, scale)``
    ``sum_i omega_i x^_i x^_i^T`` for the design rows ``x^_i = [(x_i - center)
    / scale, 1]``, numpy float64, (d + 1)-square: the data term's Hessian at
    zero coefficients in Kronecker form, for a preconditioner solved on the
    host. None (the attribute) where the rows are not in this process's
    memory as numpy or scipy arrays (then ``hessian`` serves).
``curvature(coef, intercept)``
    ``omega_i (1 - ||p_i||^2)`` for every row (in memory only: elsewhere it
    would move an n-vector).
``map_blocks(function, **kwargs)``
    ``function(X_block, sample_weight_block, **kwargs)`` on every row block,
    where it lives, the results in a list: the one traversal the feature
    statistics of ``_conditioning`` need (one round on a cluster).
"""

from ._numpy import NumpyBackend


def is_dask_collection(X):
    """Whether X is a Dask collection, without importing Dask."""
    return type(X).__module__.partition(".")[0] == "dask" and hasattr(X, "dask")


__all__ = ["NumpyBackend", "is_dask_collection"]
