"""newton-cholesky where every pass over the data is a round of communication (a cluster).

The same Newton method as ``_newton_cholesky``, but with no conjugate-gradient
solve: there each Hessian-vector product would cost a round. See
:class:`NewtonInRounds`.
"""

import numpy as np
from scipy.optimize import OptimizeResult

from ._newton_cholesky import (
    OPTIMUM_GAP,
    POLISH_BELOW,
    POLISH_GAIN,
    goes_on_past_tol,
    objective_rounding,
)
from ._preconditioners import Preconditioner, hessian_budget
from ._threads import product_size

# A step with the current Hessian factor that shrinks the largest gradient
# entry less than this many times asks for a fresh Hessian at the next
# evaluation.
REBUILD_GAIN = 10.0
# A Newton step far from the optimum can overshoot a million-fold (30 000 x
# 40, K = 50, C = 1, badly scaled columns: its trial's objective was 5.7e7
# against 3.9): rare classes leave directions of little curvature. Halving
# such a step keeps its direction, and taking the Hessian at the overshoot
# (where the softmax saturates and the curvature vanishes) made the next step
# overshoot again: that fit stalled at a gradient of 0.12 for 100 iterations.
# The steps are Levenberg-Marquardt's instead, solved with H + mu c I (c the
# data term's mean curvature per parameter, mu relative): a trial that raises
# the objective is retried with DAMPING_GROWTH-fold more damping (at least
# MIN_DAMPING); after a step whose decrease is below LOW_RATIO of what the
# quadratic model predicts it grows LOW_RATIO_GROWTH-fold, after one above
# HIGH_RATIO (or within the objective's rounding, where the ratio is noise)
# it shrinks HIGH_RATIO_SHRINK-fold, and below ZERO_DAMPING_BELOW it is zero
# (Newton's own steps, quadratic convergence, near the optimum). That is
# MIN_DAMPING / 30, not MIN_DAMPING: with MIN_DAMPING itself one good damped
# step reset it to zero and the next full step overshot again, a wasted
# round per iteration (30 x 3, K = 17, C = 1000: 518 iterations and 1004
# rounds; 46 and 54 with the lower threshold). A damping change costs a
# factorisation on the client, no round. On three
# such problems (3000 x 20 K = 30, 5000 x 20 K = 50, 8000 x 30 K = 50) these
# constants took 27, 32 and 41 rounds to tol 1e-4; overshoot growth 4 or 3,
# or shrinking by 2 or 1.5, were no better on all three. MAX_TRIALS bounds
# the trials of one step.
MIN_DAMPING = 1e-3
ZERO_DAMPING_BELOW = MIN_DAMPING / 30
MAX_DAMPING = 1e6
DAMPING_GROWTH = 10.0
LOW_RATIO = 0.25
HIGH_RATIO = 0.75
LOW_RATIO_GROWTH = 2.0
HIGH_RATIO_SHRINK = 3.0
MAX_TRIALS = 40
# Its polish (small problems): at most this many steps, a round each (one
# with the last sampled Hessian, two with the full one: from a gradient of
# 1e-6 or 1e-8 they reached 1e-16 to 1e-17, and a fourth gained nothing), with
# one Hessian on all the rows, in float64 when its 24 bytes an entry (the
# packed upper triangle arriving, the matrix and its factor's copy; the
# sampled Hessian is released first) fit in 64 MiB (about 1650 parameters),
# otherwise in float32.
ROUNDS_POLISH_STEPS = 3
# Going on past tol (small problems, NewtonInRounds.solve) ends where this
# many steps have not halved the undamped Newton decrement.
ROUNDS_STALLED_STEPS = 10
ROUNDS_POLISH_BYTES_PER_ENTRY = 24
ROUNDS_POLISH_FLOAT64_MAX_BYTES = 64 * 2**20
# Its Hessians are drawn from at least this many rows per parameter, per
# share of the rows a feature fills (density): sampled Hessians make its steps.
ROUNDS_HESSIAN_ROWS_PER_PARAM = 20


def absolute_damping(damping, data_hessian):
    """``damping`` (relative) times the data term's mean curvature per parameter."""
    return damping * float(np.mean(np.diag(data_hessian))) if damping else 0.0


