"""Fitting and predicting on Dask arrays, on a real two-process local cluster."""

import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
import scipy.special
from _helpers import badly_scaled_classification, written_out_objective
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

TIGHT = dict(tol=1e-10, max_iter=1000)


def two_local_workers(**kwargs):
    """Two worker processes of one thread on this machine, no dashboard."""
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        **kwargs,
    )


@pytest.fixture(scope="module")
def client():
    cluster = two_local_workers()
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 8))
    logits = X @ rng.normal(size=(8, 4))
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    sample_weight = rng.uniform(0.2, 3.0, size=len(y))
    return X, y, sample_weight


def as_dask(*arrays, rows=1500):
    return [da.from_array(a, chunks=(rows,) + a.shape[1:]) for a in arrays]


def assert_same_coef(actual, desired, rtol=1e-6):
    scale = np.abs(desired).max()
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="lbfgs"),
        dict(solver="newton-cg"),
        dict(solver="newton-cholesky"),
        dict(solver="auto", class_weight="balanced"),
        dict(solver="lbfgs", class_weight={0: 2.0, 3: 0.5}, C=0.1),
        dict(solver="lbfgs", l1_ratio=0.5, C=0.05),
        dict(solver="lbfgs", fit_intercept=False),
        dict(solver="auto", coef_bounds=(-0.2, 0.3)),
        dict(solver="lbfgs", l1_ratio=0.5, C=0.05, coef_bounds=(0.0, np.inf)),
        dict(l1_ratio=1.0, C=0.02, l1_groups="feature"),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_fit_on_dask_arrays_equals_the_in_memory_fit(client, problem, params, weighted):
    X, y, sample_weight = problem
    sample_weight = sample_weight if weighted else None
    X_dask, y_dask = as_dask(X, y)
    weight_dask = None if sample_weight is None else as_dask(sample_weight)[0]
    on_cluster = MultinomialLogitClassifier(**TIGHT, **params)
    on_cluster.fit(X_dask, y_dask, sample_weight=weight_dask)
    in_memory = MultinomialLogitClassifier(**TIGHT, **params).fit(X, y, sample_weight=sample_weight)
    assert isinstance(on_cluster.coef_, np.ndarray)
    np.testing.assert_array_equal(on_cluster.classes_, in_memory.classes_)
    assert_same_coef(on_cluster.coef_, in_memory.coef_)
    assert_same_coef(on_cluster.intercept_, in_memory.intercept_)


def test_warm_start_and_numpy_labels_and_weights(client, problem):
    X, y, sample_weight = problem
    (X_dask,) = as_dask(X)
    clf = MultinomialLogitClassifier(warm_start=True, **TIGHT)
    clf.fit(X_dask, y, sample_weight=sample_weight)  # y and weights in memory
    first = clf.n_iter_[0]
    clf.fit(X_dask, y, sample_weight=sample_weight)
    assert clf.n_iter_[0] < first
    reference = MultinomialLogitClassifier(**TIGHT).fit(X, y, sample_weight=sample_weight)
    assert_same_coef(clf.coef_, reference.coef_)


def bytes_sent_by_workers(client):
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


def test_data_stay_on_the_workers(client):
    X = da.random.default_rng(1).normal(size=(100_000, 40), chunks=(12_500, 40)).persist()
    y = ((X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)).persist()
    distributed.wait([X, y])
    before = bytes_sent_by_workers(client)
    clf = MultinomialLogitClassifier(solver="lbfgs", tol=1e-8).fit(X, y)
    sent = bytes_sent_by_workers(client) - before
    assert clf.n_iter_[0] > 5
    # Per evaluation the parameters go out and one gradient per worker thread
    # comes back. Once per fit the labels (8 bytes a row, 2.5 % of X here)
    # move to X's blocks where they live elsewhere; here they were made from
    # X, beside it. Measured in 4 fits: 0.23 % of X (0.40 to 0.51 % with a
    # gradient per block).
    assert sent < 0.05 * X.nbytes, (sent, X.nbytes)


def test_a_lazy_X_is_computed_where_it_stays(client):
    # Not persisted, not waited for: the first rounds find blocks that no
    # worker holds yet. Each must be made where the scheduler puts it, not
    # gathered onto one worker (measured: 0.53 times X moved when all such
    # blocks formed one task; 0.3 % now, in 3 fits).
    X = da.random.default_rng(4).normal(size=(200_000, 20), chunks=(25_000, 20))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    before = bytes_sent_by_workers(client)
    MultinomialLogitClassifier(solver="lbfgs").fit(X, y)
    sent = bytes_sent_by_workers(client) - before
    assert sent < 0.05 * X.nbytes, (sent, X.nbytes)


def test_lazy_prediction_equals_numpy_prediction(client, problem):
    X, y, _ = problem
    clf = MultinomialLogitClassifier().fit(X, y)
    (X_dask,) = as_dask(X)
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        lazy = getattr(clf, method)(X_dask)
        assert isinstance(lazy, da.Array), method
        np.testing.assert_allclose(lazy.compute(), getattr(clf, method)(X), rtol=1e-12)
    binary = MultinomialLogitClassifier().fit(X, y % 2)
    lazy = binary.decision_function(X_dask)
    assert lazy.ndim == 1
    np.testing.assert_allclose(lazy.compute(), binary.decision_function(X), rtol=1e-12)


