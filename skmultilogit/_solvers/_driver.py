"""The solver driver: one stopping rule, one result, whichever solver runs.

Knows nothing of scikit-learn estimators or of where the data live: it takes
an objective (``_objective.MultinomialLoss``), a starting point and stopping
rules, puts the objective in the solvers' coordinates (``_conditioning``),
lets the penalty say what the optimiser sees (``_penalties``), runs one of
the solvers and returns the minimiser with how the run ended.

Stopping rule
-------------
The objective handed to the optimiser is ``F / (C * sum(s))`` (``F / sum(s)``
when ``C = inf``), as in scikit-learn, so that ``tol`` does not depend on the
number of samples. A run has converged when the largest absolute entry of the
gradient in the conditioned coordinates is at most ``tol`` (the projected
gradient for a bound-constrained problem; below ``C * sum(s) = 1`` the
coefficients' entries weighted by ``_conditioning.stationarity_weight``),
or, when the optimiser stopped by itself because the objective no longer
decreases in floating point, at most ``max(tol, sqrt(eps))``: below that,
float64 cannot resolve further progress on most problems. Anything else is
reported as not converged, whatever the optimiser said.

With an L1 part (elastic net, the group lasso) that test is against at most
a tenth of the L1 strength ``alpha / (C sum(s))`` (:func:`stopping_tol`):
a coefficient is zero where its gradient is within that strength, so a
``tol`` above it does not decide which are (wine, L1, C = 1e4: stopped 12 %
above the optimum in objective with 35 nonzero coefficients for 19; at a
tenth, 0.3 % and 19).
"""

from dataclasses import dataclass

import numpy as np

from .._conditioning import ConditionedProblem, check_representable, feature_scale
from .._memory import check_fits
from .._statistics import feature_mean_scale
from ._lbfgs import lbfgs
from ._newton_cholesky import NewtonCholesky
from ._newton_rounds import NewtonInRounds
from ._proximal import ProximalStalled, proximal_newton
from ._scipy import newton_cg
from ._threads import blas_thread_limit


def newton_cholesky(tracer, theta0, tol, max_iter, *, previous=None, keep_hessian=False):
    """:class:`NewtonCholesky`, or :class:`NewtonInRounds` where passes are rounds.

    The second where every pass over the data is a round of communication
    (``passes_are_rounds``, a Dask cluster); a path's Hessian is not carried
    there.
    """
    if tracer.problem.loss.data.passes_are_rounds:
        return NewtonInRounds(tracer, tol, max_iter).solve(theta0)
    return NewtonCholesky(tracer, tol, max_iter, previous, keep_hessian).solve(theta0)


# The stopping test's tolerance is at most this share of an L1 part's strength.
L1_TOL_FRACTION = 0.1


def stopping_tol(penalty, tol):
    """``tol``, capped at ``L1_TOL_FRACTION`` of ``penalty``'s L1 strength (module docstring)."""
    l1_strength = penalty.l1_strength
    return min(tol, L1_TOL_FRACTION * l1_strength) if l1_strength > 0 else tol


# Every solver takes (tracer, theta0, tol, max_iter, previous=, keep_hessian=)
# and returns a scipy OptimizeResult with x, nit and message.
SOLVER_RUNS = {"lbfgs": lbfgs, "newton-cg": newton_cg, "newton-cholesky": newton_cholesky}
SOLVERS = ("auto", *SOLVER_RUNS)
# Solvers only "auto" picks, for a penalty that names them (the group lasso's).
PENALTY_SOLVER_RUNS = {"proximal-newton": proximal_newton}

