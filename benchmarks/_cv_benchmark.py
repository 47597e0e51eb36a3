"""Cross-validated choice of C: MultinomialLogitClassifierCV against LogisticRegressionCV.

What is measured
----------------
The standardised 8x8 digits (all 1 797 rows, ``StandardScaler``), 5 folds
(``StratifiedKFold(5)``, the same folds for both), 8 values of C
(``np.logspace(-4, 4, 8)``), scoring ``neg_log_loss``, refit on all rows.

Accuracy is measured against the exact answer of this cross-validation: the
C it chooses and the probabilities of the refitted model on all rows. Both
come from ``MultinomialLogitClassifierCV(tol=1e-10)``; in full mode
``LogisticRegressionCV(solver="newton-cholesky", tol=1e-10)`` is run too and
its distance to that reference is reported. For every run: the median wall
time of the repeats after one untimed warm-up fit, the chosen C, and
``max |P - P*|`` over all rows and classes.

LogisticRegressionCV runs with lbfgs (its default) and newton-cholesky (not
in ``--quick``), ours with auto (newton-cholesky here) and lbfgs, each over a
ladder of ``tol`` values, plus both classes' defaults. The summary gives the defaults against
each other, and the fastest run of each library whose probabilities are
within ``PROBA_TARGET`` (1e-4) of the exact ones with the same C, as
ratios of times measured in one invocation.
"""

import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifierCV

CS = np.logspace(-4, 4, 8)
N_FOLDS = 5
PROBA_TARGET = 1e-4
# fine near the accuracy target, so that neither library is judged at a tol
# just short of it
TOLS = (1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)
QUICK_TOLS = (1e-4, 1e-6)
MAX_ITER = 10_000
REFERENCE_TOL = 1e-10


def _lrcv(**params):
    def make():
        extra = {}
        if "use_legacy_attributes" in LogisticRegressionCV().get_params():
            extra["use_legacy_attributes"] = False
        return LogisticRegressionCV(scoring="neg_log_loss", **extra, **params)

    return make


def _ours(**params):
    return lambda: MultinomialLogitClassifierCV(**params)


def _specs(tols, quick):
    specs = [("sklearn", "defaults", None, _lrcv(Cs=CS))]
    specs += [("skmultilogit", "defaults", None, _ours(Cs=CS))]
    # LogisticRegressionCV's newton-cholesky takes 5-8 s here: not in --quick
    lr_solvers = ("lbfgs",) if quick else ("lbfgs", "newton-cholesky")
    for tol in tols:
        for solver in lr_solvers:
            specs.append(
                ("sklearn", solver, tol, _lrcv(Cs=CS, solver=solver, tol=tol, max_iter=MAX_ITER))
            )
        for solver in ("auto", "lbfgs"):
            specs.append(
                ("skmultilogit", solver, tol, _ours(Cs=CS, solver=solver, tol=tol, max_iter=1000))
            )
    return specs


def n_runs(quick):
    """How many runs :func:`run_cv_benchmark` times (for a progress bar)."""
    return len(_specs(QUICK_TOLS if quick else TOLS, quick))


def _fit(make, X, y, folds):
    model = make().set_params(cv=folds)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV's transitions
        start = time.perf_counter()
        model.fit(X, y)
        elapsed = time.perf_counter() - start
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, elapsed, warned


def chosen_C(model):
    return float(np.ravel(model.C_)[0])