def test_fitted_on_the_cluster_is_an_ordinary_estimator(client, problem):
    X, y, _ = problem
    X_dask, y_dask = as_dask(X, y)
    clf = MultinomialLogitClassifier().fit(X_dask, y_dask)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert clf.n_features_in_ == 8


def test_grid_search_with_the_dask_joblib_backend(client, problem):
    X, y, _ = problem
    grid = {"C": [0.01, 1.0], "solver": ["lbfgs", "newton-cholesky"]}
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    serial = GridSearchCV(MultinomialLogitClassifier(tol=1e-8), grid, cv=folds).fit(X, y)
    with joblib.parallel_backend("dask"):
        on_cluster = GridSearchCV(
            MultinomialLogitClassifier(tol=1e-8), grid, cv=folds, n_jobs=-1
        ).fit(X, y)
    assert on_cluster.best_params_ == serial.best_params_
    np.testing.assert_allclose(
        on_cluster.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )


def test_bad_dask_input(client, problem):
    X, y, _ = problem
    X_dask, y_dask = as_dask(X, y)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        MultinomialLogitClassifier().fit(X_dask[X_dask[:, 0] > 0], y_dask[X_dask[:, 0] > 0])
    with pytest.raises(ValueError, match=r"y must be 1-d with one entry per row of X \(6000\)"):
        MultinomialLogitClassifier().fit(X_dask, y_dask[:100])
    with pytest.raises(ValueError, match="at least 2 classes"):
        MultinomialLogitClassifier().fit(X_dask, da.zeros(6000, chunks=1500))
    with pytest.raises(ValueError, match="sample_weight must be finite, non-negative"):
        MultinomialLogitClassifier().fit(X_dask, y_dask, sample_weight=-np.ones(6000))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        MultinomialLogitClassifier().fit(X_dask, np.random.default_rng(0).normal(size=6000))
    with pytest.raises(ValueError, match="only one class has positive weight"):
        MultinomialLogitClassifier().fit(X_dask, y_dask, sample_weight=(y == 0).astype(float))
    # each block's class sums overflowing, or only their sum over the blocks
    for weight in (1e306, 1e305):
        with pytest.raises(ValueError, match="or their sum overflow float64"):
            MultinomialLogitClassifier().fit(X_dask, y_dask, sample_weight=np.full(6000, weight))
    with pytest.raises(ValueError, match=r"C \* sum\(sample_weight\) = .* is too small"):
        MultinomialLogitClassifier(C=1e-310).fit(X_dask, y_dask, sample_weight=np.full(6000, 1e-10))
    fitted = MultinomialLogitClassifier().fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        fitted.predict(X_dask[:, :3])
    # empty, as check_array says it of numpy input (a 0-feature model before)
    for solver in ("auto", "lbfgs"):
        for X_empty, y_empty, what in [
            (X_dask[:0], y_dask[:0], "0 sample"),
            (X_dask[:, :0], y_dask, "0 feature"),
        ]:
            with pytest.raises(ValueError, match=f"Found array with {what}"):
                MultinomialLogitClassifier(solver=solver).fit(X_empty, y_empty)
            with pytest.raises(ValueError, match=f"Found array with {what}"):
                MultinomialLogitClassifier(solver=solver).fit(X_empty.compute(), y_empty.compute())


def test_prediction_runs_on_blocks_of_unknown_sizes(client, problem):
    # rows selected by a mask: their number is known only once computed
    X, y, _ = problem
    fitted = MultinomialLogitClassifier().fit(X, y)
    X_dask = as_dask(X)[0]
    mask = X[:, 0] > 0.3
    selected = X_dask[X_dask[:, 0] > 0.3]
    assert np.isnan(selected.shape[0])
    np.testing.assert_allclose(
        fitted.predict_proba(selected).compute(), fitted.predict_proba(X[mask]), rtol=1e-12
    )
    np.testing.assert_array_equal(fitted.predict(selected).compute(), fitted.predict(X[mask]))


def test_empty_blocks_scalar_weights_and_prediction_dtypes(client, problem):
    pd = pytest.importorskip("pandas")
    X, y, _ = problem
    X_dask, y_dask = as_dask(X, y)
    index = da.arange(6000, chunks=1500)
    keep = (index < 1500) | (index >= 3000)  # the second block loses every row
    X_kept, y_kept = X_dask[keep], y_dask[keep]
    X_kept.compute_chunk_sizes()
    y_kept.compute_chunk_sizes()
    assert 0 in X_kept.chunks[0]
    clf = MultinomialLogitClassifier(**TIGHT).fit(X_kept, y_kept, sample_weight=2.0)
    rows = np.r_[0:1500, 3000:6000]
    reference = MultinomialLogitClassifier(**TIGHT).fit(X[rows], y[rows], sample_weight=2.0)
    assert_same_coef(clf.coef_, reference.coef_)
    binary = MultinomialLogitClassifier().fit(X, y % 2)
    for data in (X_dask.astype(np.float32), X_dask.round().astype(np.int64)):
        lazy = binary.decision_function(data)
        assert lazy.dtype == lazy.compute().dtype == binary.decision_function(data.compute()).dtype
    named = MultinomialLogitClassifier().fit(pd.DataFrame(X, columns=list("abcdefgh")), y)
    named.fit(X_dask, y_dask)
    assert not hasattr(named, "feature_names_in_")