# newton-cholesky forms the K (d + 1) square Hessian: at most 12 bytes per
# entry while it is built (in memory, a float32 accumulator of the class
# pairs, 2 or 4 bytes, the pairs copied out, 2, then the float32 Hessian, 4;
# on an array-API device a float64 Kronecker product at a start from zero
# beside the float32 one), then a float32 factor (4 bytes). "auto" uses it
# when that is at most 64 MiB.
HESSIAN_BYTES_PER_ENTRY = 12
AUTO_NEWTON_MAX_BYTES = 64 * 2**20
# The group lasso's proximal Newton forms the whole symmetric Hessian in
# float64, in place from its upper triangle, and indexes copies of its rows
# and columns (the model minimiser): twice that, with room to spare.
PROXIMAL_BYTES_PER_ENTRY = 20
# "auto" minimises an element-wise L1 part (no box) by proximal Newton up to
# this many parameters, by L-BFGS-B on the split above. Measured (defaults
# but max_iter=2000, 1000 correlated Gaussian rows, K in 3, 5, 10, d in 10,
# 20, 40, C in 0.1, 10, 1000, l1_ratio 0.5 and 1; time proximal / L-BFGS-B,
# four runs, the last on bfe54bf): up to 123 parameters 0.07-1.41
# (0.07-0.47 from C = 10, where L-BFGS-B took 245-2000 iterations and
# stopped up to 4e-4 above the optimum in objective, warning at 2000), at
# 205-210 0.26-1.8; with this limit lifted (on 377ed25 and c2633fa), at 410
# 1.6-25 (the model's active set of 300-400 coefficients, refactorised as
# it changes) and on the 8x8 digits (650, raw and standardised, C from 0.01
# to 1e4) 1.1-30, where L-BFGS-B stopped up to 3e-4 above. Proximal Newton
# ended at the lower objective in every one of these. (Parameters with an
# intercept, K (d + 1); K d without.) Nor on fewer rows than parameters:
# there the restricted Hessians are near singular at a weak penalty and
# their active sets lose one coefficient per factorisation (40 x 50, K = 4,
# C = 1e5, pure L1: 103 times the split's time).
PROXIMAL_AUTO_MAX_PARAMS = 256

# A stop forced by floating-point resolution (the objective no longer
# decreases) counts as converged when the largest gradient entry of the
# normalised objective is below this, even if a smaller tol was asked for.
PRECISION_GTOL = float(np.sqrt(np.finfo(np.float64).eps))