def run_cv_benchmark(quick, repeats, progress):
    """Time every spec; returns a dict with the reference, the rows and the summary."""
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    folds = list(StratifiedKFold(N_FOLDS).split(X, y))
    reference, _, _ = _fit(
        _ours(Cs=CS, tol=REFERENCE_TOL, max_iter=1000, solver="newton-cholesky"), X, y, folds
    )
    proba_star = reference.predict_proba(X)
    result = {
        "problem": f"standardised digits {X.shape[0]} x {X.shape[1]}, {N_FOLDS} folds, "
        f"{CS.size} values of C, scoring neg_log_loss",
        "C_star": chosen_C(reference),
    }
    if not quick:
        check, _, _ = _fit(
            _lrcv(Cs=CS, solver="newton-cholesky", tol=REFERENCE_TOL, max_iter=MAX_ITER),
            X,
            y,
            folds,
        )
        result["sklearn_reference_C"] = chosen_C(check)
        result["sklearn_reference_max_abs_dP"] = float(
            np.abs(check.predict_proba(X) - proba_star).max()
        )
    rows = []
    for library, solver, tol, make in _specs(QUICK_TOLS if quick else TOLS, quick):
        progress(f"[cv] {library} {solver} tol={tol}")
        model, _, warned = _fit(make, X, y, folds)  # warm-up
        times = [_fit(make, X, y, folds)[1] for _ in range(repeats)]
        rows.append(
            {
                "library": library,
                "solver": solver,
                "tol": tol,
                "seconds": float(np.median(times)),
                "C": chosen_C(model),
                "same_C": bool(np.isclose(chosen_C(model), result["C_star"], rtol=1e-12)),
                "max_abs_dP": float(np.abs(model.predict_proba(X) - proba_star).max()),
                "warned": warned,
            }
        )
    result["rows"] = rows
    result["summary"] = _summary(rows)
    return result


def _summary(rows):
    def pick(library, accurate):
        candidates = [
            r
            for r in rows
            if r["library"] == library
            and (not accurate or (r["same_C"] and r["max_abs_dP"] <= PROBA_TARGET))
        ]
        if accurate:
            return min(candidates, key=lambda r: r["seconds"], default=None)
        return next(r for r in candidates if r["solver"] == "defaults")

    summary = {}
    for name, accurate in (("defaults", False), (f"max|dP| <= {PROBA_TARGET:g}", True)):
        ours, theirs = pick("skmultilogit", accurate), pick("sklearn", accurate)
        ratio = None if ours is None or theirs is None else ours["seconds"] / theirs["seconds"]
        summary[name] = {"skmultilogit": ours, "sklearn": theirs, "ratio": ratio}
    return summary


def _describe(row):
    if row is None:
        return "none reached it"
    setting = row["solver"] if row["tol"] is None else f"{row['solver']} tol={row['tol']:g}"
    return f"{setting}: {row['seconds']:.3f} s, max abs dP {row['max_abs_dP']:.1e}"


def cv_report(result):
    """The CV benchmark as markdown."""
    out = [f"Cross-validated choice of C ({result['problem']}); exact C = {result['C_star']:.4g}."]
    if "sklearn_reference_C" in result:
        out.append(
            "LogisticRegressionCV newton-cholesky at tol=1e-10 chooses C = "
            f"{result['sklearn_reference_C']:.4g}, probabilities within "
            f"{result['sklearn_reference_max_abs_dP']:.1e} of the reference."
        )
    out += [
        "",
        "| library | solver | tol | time (s) | C | same C | max abs dP | warned |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        tol = "default" if r["tol"] is None else f"{r['tol']:g}"
        out.append(
            f"| {r['library']} | {r['solver']} | {tol} | {r['seconds']:.3f} | {r['C']:.4g} | "
            f"{'yes' if r['same_C'] else 'no'} | {r['max_abs_dP']:.1e} | "
            f"{'yes' if r['warned'] else ''} |"
        )
    out += ["", "| comparison | skmultilogit | sklearn | ours/LR |", "| --- | --- | --- | --- |"]
    for name, entry in result["summary"].items():
        ratio = "n/a" if entry["ratio"] is None else f"{entry['ratio']:.2f}"
        out.append(
            f"| {name} | {_describe(entry['skmultilogit'])} | {_describe(entry['sklearn'])} "
            f"| {ratio} |"
        )
    return "\n".join(out)