def test_nothing_imports_dask_without_dask_input():
    code = (
        "import sys, numpy as np\n"
        "from skmultilogit import MultinomialLogitClassifier\n"
        "X = np.random.default_rng(0).normal(size=(50, 3)); y = np.arange(50) % 3\n"
        "MultinomialLogitClassifier().fit(X, y).predict_proba(X)\n"
        "assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules), 'dask'\n"
        "assert 'distributed' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_feature_statistics_equal_the_in_memory_ones(client):
    # constant columns (over the weighted rows), zero weights, a large offset
    from skmultilogit._backends import NumpyBackend
    from skmultilogit._backends._dask import DaskBackend
    from skmultilogit._dask import _blocks_of
    from skmultilogit._statistics import feature_mean_scale

    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 5)) * [1.0, 1e-3, 1e4, 1.0, 1.0] + [0.0, 0.0, 1e6, 0.0, 0.0]
    X[:, 3] = 2.5
    X[:, 4] = 0.0
    X[:7, 4] = 9.0  # only on rows of zero weight
    weight = rng.uniform(0.5, 2.0, size=3000)
    weight[:7] = 0.0
    pair = da.from_array(np.column_stack([np.zeros(3000), weight]), chunks=(700, 2))
    blocks = _blocks_of(client.persist([da.from_array(X, chunks=(700, 5)), pair]), client)
    on_dask = DaskBackend(
        blocks, 2, n_samples=3000, n_features=5, dtype=X.dtype, sparse=False,
        stored_entries=X.size, total_weight=weight.sum(),
    )  # fmt: skip
    for fit_intercept in (True, False):
        expected = feature_mean_scale(NumpyBackend(X, np.zeros(3000), 2, weight), fit_intercept)
        actual = feature_mean_scale(on_dask, fit_intercept)
        for got, want in zip(actual, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)


# -- Newton's method in few rounds --------------------------------------------


class CountGraphs(distributed.diagnostics.plugin.SchedulerPlugin):
    """Counts the graphs the scheduler receives: the rounds of communication."""

    name = "skmultilogit-count-graphs"

    def __init__(self):
        self.count = 0

    def update_graph(self, scheduler, **kwargs):
        self.count += 1


def _plugin_names(dask_scheduler):
    return list(dask_scheduler.plugins)


def _graph_count(dask_scheduler):
    return dask_scheduler.plugins[CountGraphs.name].count


def rounds_of(client, function):
    """``function()``'s value and how many graphs it submitted."""
    if CountGraphs.name not in client.run_on_scheduler(_plugin_names):
        client.register_plugin(CountGraphs())
    before = client.run_on_scheduler(_graph_count)
    value = function()
    return value, client.run_on_scheduler(_graph_count) - before


@pytest.fixture(scope="module")
def dense_problem(client):
    # correlated features of spreads from 0.2 to 8: hard for L-BFGS (680
    # iterations, 737 rounds to tol=1e-8), not for Newton's method
    rng = np.random.default_rng(7)
    mixing = (np.eye(12) + 0.9 * rng.normal(size=(12, 12))) * np.geomspace(0.2, 8, 12)
    X = da.random.default_rng(7).normal(size=(40_000, 12), chunks=(5_000, 12)) @ mixing
    coef = rng.normal(size=(5, 12)) / 2
    noise = da.random.default_rng(9).gumbel(size=(40_000, 5), chunks=(5_000, 5))
    y = da.argmax(X @ coef.T + noise, axis=1)
    X, y = client.persist([X, y])
    distributed.wait([X, y])
    return X, y


def written_out_gradient(X, y, coef, intercept, C=1.0):
    """The gradient of mean cross-entropy + ||coef||^2 / (2 C n), from scipy's softmax."""
    n = len(y)
    residual = scipy.special.softmax(X @ coef.T + intercept, axis=1)
    residual[np.arange(n), y] -= 1.0
    return residual.T @ X / n + coef / (C * n), residual.mean(axis=0)


def test_a_default_fit_to_1e_8_takes_few_rounds_and_reaches_the_optimum(client, dense_problem):
    # Newton's method with the Hessian summed on the workers: each outer step
    # is one round (measured: 18 steps, polish included, 24 rounds with the
    # setup's persist, checks, labels and feature statistics). L-BFGS took
    # 1 187 rounds (1 111 iterations). The problem is small, so the polish goes on to float64's
    # floor: a largest gradient entry of 3e-16 here (max |x| = 85), where
    # steps with sampled float32 Hessians stopped at 3e-13 to 1e-10 (and
    # 1e-6 from the optimum in the coefficients), depending on which worker
    # held which block.
    X, y = dense_problem
    clf, rounds = rounds_of(client, lambda: MultinomialLogitClassifier(tol=1e-8).fit(X, y))
    assert rounds <= 30, rounds
    X_memory, y_memory = client.compute([X, y], sync=True)
    grad_coef, grad_intercept = written_out_gradient(X_memory, y_memory, clf.coef_, clf.intercept_)
    assert np.abs(grad_coef).max() <= 1e-13
    assert np.abs(grad_intercept).max() <= 1e-13
    # newton-cg at tol=1e-12 is 2e-8 from the optimum here
    optimum = MultinomialLogitClassifier(solver="newton-cg", tol=1e-12).fit(X_memory, y_memory)
    assert_same_coef(clf.coef_, optimum.coef_, rtol=1e-7)
    assert_same_coef(clf.intercept_, optimum.intercept_, rtol=1e-7)