@dataclass
class SolverResult:
    """How a solver run ended.

    Attributes
    ----------
    w : ndarray
        The minimiser found, in the loss's own (user) coordinates.
    n_iter : int
        Outer iterations taken.
    converged : bool
        Whether the gradient tolerance was met (see the module docstring).
    reason : str
        Why it stopped when not converged: ``"max_iter"``, ``"precision"``
        (the objective no longer decreases in floating point),
        ``"inner_solve"`` (a conjugate-gradient solve ran away) or
        ``"callback"`` (``on_iterate`` asked to stop); ``""`` when converged.
    message : str
        The optimiser's own words on why it stopped.
    grad_max : float
        Largest absolute gradient entry, conditioned coordinates, at ``w``.
    solver : str
        The solver that ran (what ``"auto"`` resolved to).
    preconditioner : object or None
        newton-cholesky's last preconditioner, for the next fit of a path.
    feature_stats : tuple of ndarray or None
        The feature statistics the run used, for the next fit of a path.
    projected : bool
        Whether ``grad_max`` is the largest entry of the projected gradient
        of a bound-constrained problem (the L1 split).
    tol : float or None
        The tolerance the run was tested against (:func:`stopping_tol`).
    handed_over : int or None
        Where proximal Newton handed over to L-BFGS-B on the split
        (``ProximalStalled``), its iterations (counted in ``n_iter``).
    """

    w: np.ndarray
    n_iter: int
    converged: bool
    reason: str
    message: str
    grad_max: float
    solver: str
    preconditioner: object = None
    feature_stats: tuple = None
    projected: bool = False
    tol: float = None
    handed_over: int = None

    def warning_message(self, tol, dtype):
        """The ConvergenceWarning text for an unconverged run, with advice."""
        measure = "projected gradient" if self.projected else "gradient"
        if self.solver == "proximal-newton":
            measure = "entry of the smallest subgradient"
        above = f"tol={tol}"
        if self.tol is not None and self.tol < tol:
            above = (
                f"{self.tol:.2g} (tol={tol}, capped at a tenth of the L1 penalty's strength "
                "l1_ratio / (C * sum(sample_weight)), the gradient that decides a zero)"
            )
        who = self.solver
        if self.handed_over is not None:
            who = (
                f"proximal-newton (whose active sets kept changing, {self.handed_over} "
                f"iterations), then {self.solver} on the split,"
            )
        said = (
            f"{who} stopped after {self.n_iter} iterations with the largest "
            f"{measure}{'' if measure.startswith('entry') else ' entry'} at "
            f"{self.grad_max:.2e}, above {above}"
        )
        newton_helps = self.solver == "lbfgs" and not self.projected
        if self.reason == "callback":
            advice = "A callback stopped the fit early; the model is the iterate it stopped at."
        elif self.reason == "max_iter":
            advice = "Increase max_iter" + (
                ", or use solver='newton-cholesky', which needs far fewer iterations "
                "on badly scaled data or weak penalties."
                if newton_helps
                else "."
            )
        elif self.reason == "inner_solve" and dtype == np.float32:
            # newton-cg's CG asks for a residual of |g|^1.5, which float32
            # products cannot resolve near the optimum (5 float32 rows, K = 4,
            # tol=1e-10: a runaway at a gradient of 1.9e-8); a degenerate
            # problem runs away in either dtype, far from it too
            advice = (
                "A Newton step's conjugate-gradient solve did not terminate: near the "
                "optimum float32 products cannot resolve it (fit float64 data for a "
                "tighter optimum, or loosen tol), or the problem is numerically "
                "degenerate (standardise the features, or use solver='lbfgs')."
            )
        elif self.reason == "inner_solve":
            advice = (
                "A Newton step's conjugate-gradient solve did not terminate: the "
                "problem is numerically degenerate. Standardise the features, or use "
                "solver='lbfgs'."
            )
        elif dtype == np.float32:
            advice = (
                "The objective no longer decreases at float32 precision: fit float64 "
                "data for a tighter optimum, or loosen tol."
            )
        else:
            advice = (
                "The objective no longer decreases at float64 precision: tol is below "
                "what float64 resolves on this problem (tol far below 1e-8, or very "
                "badly conditioned data). Loosen tol, standardise the features or use a "
                "smaller C"
                + (
                    ", or use solver='newton-cholesky', which takes steps that shrink the "
                    "gradient when the objective can no longer tell."
                    if newton_helps
                    else "."
                )
            )
        return f"{said} ({self.message}). {advice}"


class InnerSolveRunaway(Exception):
    """More Hessian products in one Newton step than CG can ever need."""


class StopRequested(Exception):
    """The ``on_iterate`` hook asked to stop at the iterate just accepted."""


