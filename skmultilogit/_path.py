"""Fits on label-encoded data: one value of C, or a warm-started path of them.

Sits between the solvers and the estimators: it builds the objective on a
backend, runs the solver and turns the minimiser into ``(coef, intercept)``
in the user's coordinates. The estimators do the validation, the label
encoding and the warnings; this module knows nothing of scikit-learn, and
nothing of where the rows live (the backend does).
"""

import numpy as np

from ._objective import MultinomialLoss
from ._solvers import minimize_loss


def fit_coefficients(
    data,
    *,
    C,
    l1_ratio=0.0,
    fit_intercept=True,
    solver="auto",
    tol=1e-6,
    max_iter=100,
    verbose=0,
    coef_init=None,
    intercept_init=None,
    feature_stats=None,
    preconditioner=None,
    keep_hessian=False,
    on_iterate=None,
    coef_bounds=None,
    l1_groups=None,
):
    """Minimise the objective for one ``C``; return ``(coef, intercept, result)``.

    ``data`` is a backend (see ``_backends``). ``coef`` (K, d) and
    ``intercept`` (K,) are float64; the intercept is zeros without
    ``fit_intercept``. ``result`` is the solver's
    :class:`~skmultilogit._solvers.SolverResult`. ``coef_init`` and
    ``intercept_init`` give a warm start (zeros when None); ``feature_stats``,
    ``preconditioner`` and ``keep_hessian`` pass on what an earlier fit on
    the same data computed (see :func:`~skmultilogit._solvers.minimize_loss`).
    ``on_iterate``, if given, is called after each solver iteration with a
    function that returns that iterate's ``(coef, intercept)``, centred as
    the result is; if it returns True the fit stops there. ``coef_bounds``
    is ``(lower, upper)``, arrays of shape (K, d) boxing ``coef``, or None;
    ``l1_groups="feature"`` makes the L1 part the group lasso.

    Adding one vector to every row of W (or one constant to b) leaves every
    probability unchanged. The intercept is unpenalised, so it is centred
    over classes. So is W under the pure L2 penalty or none, whose optimum
    (the minimum-norm representative) has columns summing to zero. With an
    L1 part the optimal shift of a column is a median-like point, which the
    solver has already found, and centring would undo its exact zeros. Box
    constraints break the invariance: a bounded W is not centred either.
    """
    loss = MultinomialLoss.from_data(
        data,
        C,
        fit_intercept=fit_intercept,
        normalize=True,
        l1_ratio=l1_ratio,
        coef_bounds=coef_bounds,
        l1_groups=l1_groups,
    )
    w0 = loss.pack(*starting_point(coef_init, intercept_init, loss.n_classes, loss.n_features))
    hook = None
    if on_iterate is not None:

        def hook(iterate):
            return on_iterate(lambda: _coef_intercept(loss, iterate()))

    result = minimize_loss(
        loss,
        w0,
        solver=solver,
        tol=tol,
        max_iter=max_iter,
        verbose=verbose,
        feature_stats=feature_stats,
        preconditioner=preconditioner,
        keep_hessian=keep_hessian,
        on_iterate=hook,
    )
    return (*_coef_intercept(loss, result.w), result)


def starting_point(coef_init, intercept_init, n_classes, n_features):
    """A fit's starting ``(coef, intercept)``: zeros where no warm start gives them."""
    coef = np.zeros((n_classes, n_features)) if coef_init is None else np.asarray(coef_init)
    if intercept_init is None or coef_init is None:
        return coef, np.zeros(n_classes)
    return coef, np.asarray(intercept_init)