def test_a_weakly_penalised_small_fit_on_the_cluster_ends_at_the_optimum(client):
    # As in memory (tests/test_solvers.py): the raw digits at C = 1e4 met the
    # default tol 0.1 of the optimal objective above it (0.27 with other
    # blocks), and the polish ended there; now it goes on with undamped steps
    # on Hessians of all the rows. The reference: LogisticRegression's
    # newton-cholesky.
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    C = 1e4
    X_dask, y_dask = as_dask(X, y, rows=450)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        on_cluster = MultinomialLogitClassifier(C=C).fit(X_dask, y_dask)
    reference = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y)
    best = written_out_objective(X, y, C, reference.coef_, reference.intercept_)
    ours = written_out_objective(X, y, C, on_cluster.coef_, on_cluster.intercept_)
    assert ours - best <= 1e-9 * best


def test_steps_past_tol_on_the_cluster_never_end_a_fit_above_it(client):
    # 40 rows, 30 features scaled by e^-4..e^4 and shifted, C = 1e6: tol is
    # first met far above the optimum (at the 25th iteration, 3.9x it, on one
    # machine; at the 29th, 1.8x, on another: the trajectory follows BLAS's
    # rounding), and the steps that go on leave the gradient above tol at
    # some of the next ones. A max_iter that ends the fit there ends it at
    # the last iterate that met tol, without a warning.
    X, y = badly_scaled_classification(
        42, 4, 10, n_samples=40, n_features=30, n_classes=3, class_sep=0.5, flip_y=0.1
    )
    C = 1e6
    X_dask, y_dask = as_dask(X, y, rows=20)

    def fit(max_iter):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf = MultinomialLogitClassifier(C=C, tol=1e-6, max_iter=max_iter)
            clf.fit(X_dask, y_dask)
        warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return warned, written_out_objective(X, y, C, clf.coef_, clf.intercept_)

    # the first iteration that meets tol: the first max_iter without a warning
    first = next(max_iter for max_iter in range(20, 40) if not fit(max_iter)[0])
    objectives = []
    for max_iter in (first, first + 3, first + 6, first + 15):
        warned, objective = fit(max_iter)
        assert not warned, max_iter
        objectives.append(objective)
    assert np.all(np.diff(objectives) <= 1e-12 * objectives[0]), objectives
    # the steps past tol gained: the scenario is the one the test is about
    assert objectives[-1] < 0.75 * objectives[0], objectives


def test_going_on_past_tol_on_the_cluster_ends_where_it_stops_gaining(client):
    # 37 rows, K = 5, C = 3.3e7 (parameters as a random sweep drew them):
    # past tol an undamped step overshot, the damping rose, decayed to zero
    # in four steps and the next undamped step overshot again; each cycle
    # lowered f by about 2e-8 of itself, above its rounding, so the fit went
    # on until max_iter (300 of 300), without a warning. It now ends where
    # ten steps have not halved the undamped decrement (34 iterations).
    X, y = badly_scaled_classification(
        466,
        3.6433919926182288,
        6.198525135583106,
        n_samples=37,
        n_features=8,
        n_classes=5,
        class_sep=0.5,
        flip_y=0.2909402780490898,
    )
    X_dask, y_dask = as_dask(X, y, rows=22)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier(
            C=33208805.839139648, tol=2.7817070758170475e-06, max_iter=300
        )
        clf.fit(X_dask, y_dask)
    assert clf.n_iter_[0] < 60