class NewtonInRounds:
    """newton-cholesky where every pass over the data is a round of communication (a cluster).

    There a conjugate-gradient solve would cost a round per Hessian product.
    Instead each evaluation returns the objective, the gradient and, when
    asked, the Hessian (on a row sample drawn on the workers, as in memory)
    in one round, and the Newton step is solved with its Cholesky factor on
    the client. The factor is reused while a step with it still shrinks the
    largest gradient entry ``REBUILD_GAIN``-fold (close to the optimum the
    Hessian changes little, and the steps converge fast with an older one);
    otherwise the next evaluation brings a fresh one. Far from the optimum
    the steps are damped (Levenberg-Marquardt: ``H + mu c I``, see
    ``MIN_DAMPING``), where a full Newton step would overshoot. A
    backtracking line search (Armijo, or a gradient that shrinks within the
    objective's rounding) makes each step a descent; a trial that raises the
    objective is retried with more damping instead of a shorter step. A unit
    step costs one round: from zero coefficients ten or so rounds reach a
    gradient of 1e-8 on well-scaled data (27 to 41 to 1e-4 on the badly
    scaled problems with many rare classes named at ``MIN_DAMPING``). Small
    problems are then polished (:meth:`polish`); with an L2 penalty and
    float64 X they first go on past ``tol`` while the undamped Newton
    decrement with the current factor says the objective is more than
    ``OPTIMUM_GAP`` of itself above its minimum (a weak penalty: see
    ``NewtonCholesky.polish``), undamped at first and each step's Hessian on
    all the rows, until ``ROUNDS_STALLED_STEPS`` steps have not halved that
    decrement; they end at the last iterate that met ``tol`` if
    ``max_iter`` runs out on one that does not.
    """

    def __init__(self, tracer, tol, max_iter):
        self.tracer = tracer
        self.problem = tracer.problem
        loss = self.problem.loss
        self.tol = tol
        self.max_iter = max_iter
        # The Hessian makes the steps here, not only their preconditioner: on
        # 6 000 x 40 sparse rows (10 % filled, 123 parameters) a sample of 3
        # rows per parameter took 62 steps, 20 took 28, all rows 13. A
        # feature's entries are only in a share (density) of the rows.
        data = loss.data
        density = data.stored_entries / max(1, data.n_samples * data.n_features)
        self.budget = max(
            hessian_budget(loss), ROUNDS_HESSIAN_ROWS_PER_PARAM * loss.n_params / density
        )
        self.null_weight = 1.0 / loss.n_classes if loss.fit_intercept else 0.0
        self.rounding = objective_rounding(loss.data)
        self.builds = 0

    def evaluate(self, theta, with_hessian, *, all_rows=False, dtype=np.float32):
        """``(f, grad, data Hessian or None)`` at ``theta``: one round.

        The Hessian on a sample of about ``self.budget`` rows, or on
        ``all_rows``; in ``dtype``.
        """
        if not with_hessian:
            return (*self.tracer.loss_gradient(theta), None)
        f, grad, hessian = self.tracer.loss_gradient_hessian(
            theta, budget=np.inf if all_rows else self.budget, seed=self.builds, dtype=dtype
        )
        self.builds += 1
        return f, grad, hessian

    def factorise(self, data_hessian, damping=0.0):
        """The factor of ``data_hessian``, its penalty and ``damping`` (relative: MIN_DAMPING)."""
        return Preconditioner(
            self.problem,
            None,
            None,
            None,
            self.null_weight,
            data_hessian,
            dtype=data_hessian.dtype,
            damping=absolute_damping(damping, data_hessian),
        )

    def grad_max(self, theta, grad):
        """The driver's criterion's measure: the largest (weighted) gradient entry."""
        return np.max(np.abs(self.problem.stationarity(theta, grad)), initial=0.0)

    def solve(self, theta0):
        """Run from ``theta0``; a scipy-style result (``x``, ``nit``, ``message``)."""
        theta = np.array(theta0, dtype=np.float64)
        f, grad, hessian = self.evaluate(theta, True)
        factor = factor_damping = None
        damping = 0.0
        message = "gradient tolerance met"
        n_iter = in_rounding = 0
        fresh = False
        # Small problems with an optimum go on past tol while the decrement
        # with the current factor says f is far above f* (NewtonCholesky.polish).
        small = product_size(self.problem.loss.data) < POLISH_BELOW
        go_on = small and goes_on_past_tol(self.problem.loss)
        met_tol = None  # the last iterate that met tol
        met_before = False
        halved, since_halved = np.inf, 0  # the undamped decrement when it last halved
        while True:
            met = self.grad_max(theta, grad) <= self.tol
            if met:
                met_tol = (theta, f, grad)
                # (a step within f's rounding: the decrement is noise there)
                if not go_on or in_rounding:
                    break
            if n_iter >= self.max_iter:
                if met_tol is None:
                    message = "maximum number of iterations reached"
                break
            if met and not met_before:
                # past tol a full step's trial decides (an overshoot still damps)
                damping, met_before = 0.0, True
            if factor is None or factor_damping != damping:
                factor = None  # one factor held at a time
                factor, factor_damping = self.factorise(hessian, damping), damping
            step, slope, model_curvature = self.direction(factor, grad, hessian, damping)
            if met:
                # Judged on undamped steps (a damped one's decrement is far
                # below Newton's); and ended where the undamped decrement has
                # not halved in ROUNDS_STALLED_STEPS steps: overshoot, damp,
                # undamp, overshoot cycles there ran to max_iter (37 rows,
                # K = 5, C = 3e7), where memory's line search halves the step.
                since_halved += 1
                if not damping:
                    if -0.5 * slope <= OPTIMUM_GAP * abs(f):
                        break
                    if -0.5 * slope <= 0.5 * halved:
                        halved, since_halved = -0.5 * slope, 0
                if since_halved > ROUNDS_STALLED_STEPS:
                    break
            grad_size = np.abs(grad).sum()
            length = 1.0  # of ``step``, by backtracking
            renewed = False  # whether a Hessian came with this step's trials
            for _ in range(MAX_TRIALS):
                candidate = theta + length * step
                # past tol, each step's Hessian on all the rows (as the polish's)
                f_new, grad_new, new_hessian = self.evaluate(
                    candidate,
                    fresh or met,
                    all_rows=met,
                    dtype=self.polish_dtype() if met else np.float32,
                )
                fresh = False  # one fresh Hessian per step is enough
                within_rounding = abs(f_new - f) <= self.rounding * abs(f)
                if f_new <= f + 1e-4 * length * slope or (
                    within_rounding and np.abs(grad_new).sum() < grad_size
                ):
                    break
                overshoot = f_new > f + self.rounding * abs(f)
                if overshoot and damping < MAX_DAMPING and factor is not None:
                    # An overshoot: a more damped step, turned towards the
                    # gradient. The Hessian at the overshoot is dropped: the
                    # softmax is saturated there.
                    new_hessian = None
                    damping = max(DAMPING_GROWTH * damping, MIN_DAMPING)
                    factor = None
                    factor, factor_damping = self.factorise(hessian, damping), damping
                    step, slope, model_curvature = self.direction(factor, grad, hessian, damping)
                    length = 1.0
                else:
                    if new_hessian is not None:
                        # Not an overshoot: by convexity the shorter trials
                        # stay between here and there; its Hessian is the next.
                        hessian, factor, renewed = new_hessian, None, True
                        new_hessian = None
                    length *= 0.5
            else:
                if met_tol is None:
                    message = "line search found no decrease: precision exhausted"
                break
            if within_rounding:
                # the decrease is rounding noise, not a measure of the model:
                # counted as a good step, so noise cannot keep a damping up
                damping = self.next_damping(damping, 1.0)
            else:
                predicted = -length * slope - 0.5 * length**2 * model_curvature
                damping = self.next_damping(damping, (f - f_new) / predicted)
            gain = np.max(np.abs(grad), initial=0.0) / max(
                np.max(np.abs(grad_new), initial=0.0), np.finfo(np.float64).tiny
            )
            theta, f, grad = candidate, f_new, grad_new
            if new_hessian is not None:
                hessian, factor, renewed = new_hessian, None, True
                new_hessian = None
            n_iter += 1
            in_rounding = in_rounding + 1 if within_rounding else 0
            self.tracer.callback(OptimizeResult(x=theta, fun=f))
            fresh = not renewed and gain < REBUILD_GAIN
            if in_rounding >= 5 and self.grad_max(theta, grad) > self.tol:
                if met_tol is None:
                    message = "no decrease beyond rounding for 5 steps: precision exhausted"
                break
        restored = met_tol is not None and self.grad_max(theta, grad) > self.tol
        if restored:
            # a damped step past tol left the gradient above it: back to the
            # last iterate that met tol (its Hessian is not at hand: no polish)
            theta, f, grad = met_tol
        elif small and n_iter < self.max_iter and self.grad_max(theta, grad) <= self.tol:
            if factor is None or factor_damping:
                factor = None
                factor = self.factorise(hessian)
            # the polish's first step; then only the polish's Hessian is held
            step = -factor.solve(grad)
            factor = hessian = None
            theta, f, grad, steps = self.polish(theta, f, grad, step, self.max_iter - n_iter)
            n_iter += steps
        # the final point's evaluation, for the driver (a rejected trial was the last)
        self.tracer.last = (theta.copy(), f, grad)
        return OptimizeResult(x=theta, nit=n_iter, message=message)

    def polish_dtype(self):
        """float64 for Hessians on all rows where they fit ``ROUNDS_POLISH_FLOAT64_MAX_BYTES``."""
        fits = (
            ROUNDS_POLISH_BYTES_PER_ENTRY * self.problem.loss.n_params**2
            <= ROUNDS_POLISH_FLOAT64_MAX_BYTES
        )
        return np.float64 if fits else np.float32

    @staticmethod
    def direction(factor, grad, data_hessian, damping):
        """``(step, slope, model curvature)``: the damped Newton step, or the gradient's.

        The step ``s = -(H + mu c I)^-1 grad`` has slope ``grad . s`` and, in
        the undamped model, curvature ``s^T H s = -slope - mu c |s|^2``:
        along ``t s`` the model predicts a decrease of
        ``-t slope - t^2 / 2 s^T H s``.
        """
        step = -factor.solve(grad)
        slope = grad @ step
        if not slope < 0:
            # (rounding in a float32 factor); the model has no curvature for it
            step = -grad
            return step, -(grad @ grad), 0.0
        curvature = -slope - absolute_damping(damping, data_hessian) * (step @ step)
        return step, slope, max(curvature, 0.0)

    @staticmethod
    def next_damping(damping, ratio):
        """The damping after a step whose decrease was ``ratio`` times the predicted one."""
        if ratio < LOW_RATIO:
            return min(max(LOW_RATIO_GROWTH * damping, MIN_DAMPING), MAX_DAMPING)
        if ratio > HIGH_RATIO:
            damping /= HIGH_RATIO_SHRINK
        return damping if damping >= ZERO_DAMPING_BELOW else 0.0

    def polish(self, theta, f, grad, step, max_steps):
        """Newton steps past ``tol`` on small problems, as NewtonCholesky.polish: a round each.

        The first step, ``step``, is solved with the last sampled float32
        Hessian, undamped; its evaluation brings the Hessian on all the
        rows, in float64 where that fits ``ROUNDS_POLISH_FLOAT64_MAX_BYTES``, and the later
        steps are solved with that one (this close to the optimum the
        Hessian hardly changes). A step is kept if it shrinks the largest
        gradient entry without raising the objective beyond its rounding;
        one made with the full Hessian that gains less than
        ``POLISH_GAIN``-fold finds the gradient at its floor, and the polish
        ends. Sampled float32 Hessians cannot make that judgement: on a
        correlated 40 000 x 12 problem (K=5) their steps gained 10-30-fold,
        and one polish in six ended at a gradient of 4e-10, 1e-6 from the
        optimum in the coefficients; a float32 Hessian on all the rows
        stopped at 1e-12 (4e-9 in the coefficients); the float64 one reaches
        2e-16 (1e-13), in 2-3 rounds (no more than ``max_steps``, what
        ``max_iter`` leaves). It costs one Hessian's bytes per
        worker thread: 11 % of X instead of 8 % for a CV path of 13 fits on
        80 000 x 20, K = 3.
        """
        steps = 0
        dtype = self.polish_dtype()
        factor = None  # of the Hessian on all the rows, after the first step
        for _ in range(min(ROUNDS_POLISH_STEPS, max_steps)):
            if factor is not None:
                step = -factor.solve(grad)
            if not grad @ step < 0:
                break
            candidate = theta + step
            f_new, grad_new, hessian = self.evaluate(
                candidate, factor is None, all_rows=True, dtype=dtype
            )
            gain = np.max(np.abs(grad), initial=0.0) / max(
                np.max(np.abs(grad_new), initial=0.0), np.finfo(np.float64).tiny
            )
            kept = f_new <= f + self.rounding * abs(f) and gain > 1
            if kept:
                theta, f, grad = candidate, f_new, grad_new
                steps += 1
                self.tracer.callback(OptimizeResult(x=theta, fun=f))
            if factor is not None and not (kept and gain >= POLISH_GAIN):
                break  # a step with the full Hessian gained little: the floor
            # (after a rejected step: the Hessian at a point close by)
            if factor is None:
                factor, hessian = self.factorise(hessian), None
        return theta, f, grad, steps
