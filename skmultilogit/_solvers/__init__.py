"""Solvers: minimise an objective, knowing nothing of estimators or of where the rows live.

``_driver``
    :func:`minimize_loss` (the entry point), the stopping rule, the result,
    the tracer that counts and reports, the ``"auto"`` choice.
``_lbfgs``
    ``"lbfgs"``: L-BFGS in the compact representation, two matrix-vector
    products with the curvature pairs a step; scipy's L-BFGS-B under bounds.
``_scipy``
    ``"newton-cg"`` (trust-ncg) and the bounded L-BFGS-B through
    ``scipy.optimize.minimize``.
``_newton_cholesky``
    ``"newton-cholesky"``: Newton with a reused, row-sampled Cholesky
    preconditioner and conjugate-gradient steps.
``_newton_rounds``
    ``"newton-cholesky"`` where every pass over the data is a round of
    communication (Dask): each step solved with a Cholesky factor.
``_threads``
    The BLAS thread limit a fit runs under.
"""

from ._driver import SOLVERS, SolverResult, minimize_loss, resolve_solver, stationarity_max

__all__ = ["SOLVERS", "SolverResult", "minimize_loss", "resolve_solver", "stationarity_max"]