def test_newton_on_the_cluster_converges_where_full_steps_overshoot(client):
    # Many classes, some rare, and badly scaled columns: from zero the full
    # Newton step overshoots about a million-fold. Halving it (and taking the
    # Hessian at the overshoot, where the softmax saturates) stalled at a
    # largest gradient entry of 0.2 for 40 of 40 iterations, and on this
    # cluster for 100 of 100; damped steps converge in 21 (27 rounds,
    # measured in memory with the same solver).
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 20))
    X[:, :5] *= 10
    X[:, 5:10] += 3
    coef = rng.standard_normal((30, 20)) * 0.3
    y = (X @ coef.T + rng.gumbel(size=(3000, 30))).argmax(axis=1)
    X_dask, y_dask = as_dask(X, y, rows=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier(solver="newton-cholesky").fit(X_dask, y_dask)
    labels = np.searchsorted(clf.classes_, y)
    grad_coef, grad_intercept = written_out_gradient(X, labels, clf.coef_, clf.intercept_)
    assert max(np.abs(grad_coef).max(), np.abs(grad_intercept).max()) <= 1e-6
    optimum = MultinomialLogitClassifier(solver="newton-cg", tol=1e-12).fit(X, y)
    assert_same_coef(clf.coef_, optimum.coef_, rtol=1e-5)


@pytest.mark.parametrize("zero_coef", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_one_round_gives_what_the_numpy_backend_gives(
    client, dense_problem, zero_coef, fit_intercept
):
    # the Hessian and the fused loss, gradient and (float32) Hessian of a
    # round against the in-memory backend's float64 evaluations. The
    # workers send only the class pairs above the diagonal, or at zero
    # coefficients the Gram matrix, and the client rebuilds the rest.
    from skmultilogit._backends import NumpyBackend
    from skmultilogit._dask import prepare_dask_data

    X, y = dense_problem
    classes, on_cluster = prepare_dask_data(MultinomialLogitClassifier(), X, y, None, None)
    X_memory, y_memory = client.compute([X, y], sync=True)
    in_memory = NumpyBackend(X_memory, y_memory, len(classes), np.ones(len(y_memory)))
    rng = np.random.default_rng(3)
    coef, intercept = rng.normal(size=(5, 12)) * 0.3, rng.normal(size=5)
    center, scale = rng.normal(size=12), rng.uniform(0.5, 2.0, size=12)
    if zero_coef:
        coef = np.zeros_like(coef)
    if not fit_intercept:
        intercept = None
    exact = on_cluster.hessian(coef, intercept, center=center, scale=scale, dtype=np.float64)
    reference = in_memory.hessian(coef, intercept, center=center, scale=scale, dtype=np.float64)
    upper = np.triu(np.ones_like(reference, dtype=bool))
    np.testing.assert_allclose(
        exact[upper], reference[upper], rtol=0, atol=1e-13 * np.abs(reference).max()
    )
    loss, grad_coef, grad_intercept, hessian = on_cluster.loss_gradient_hessian(
        coef, intercept, center=center, scale=scale
    )
    expected = in_memory.loss_gradient(coef, intercept)
    np.testing.assert_allclose(loss, expected[0], rtol=1e-12)
    np.testing.assert_allclose(grad_coef, expected[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_intercept, expected[2], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        hessian[upper], reference[upper], rtol=0, atol=1e-5 * np.abs(reference).max()
    )


def test_blocks_that_arrive_unaligned_are_aligned_once(client):
    # da.from_array on numpy: the workers get the blocks at odd byte offsets
    # of a network buffer, where numpy's loops ran the kernel 1.9x slower
    from skmultilogit._dask import _aligned_block, prepare_dask_data

    buffer = np.zeros(8 * 40 + 1, dtype=np.uint8)
    unaligned = np.frombuffer(buffer[1:].data, dtype=np.float64).reshape(8, 5)
    assert not unaligned.flags.aligned and _aligned_block(unaligned).flags.aligned
    X = np.random.default_rng(0).normal(size=(6000, 5))
    X_dask = client.persist(da.from_array(X, chunks=(1500, 5)))
    y = np.arange(6000) % 3
    _, data = prepare_dask_data(MultinomialLogitClassifier(), X_dask, y, None, None)
    flags = client.gather(
        client.map(lambda block: block.flags.aligned, [b[0] for b in data.blocks.blocks])
    )
    assert all(flags)


# -- sparse chunks -------------------------------------------------------------


@pytest.fixture(scope="module")
def sparse_problem():
    rng = np.random.default_rng(0)
    X = sp.random(6000, 40, density=0.1, format="csr", random_state=1,
                  data_rvs=lambda k: rng.lognormal(size=k))  # fmt: skip
    signal = X[:, 0].toarray().ravel() + X[:, 1].toarray().ravel()
    y = (signal + 0.5 * rng.normal(size=6000) > 0.5).astype(int) + (rng.random(6000) < 0.3)
    return X, y, rng.uniform(0.5, 2.0, size=6000)


@pytest.mark.parametrize("params", [dict(), dict(solver="lbfgs"), dict(class_weight="balanced")])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_chunks_fit_as_the_sparse_matrix_does(client, sparse_problem, params, weighted):
    X, y, sample_weight = sparse_problem
    sample_weight = sample_weight if weighted else None
    X_dask = da.from_array(X, chunks=(1500, 40), asarray=False)
    assert sp.issparse(X_dask._meta)
    y_dask = da.from_array(y, chunks=1500)
    weight_dask = None if sample_weight is None else da.from_array(sample_weight, chunks=1500)
    in_memory = MultinomialLogitClassifier(**TIGHT, **params).fit(X, y, sample_weight=sample_weight)
    on_cluster = MultinomialLogitClassifier(**TIGHT, **params)
    on_cluster.fit(X_dask, y_dask, sample_weight=weight_dask)
    assert_same_coef(on_cluster.coef_, in_memory.coef_)
    assert_same_coef(on_cluster.intercept_, in_memory.intercept_)
    np.testing.assert_allclose(
        on_cluster.predict_proba(X_dask).compute(), in_memory.predict_proba(X), atol=1e-7
    )


@pytest.mark.parametrize("sparse_format", ["coo", "lil", "dok"])
def test_sparse_chunks_of_other_formats_fit_as_csr(client, sparse_problem, sparse_format):
    # the in-memory fit converts them to CSR, and so does each block
    X, y, _ = sparse_problem
    X_dask = da.from_array(X, chunks=(1500, 40), asarray=False).map_blocks(
        lambda block: block.asformat(sparse_format),
        dtype=X.dtype,
        meta=X[:0].asformat(sparse_format),
    )
    y_dask = da.from_array(y, chunks=1500)
    in_memory = MultinomialLogitClassifier(**TIGHT).fit(X.asformat(sparse_format), y)
    on_cluster = MultinomialLogitClassifier(**TIGHT).fit(X_dask, y_dask)
    assert_same_coef(on_cluster.coef_, in_memory.coef_)
    assert_same_coef(on_cluster.intercept_, in_memory.intercept_)


def test_sparse_chunks_with_duplicate_entries_fit_as_their_sums(client):
    # A hand-built CSR matrix storing row 0's 2 in column 0 as 1 + 1, no entry
    # in row 1 and 1 in every other row: the blocks' statistics counted the
    # duplicate pair as the missing row's entry, read the column as constant
    # and held its coefficient at 0 (objective 16.30 against 15.93), without
    # a warning. The in-memory fit sums duplicates first; the reference is
    # the written-out objective's minimum on the summed dense matrix.
    rng = np.random.default_rng(0)
    z = rng.normal(size=40)
    data, indices, indptr = [], [], [0]
    for i in range(40):
        entries = {0: [(0, 1.0), (0, 1.0), (1, z[0])], 1: [(1, z[1])]}.get(i, [(0, 1.0), (1, z[i])])
        data += [value for _, value in entries]
        indices += [column for column, _ in entries]
        indptr.append(len(data))
    X = sp.csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=(40, 2))
    assert not X.has_canonical_format
    y = np.r_[1, 0, (z[2:] > 0).astype(int)]
    y[[5, 6]] = 1 - y[[5, 6]]
    dense = X.toarray()
    assert dense[0, 0] == 2.0 and dense[1, 0] == 0.0
    on_cluster = MultinomialLogitClassifier(**TIGHT).fit(
        da.from_array(X, chunks=(20, 2), asarray=False), da.from_array(y, chunks=20)
    )
    assert X.data.size == 80  # the caller's matrix untouched

    def objective(w):
        return written_out_objective(dense, y, 1.0, w[:4].reshape(2, 2), w[4:])

    reference = scipy.optimize.minimize(objective, np.zeros(6), method="BFGS", tol=1e-10)
    fitted = np.concatenate([on_cluster.coef_.ravel(), on_cluster.intercept_])
    assert objective(fitted) <= reference.fun + 1e-9 * abs(reference.fun)


# -- cross-validation on the cluster ------------------------------------------


@pytest.mark.parametrize("scoring", ["neg_log_loss", None])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_validation_on_dask_equals_the_in_memory_one(client, scoring, weighted):
    from sklearn.model_selection import StratifiedKFold

    from skmultilogit import MultinomialLogitClassifierCV

    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 8)) * [1, 2, 3, 0.5, 1, 1, 4, 1]
    y = np.argmax(0.3 * X @ rng.normal(size=(8, 4)) + rng.gumbel(size=(6000, 4)), axis=1)
    sample_weight = rng.uniform(0.2, 3.0, size=6000) if weighted else None
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    params = dict(Cs=6, cv=folds, tol=1e-10, scoring=scoring, class_weight="balanced")
    in_memory = MultinomialLogitClassifierCV(**params).fit(X, y, sample_weight=sample_weight)
    X_dask, y_dask = as_dask(X, y)
    weight_dask = None if sample_weight is None else as_dask(sample_weight)[0]
    on_cluster = MultinomialLogitClassifierCV(**params).fit(
        X_dask, y_dask, sample_weight=weight_dask
    )
    assert on_cluster.C_ == in_memory.C_
    np.testing.assert_allclose(on_cluster.scores_, in_memory.scores_, rtol=1e-9)
    assert_same_coef(on_cluster.coef_, in_memory.coef_)
    assert_same_coef(on_cluster.coefs_paths_, in_memory.coefs_paths_)