class Tracer:
    """Wraps the problem for the solvers: remembers evaluations, counts, reports."""

    def __init__(self, problem, verbose, on_iterate=None):
        self.problem = problem
        self.verbose = verbose
        self.on_iterate = on_iterate
        self.last = None
        self.accepted = None
        self.iteration = 0
        self.products_this_step = 0
        self.preconditioner = None
        # Exact-arithmetic CG needs at most n_params products per solve.
        self.max_products = 2 * problem.loss.n_params + 20

    def loss_gradient(self, theta):
        f, g = self.problem.loss_gradient(theta)
        self.last = (theta.copy(), f, g)
        return f, g

    def loss_gradient_hessian(self, theta, **kwargs):
        f, g, hessian = self.problem.loss_gradient_hessian(theta, **kwargs)
        self.last = (theta.copy(), f, g)
        return f, g, hessian

    def hessp(self, theta, direction):
        self.products_this_step += 1
        if self.products_this_step > self.max_products:
            raise InnerSolveRunaway
        return self.problem.hessp(theta, direction)

    def evaluate(self, theta):
        if self.last is not None and np.array_equal(self.last[0], theta):
            return self.last[1], self.last[2]
        return self.problem.loss_gradient(theta)

    def callback(self, intermediate_result):
        self.iteration += 1
        self.products_this_step = 0
        self.accepted = np.array(intermediate_result.x, copy=True)
        if self.verbose:
            theta = intermediate_result.x
            f, g = self.evaluate(theta)
            stationarity = self.problem.stationarity(theta, g)
            print(
                f"iter {self.iteration:4d}  objective/(C*sum(s)) {f:.12e}"
                f"  |grad|_max {np.max(np.abs(stationarity), initial=0.0):.3e}",
                flush=True,
            )
        if self.on_iterate is not None:
            accepted, to_original = self.accepted, self.problem.to_original
            if self.on_iterate(lambda: to_original(accepted)):
                raise StopRequested


def resolve_solver(solver, loss):
    """The solver ``"auto"`` stands for on this problem; others unchanged.

    A penalty that is not smooth names its solvers (``penalty.solvers``)
    and refuses others; ``"auto"`` takes the first, except that an
    element-wise L1 part without a box (``penalty.newton_solver``) is
    minimised by proximal Newton up to ``PROXIMAL_AUTO_MAX_PARAMS``
    parameters, and no more than there are rows (where it was faster and
    ended lower; see there).
    Otherwise ``"newton-cholesky"`` when its Hessian (``n_params^2``
    entries, 12 bytes each while it is built) fits in
    ``AUTO_NEWTON_MAX_BYTES`` (64 MiB, up to about 2300 parameters) and the
    backend forms it cheaply (``newton_by_default``): it reached the optimum
    in fewer passes over the data than L-BFGS on every such problem of the
    benchmark suite. ``"lbfgs"`` otherwise (wide or sparse, high-dimensional
    problems, where a Hessian is out of reach and curvature pairs are what is
    affordable). The Hessian's memory does not grow with the number of
    samples, but on small data with many classes it can exceed X's own (on
    the 30k x 40, K = 50 problem: 50 MB against 7 MB). An explicit
    ``"newton-cholesky"`` whose Hessian cannot fit in the memory available
    is refused here, before anything is allocated.
    """
    penalty = loss.penalty
    penalty.check_solver(solver)
    if not penalty.smooth:
        if solver == "auto":
            solver = penalty.solvers[0]
            newton_solver = getattr(penalty, "newton_solver", None)
            if (
                newton_solver is not None
                and loss.data.newton_by_default
                and loss.n_params <= min(PROXIMAL_AUTO_MAX_PARAMS, loss.data.n_samples)
            ):
                return newton_solver
        if solver == "proximal-newton":
            check_fits(
                PROXIMAL_BYTES_PER_ENTRY * loss.n_params**2,
                f"The group lasso (l1_groups='feature') forms the Hessian of the "
                f"{loss.n_params} parameters (n_classes x (n_features + 1)): a "
                f"{loss.n_params}-square float64 matrix, {PROXIMAL_BYTES_PER_ENTRY} bytes an "
                "entry while it is built, which",
                "Use the element-wise L1 (l1_groups=None), or fewer features.",
            )
        return solver
    hessian_bytes = HESSIAN_BYTES_PER_ENTRY * loss.n_params**2
    if solver == "newton-cholesky":
        check_fits(
            hessian_bytes,
            f"solver='newton-cholesky' forms the Hessian of the {loss.n_params} parameters "
            f"(n_classes x (n_features + 1)): a {loss.n_params}-square matrix, "
            f"{HESSIAN_BYTES_PER_ENTRY} bytes an entry while it is built, which",
            "Use solver='lbfgs' (memory for a few gradients) or solver='newton-cg' "
            "(Hessian-vector products, no Hessian); solver='auto' picks 'lbfgs' here.",
        )
    if solver != "auto":
        return solver
    if loss.data.newton_by_default and hessian_bytes <= AUTO_NEWTON_MAX_BYTES:
        return "newton-cholesky"
    return "lbfgs"