def within_box(coef, box, dtype):
    """``coef`` clipped to ``box = (lower, upper)`` (None: no box) in numbers of ``dtype``.

    ``coef_`` takes X's dtype: float32's nearest to an upper bound of 0.3 is
    0.3000000119, above it. Each bound is moved inward to the nearest number
    of ``dtype`` inside it (representable, so the cast cannot cross it; a
    box narrower than a step of ``dtype`` cannot hold, and 1e300 becomes
    float32's largest number).
    """
    if box is None:
        return coef
    inward_box = []
    for bound, inward in zip(box, (np.inf, -np.inf), strict=True):
        with np.errstate(over="ignore"):
            cast = np.asarray(bound, dtype=np.float64).astype(dtype)
        outside = cast < bound if inward > 0 else cast > bound
        inward_box.append(np.where(outside, np.nextafter(cast, cast.dtype.type(inward)), cast))
    return np.clip(coef, *(bound.astype(np.float64) for bound in inward_box))


def _coef_intercept(loss, w):
    """``(coef, intercept)`` of ``w``, centred over classes (see fit_coefficients)."""
    coef, intercept = loss.unpack(w)
    if loss.penalty.smooth:
        coef = coef - coef.mean(axis=0)
    # V / sigma of a V on lower * sigma can miss lower by an ulp
    coef = within_box(coef, getattr(loss.penalty, "box", None), loss.data.dtype)
    if intercept is None:
        return np.array(coef), np.zeros(loss.n_classes)
    return np.array(coef), intercept - intercept.mean()


def coefficient_path(
    data,
    Cs,
    *,
    l1_ratio=0.0,
    fit_intercept=True,
    solver="auto",
    tol=1e-6,
    max_iter=100,
    fit_hooks=None,
    coef_bounds=None,
    l1_groups=None,
):
    """Fit every C in ``Cs`` on the backend ``data``, each fit warm-started from the previous.

    The values are visited in increasing order, from the strongest penalty
    to the weakest: the optimum moves little from one C to the next, so each
    fit starts close to its optimum, while the first (heavily penalised) fit
    from zero is cheap and well conditioned. The feature statistics of the
    change of variables are computed once for the whole path, and
    newton-cholesky reuses the previous fit's Hessian (its data term does
    not depend on C) until its conjugate-gradient solves say it is stale.

    ``fit_hooks``, if given, is called before each fit with a function that
    returns the fit's starting ``(coef, intercept)``, and returns
    ``(on_iterate, done)``: the fit's ``on_iterate`` (see
    :func:`fit_coefficients`), and ``done(coef, intercept)``, called after it.
    ``coef_bounds`` and ``l1_groups`` apply to every fit (see :func:`fit_coefficients`).

    Returns
    -------
    coefs : ndarray of shape (len(Cs), n_classes, n_features + fit_intercept)
        In the order of ``Cs``; the intercept in the last column.
    n_iter : ndarray of shape (len(Cs),)
    results : list of SolverResult
        In the order of ``Cs``.
    """
    Cs = np.asarray(Cs, dtype=np.float64)
    n_classes, n_features = data.n_classes, data.n_features
    coefs = np.empty((Cs.size, n_classes, n_features + fit_intercept))
    n_iter = np.empty(Cs.size, dtype=np.int32)
    results = [None] * Cs.size
    coef = intercept = preconditioner = feature_stats = None
    for index in np.argsort(Cs, kind="stable"):
        on_iterate = done = None
        if fit_hooks is not None:
            start = starting_point(coef, intercept, n_classes, n_features)
            on_iterate, done = fit_hooks(lambda start=start: start)
        coef, intercept, result = fit_coefficients(
            data,
            C=Cs[index],
            l1_ratio=l1_ratio,
            fit_intercept=fit_intercept,
            solver=solver,
            tol=tol,
            max_iter=max_iter,
            coef_init=coef,
            intercept_init=intercept,
            feature_stats=feature_stats,
            preconditioner=preconditioner,
            keep_hessian=True,
            on_iterate=on_iterate,
            coef_bounds=coef_bounds,
            l1_groups=l1_groups,
        )
        if done is not None:
            done(coef, intercept)
        # handed on to the next fit only: a path holds one Hessian at a time
        preconditioner, result.preconditioner = result.preconditioner, None
        feature_stats = result.feature_stats
        coefs[index, :, :n_features] = coef
        if fit_intercept:
            coefs[index, :, n_features] = intercept
        n_iter[index] = result.n_iter
        results[index] = result
    return coefs, n_iter, results