def test_folds_as_masks_or_negative_positions_on_dask(client):
    # a boolean mask reached the Dask path's positions as 0s and 1s: two
    # rows fitted, without a word
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1200, 5))
    y = np.argmax(X @ rng.normal(size=(5, 3)) + rng.gumbel(size=(1200, 3)), axis=1)
    mask = rng.random(1200) < 0.5
    positions = [(np.flatnonzero(mask), np.flatnonzero(~mask))]
    params = dict(Cs=2, tol=1e-10)
    in_memory = MultinomialLogitClassifierCV(cv=positions, **params).fit(X, y)
    X_dask, y_dask = as_dask(X, y, rows=300)
    for folds in ([(mask, ~mask)], [(positions[0][0] - 1200, positions[0][1])]):
        on_cluster = MultinomialLogitClassifierCV(cv=folds, **params).fit(X_dask, y_dask)
        np.testing.assert_allclose(on_cluster.scores_, in_memory.scores_, rtol=1e-9)


def test_cross_validation_on_dask_trains_on_the_training_rows_only(client, problem):
    # A time-series split leaves later rows out of both parts of a fold, and a
    # resampling splitter repeats rows: each fold fits its training rows as
    # often as they are listed, as in memory.
    from sklearn.model_selection import TimeSeriesSplit

    from skmultilogit import MultinomialLogitClassifierCV

    X, y, sample_weight = problem
    rows = np.arange(len(y))
    repeated = (np.r_[rows[:3000], rows[:1000]], rows[3000:])
    X_dask, y_dask, weight_dask = as_dask(X, y, sample_weight)
    for folds in (list(TimeSeriesSplit(3).split(X)), [repeated]):
        params = dict(Cs=3, cv=folds, tol=1e-10)
        in_memory = MultinomialLogitClassifierCV(**params).fit(X, y, sample_weight=sample_weight)
        on_cluster = MultinomialLogitClassifierCV(**params)
        on_cluster.fit(X_dask, y_dask, sample_weight=weight_dask)
        assert_same_coef(on_cluster.coefs_paths_, in_memory.coefs_paths_)
        np.testing.assert_allclose(on_cluster.scores_, in_memory.scores_, rtol=1e-9)