def conditioned_problem(loss, feature_stats, solver=None):
    """The problem the optimiser sees: ``loss`` in the solvers' coordinates, penalty applied.

    ``feature_stats`` is ``feature_mean_scale(loss.data, loss.fit_intercept)``;
    ``solver`` the resolved one (an L1 part is a split problem for L-BFGS-B,
    a group norm for proximal Newton).
    """
    mean, spread = feature_stats
    strength = loss.penalty.l2_strength
    conditioned = ConditionedProblem(
        loss, mean, feature_scale(spread, strength), inert=spread == 0, spread=spread
    )
    return loss.penalty.problem(conditioned, solver=solver)


def stationarity_max(loss, w, feature_stats=None):
    """The largest entry of what the stopping rule tests, at ``w`` (user coordinates)."""
    if feature_stats is None:
        feature_stats = feature_mean_scale(loss.data, loss.fit_intercept)
    problem = conditioned_problem(loss, feature_stats)
    theta = problem.to_conditioned(w)
    _, grad = problem.loss_gradient(theta)
    return float(np.max(np.abs(problem.stationarity(theta, grad)), initial=0.0))


def minimize_loss(
    loss,
    w0,
    *,
    solver="auto",
    tol=1e-6,
    max_iter=100,
    verbose=0,
    feature_stats=None,
    preconditioner=None,
    keep_hessian=False,
    on_iterate=None,
):
    """Minimise ``loss`` from ``w0`` and return a :class:`SolverResult`.

    Parameters
    ----------
    loss : MultinomialLoss
        The objective, normalised (``MultinomialLoss.from_data(...,
        normalize=True)``).
    w0 : ndarray of shape (loss.n_params,)
        Starting point in user coordinates.
    solver : {"auto", "lbfgs", "newton-cg", "newton-cholesky"}
        ``"lbfgs"``: L-BFGS in the compact representation (``_lbfgs``), or
        ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` under bounds.
        ``"newton-cg"``: the trust-region Newton-CG method of
        ``scipy.optimize.minimize(method="trust-ncg")`` with the closed-form
        Hessian-vector product.
        ``"newton-cholesky"``: Newton's method whose steps are solved by
        conjugate gradients on the exact Hessian-vector product,
        preconditioned by a Cholesky factor of the full Hessian (see
        ``_newton_cholesky``).
        ``"auto"``: :func:`resolve_solver`.
    tol : float
        Gradient tolerance (see the module docstring; capped by
        :func:`stopping_tol`).
    max_iter : int
        Largest number of outer iterations.
    verbose : int
        When positive, print the objective and gradient size per iteration.
    feature_stats : tuple of ndarray, optional
        ``feature_mean_scale(loss.data, loss.fit_intercept)`` when the caller
        already has it (the ``feature_stats`` of an earlier result on the same
        data: a regularisation path); computed otherwise, after the solver is
        resolved and its memory checked.
    preconditioner : object, optional
        The ``preconditioner`` of an earlier result on the same data (a
        regularisation path): newton-cholesky starts from its Hessian with
        this loss's penalty instead of forming a new one.
    keep_hessian : bool
        Keep newton-cholesky's Hessian in the result's ``preconditioner``
        for that reuse (4 bytes per entry on top of the factor's 4).
    on_iterate : callable, optional
        Called after each outer iteration of any solver with one argument,
        a function that returns the iterate in user coordinates (so that a
        hook that does not look costs nothing). If it returns True the run
        stops there: the result is that iterate, unconverged unless it meets
        ``tol``, with ``reason="callback"``.
    """
    solver = resolve_solver(solver, loss)
    with blas_thread_limit(loss.data):
        if feature_stats is None:
            feature_stats = feature_mean_scale(loss.data, loss.fit_intercept)
        free = loss.penalty.free_features(loss.data.n_features)
        if free.any():
            check_representable(feature_stats[1], loss.data.dtype, free)
        problem = conditioned_problem(loss, feature_stats, solver)
        settings = dict(
            tol=stopping_tol(loss.penalty, tol),
            verbose=verbose,
            preconditioner=preconditioner,
            keep_hessian=keep_hessian,
            on_iterate=on_iterate,
        )
        try:
            return _run(solver, problem, w0, feature_stats, max_iter=max_iter, **settings)
        except ProximalStalled as stalled:
            # The L1 norm's active sets kept changing (a budget of
            # factorisations ran out): L-BFGS-B on the split goes on from
            # where proximal Newton got to.
            if verbose:
                print(
                    f"proximal Newton's active sets kept changing after {stalled.n_iter} "
                    "iterations: L-BFGS-B on the split goes on from there",
                    flush=True,
                )
            w = problem.to_original(stalled.x)
            split = conditioned_problem(loss, feature_stats, "lbfgs")
            left = max_iter - stalled.n_iter
            result = _run("lbfgs", split, w, feature_stats, max_iter=left, **settings)
            result.n_iter += stalled.n_iter
            result.handed_over = stalled.n_iter
            return result