@pytest.mark.parametrize("request_weight", [True, False])
def test_cross_validation_on_dask_routes_weights_to_the_scorer(client, problem, request_weight):
    # with routing on, a string scorer cannot ask for the weights (fitting
    # with them is refused, as in memory); scikit-learn's scorer object of
    # the same metric can, and the held-out sums follow its request
    import sklearn
    from sklearn.metrics import get_scorer

    from skmultilogit import MultinomialLogitClassifierCV

    X, y, sample_weight = problem
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = get_scorer("neg_log_loss").set_score_request(sample_weight=request_weight)
        params = dict(Cs=3, cv=3, tol=1e-10, scoring=scorer)
        in_memory = MultinomialLogitClassifierCV(**params).fit(X, y, sample_weight=sample_weight)
        on_cluster = MultinomialLogitClassifierCV(**params).fit(
            *as_dask(X, y), sample_weight=as_dask(sample_weight)[0]
        )
    np.testing.assert_allclose(on_cluster.scores_, in_memory.scores_, rtol=1e-9)


def test_cross_validation_on_dask_refuses_a_fold_of_zero_weight(client, problem):
    from skmultilogit import MultinomialLogitClassifierCV

    X, y, _ = problem
    rows = np.arange(len(y))
    # the second fold trains on rows 4000.. only, whose weights are 0
    folds = [(rows[:2000], rows[2000:4000]), (rows[4000:], rows[:2000])]
    weight = np.where(rows >= 4000, 0.0, 1.0)
    X_dask, y_dask, weight_dask = as_dask(X, y, weight)
    cv = MultinomialLogitClassifierCV(Cs=2, cv=folds)
    with pytest.raises(ValueError, match="training rows' weights .* sum to 0"):
        cv.fit(X_dask, y_dask, sample_weight=weight_dask)
    with pytest.raises(ValueError, match="held-out rows' sample_weight sums to 0"):
        cv.set_params(cv=[(rows[:4000], rows[4000:])]).fit(
            X_dask, y_dask, sample_weight=weight_dask
        )


def test_cross_validation_on_dask_leaves_X_where_it_is(client):
    from skmultilogit import MultinomialLogitClassifierCV

    X = da.random.default_rng(3).normal(size=(80_000, 20), chunks=(10_000, 20))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    X, y = client.persist([X, y])
    distributed.wait([X, y])
    before = bytes_sent_by_workers(client)
    MultinomialLogitClassifierCV(Cs=4, cv=3).fit(X, y)
    sent = bytes_sent_by_workers(client) - before
    # Labels come back once (a byte a row), parameters and sums per round:
    # 12 fits of a path and the refit, 141 rounds, one sum per worker, and
    # each fit's polish one float64 Hessian per worker (its class pairs above
    # the diagonal, 5.4 KiB). Measured: 4.3 % of X in 3 fresh clusters (11 %
    # with the Hessian's whole triangle and a gradient per block). X itself
    # moving would be 100 %.
    assert sent < 0.07 * X.nbytes, (sent, X.nbytes)


def test_cross_validation_on_dask_refuses_scores_it_cannot_sum_where_the_rows_live(client, problem):
    from skmultilogit import MultinomialLogitClassifierCV

    X, y, _ = problem
    X_dask, y_dask = as_dask(X, y)
    with pytest.raises(ValueError, match=r"scoring='roc_auc_ovr' on Dask arrays"):
        MultinomialLogitClassifierCV(Cs=2, scoring="roc_auc_ovr").fit(X_dask, y_dask)


@pytest.fixture
def own_cluster():
    """A cluster of its own, for tests that pause or lose a worker.

    Without a memory limit, so that no memory monitor resumes a paused worker.
    """
    cluster = two_local_workers(memory_limit=0)
    own_client = distributed.Client(cluster, set_as_default=False)
    with own_client.as_current():
        yield own_client
    own_client.close()
    cluster.close()


def _set_paused(paused, dask_worker=None):
    from distributed.core import Status

    dask_worker.status = Status.paused if paused else Status.running


async def _die():
    import os

    os._exit(1)


def _prepared_on(own_client, seed):
    from skmultilogit._backends import NumpyBackend
    from skmultilogit._dask import prepare_dask_data

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40_000, 10))
    y = rng.integers(0, 3, size=len(X))
    X_dask, y_dask = own_client.persist(as_dask(X, y, rows=5_000))
    distributed.wait([X_dask, y_dask])
    _, on_cluster = prepare_dask_data(MultinomialLogitClassifier(), X_dask, y_dask, None, None)
    in_memory = NumpyBackend(X, y, 3, np.ones(len(y)))
    coef, intercept = rng.normal(size=(3, 10)) * 0.3, rng.normal(size=3)
    return X_dask, on_cluster, in_memory.loss_gradient(coef, intercept), (coef, intercept)