def _run(
    solver,
    problem,
    w0,
    feature_stats,
    *,
    tol,
    max_iter,
    verbose,
    preconditioner,
    keep_hessian,
    on_iterate=None,
):
    """Run one solver on the conditioned ``problem`` and judge how it ended (module docstring)."""
    run = SOLVER_RUNS.get(solver) or PENALTY_SOLVER_RUNS[solver]
    tracer = Tracer(problem, verbose, on_iterate)
    theta0 = problem.to_conditioned(w0)
    # A line search's trial points may overflow; they are then rejected (inf
    # and NaN compare false). np.errstate is per thread, where a warnings
    # filter is process-wide and would swallow other threads' warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            res = run(
                tracer, theta0, tol, max_iter, previous=preconditioner, keep_hessian=keep_hessian
            )
            theta, n_iter, message = res.x, int(res.nit), str(res.message)
            runaway = stopped = False
        except InnerSolveRunaway:
            theta = theta0 if tracer.accepted is None else tracer.accepted
            n_iter, message, runaway = tracer.iteration, "inner CG solve did not terminate", True
            stopped = False
        except StopRequested:
            # the model is the iterate the hook saw, unpolished
            theta, n_iter, message = tracer.accepted, tracer.iteration, "a callback asked to stop"
            runaway, stopped = False, True
    f, grad = tracer.evaluate(theta)
    polished = theta if stopped else problem.polish(theta, f, grad)
    if polished is not theta:
        theta = polished
        _, grad = problem.loss_gradient(theta)
    grad_max = float(np.max(np.abs(problem.stationarity(theta, grad)), initial=0.0))
    if grad_max <= tol:
        converged, reason = True, ""
    elif stopped:
        converged, reason = False, "callback"
    elif runaway:
        converged, reason = False, "inner_solve"
    elif n_iter >= max_iter:
        converged, reason = False, "max_iter"
    else:
        # The optimiser gave up before max_iter: line search failure, no
        # decrease (L-BFGS-B with ftol=0), or a trust-region model predicting
        # no decrease (trust-ncg status 2). Precision, not effort, ran out.
        converged = grad_max <= max(tol, PRECISION_GTOL)
        reason = "" if converged else "precision"
    return SolverResult(
        w=problem.to_original(theta),
        n_iter=n_iter,
        converged=converged,
        reason=reason,
        message=message,
        grad_max=grad_max,
        solver=solver,
        preconditioner=tracer.preconditioner,
        feature_stats=feature_stats,
        projected=problem.bounds is not None,
        tol=tol,
    )