def _assert_same_loss_gradient(actual, expected):
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-12)
    np.testing.assert_allclose(actual[1], expected[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(actual[2], expected[2], rtol=1e-10, atol=1e-10)


def test_a_round_waits_for_a_paused_worker_rather_than_move_its_blocks(own_cluster):
    # A worker pauses at its memory limit; a task free to run elsewhere would
    # take the paused worker's blocks of X to the other worker, adding to its
    # memory. The round's tasks wait instead (saying so after a while), and
    # nothing but results moves.
    import threading

    X, on_cluster, expected, parameters = _prepared_on(own_cluster, seed=0)
    on_cluster.blocks.check_every, on_cluster.blocks.paused_warning_after = 0.25, 0.5
    paused = sorted(own_cluster.scheduler_info()["workers"])[0]
    before = bytes_sent_by_workers(own_cluster)
    own_cluster.run(_set_paused, True, workers=[paused])
    result = {}
    round_ = threading.Thread(
        target=lambda: result.update(out=on_cluster.loss_gradient(*parameters))
    )
    with pytest.warns(RuntimeWarning, match=f"waited .* for worker.*{paused}.*memory limit"):
        round_.start()
        round_.join(1.5)
    assert "out" not in result  # waiting for the paused worker
    assert bytes_sent_by_workers(own_cluster) == before
    own_cluster.run(_set_paused, False, workers=[paused])
    round_.join(60)
    _assert_same_loss_gradient(result["out"], expected)
    # the results alone: a vector per block (measured 0.07 % of X)
    assert bytes_sent_by_workers(own_cluster) - before < 0.01 * X.nbytes


def test_a_round_after_a_worker_is_lost_runs_where_its_blocks_are_remade(own_cluster):
    # The lost worker's blocks (and what was made from them: aligned copies,
    # class indices) are recomputed on the other worker; the round, bound to
    # the lost worker, is submitted again there and gives the same sums.
    import threading

    _, on_cluster, expected, parameters = _prepared_on(own_cluster, seed=1)
    lost = sorted(own_cluster.scheduler_info()["workers"])[0]
    own_cluster.run(_die, workers=[lost], wait=False)
    result = {}
    round_ = threading.Thread(
        target=lambda: result.update(out=on_cluster.loss_gradient(*parameters))
    )
    round_.start()
    round_.join(60)
    assert "out" in result, "the round never finished"
    _assert_same_loss_gradient(result["out"], expected)


def test_n_iter_never_exceeds_max_iter_on_the_cluster(client, problem):
    # Newton's method in rounds: its polish stops at max_iter too.
    from sklearn.exceptions import ConvergenceWarning

    X, y, _ = problem
    X_dask, y_dask = as_dask(X, y)
    n = int(MultinomialLogitClassifier(tol=1e-6).fit(X_dask, y_dask).n_iter_[0])
    for max_iter in range(max(1, n - 3), n + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MultinomialLogitClassifier(tol=1e-6, max_iter=max_iter).fit(X_dask, y_dask)
        assert clf.n_iter_[0] <= max_iter, (max_iter, clf.n_iter_)


@pytest.mark.skipif(
    not hasattr(MultinomialLogitClassifier(), "set_callbacks"), reason="scikit-learn < 1.9"
)
def test_callbacks_see_each_iteration_of_a_fit_on_the_cluster(client, problem):
    X, y, _ = problem

    class Iterates:
        def __init__(self, stop_at=None):
            self.stop_at = stop_at
            self.coefs, self.names = [], []

        def setup(self, estimator, context):
            pass

        def teardown(self, estimator, context):
            pass

        def on_fit_task_begin(self, estimator, context):
            pass

        def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
            self.names.append(context.task_name)
            if context.task_name == "iteration" and fitted_estimator is not None:
                self.coefs.append(fitted_estimator.coef_.copy())
            return len(self.coefs) == self.stop_at

    for solver, stop_at in [("newton-cholesky", None), ("lbfgs", None), ("lbfgs", 4)]:
        iterates = Iterates(stop_at)
        clf = MultinomialLogitClassifier(solver=solver).set_callbacks(iterates)
        X_dask, y_dask = as_dask(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X_dask, y_dask)
        assert len(iterates.coefs) == clf.n_iter_[0] == (stop_at or clf.n_iter_[0])
        np.testing.assert_array_equal(iterates.coefs[-1], clf.coef_)
        # lbfgs: the same iterates as in memory (one algorithm); newton-cholesky
        # (rounds on the cluster, CG in memory): the same optimum
        memory = MultinomialLogitClassifier(solver=solver, max_iter=clf.n_iter_[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            memory.fit(X, y)
        assert_same_coef(clf.coef_, memory.coef_, rtol=1e-6 if stop_at is None else 1e-8)

    cv = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=2).set_callbacks(iterates := Iterates())
    cv.fit(*as_dask(X, y))
    assert iterates.names.count("fold path") == 2
    assert iterates.names.count("C") == 4
    assert iterates.names.count("refit") == 1
