"""Array-API inputs (array-api-strict; PyTorch where installed): the same model as numpy's.

scikit-learn's own array-API estimator checks run on both estimators in
tests/test_estimator_checks.py (``check_array_api_input``,
``check_array_api_same_namespace``); here each solver's fit is compared with
the numpy fit, and the predictions, the errors and the CV estimator.
"""

import os
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._array_api import get_namespace

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV


def dispatch_works():
    try:
        with sklearn.config_context(array_api_dispatch=True):
            return True
    except (ImportError, RuntimeError):
        # SCIPY_ARRAY_API=1 unset before scipy's import, or scikit-learn 1.6
        # without the array-api-compat package it then needs
        return False


pytestmark = pytest.mark.skipif(
    os.environ.get("SCIPY_ARRAY_API") != "1" or not dispatch_works(),
    reason="scikit-learn's array API dispatch is not available here",
)


def namespaces():
    """(xp, device, name) for every installed namespace worth testing."""
    found = []
    try:
        import array_api_strict

        found.append((array_api_strict, array_api_strict.Device("CPU_DEVICE"), "strict-cpu"))
        found.append((array_api_strict, array_api_strict.Device("device1"), "strict-device1"))
    except ImportError:
        pass
    try:
        import torch

        found.append((torch, torch.device("cpu"), "torch-cpu"))
        if torch.cuda.is_available():  # pragma: no cover (a GPU machine)
            found.append((torch, torch.device("cuda"), "torch-cuda"))
    except ImportError:
        pass
    return found


NAMESPACES = namespaces()
if not NAMESPACES:  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="no array-API namespace installed")


def to_numpy(array):
    from sklearn.utils._array_api import _convert_to_numpy, get_namespace

    with sklearn.config_context(array_api_dispatch=True):
        xp, _ = get_namespace(array)
        return np.asarray(_convert_to_numpy(array, xp))


@pytest.fixture
def host_copies(monkeypatch):
    """The sizes of the arrays read back to numpy (scikit-learn's ``_convert_to_numpy``)."""
    import sklearn.utils._array_api as sklearn_array_api

    sizes = []
    convert = sklearn_array_api._convert_to_numpy

    def recording(array, xp):
        sizes.append(int(np.prod(array.shape)))
        return convert(array, xp)

    monkeypatch.setattr(sklearn_array_api, "_convert_to_numpy", recording)
    return sizes


@pytest.fixture(scope="module")
def standardised_digits():
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-12)
    return X[:800], y[:800]


# Every solver, and each penalty that changes what a solver does, as a user sets them.
EVERY_SOLVER = [
    pytest.param(dict(solver="lbfgs"), id="lbfgs"),
    pytest.param(dict(solver="newton-cg"), id="newton-cg"),
    pytest.param(dict(solver="newton-cholesky"), id="newton-cholesky"),
    pytest.param(dict(solver="newton-cholesky", fit_intercept=False, C=0.1), id="no-intercept"),
    pytest.param(dict(solver="lbfgs", l1_ratio=0.5, C=0.3), id="elastic-net"),
    pytest.param(dict(solver="auto", class_weight="balanced"), id="weighted"),
    pytest.param(dict(solver="lbfgs", coef_bounds=(-0.3, 0.5)), id="bounds"),
    pytest.param(dict(l1_ratio=1.0, l1_groups="feature", C=0.1), id="group-lasso"),
]


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("params", EVERY_SOLVER)
def test_every_solver_fits_the_numpy_model(standardised_digits, namespace, params):
    xp, device, _ = namespace
    X, y = standardised_digits
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    tight = dict(tol=1e-10, max_iter=2000)
    reference = MultinomialLogitClassifier(**params, **tight).fit(X, y, sample_weight)
    X_xp, y_xp = xp.asarray(X, device=device), xp.asarray(y, device=device)
    weight_xp = xp.asarray(sample_weight, device=device)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier(**params, **tight).fit(X_xp, y_xp, weight_xp)
        outputs = {
            method: getattr(clf, method)(X_xp)
            for method in ("predict", "predict_proba", "predict_log_proba", "decision_function")
        }
        score = clf.score(X_xp, y_xp)
    for name in ("coef_", "intercept_"):
        value = getattr(clf, name)
        assert value.device == device and value.dtype == xp.float64
        scale = np.abs(getattr(reference, name)).max() or 1.0
        np.testing.assert_allclose(
            to_numpy(value), getattr(reference, name), rtol=0, atol=1e-6 * scale
        )
    for method, output in outputs.items():
        assert output.device == device, method
        expected = getattr(reference, method)(X)
        if method == "predict":
            np.testing.assert_array_equal(to_numpy(output), expected)
        else:
            scale = max(1.0, np.abs(expected).max())  # logits and log-probabilities reach 20
            np.testing.assert_allclose(to_numpy(output), expected, rtol=0, atol=1e-6 * scale)
    assert score == pytest.approx(reference.score(X, y))


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
def test_float32_stays_float32(namespace):
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    X32 = X.astype(np.float32)
    reference = MultinomialLogitClassifier().fit(X32, y)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier().fit(
            xp.asarray(X32, device=device), xp.asarray(y, device=device)
        )
        proba = clf.predict_proba(xp.asarray(X32, device=device))
    assert clf.coef_.dtype == xp.float32 and proba.dtype == xp.float32
    # float32 data: the same optimum to float32's resolution of the objective
    np.testing.assert_allclose(to_numpy(clf.coef_), reference.coef_, rtol=0, atol=1e-3)
    np.testing.assert_allclose(to_numpy(proba), reference.predict_proba(X32), atol=1e-4)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
def test_the_cv_estimator_chooses_and_fits_as_in_numpy(namespace):
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    params = dict(Cs=[0.01, 0.1, 1.0, 10.0], cv=3, tol=1e-10, max_iter=1000)
    reference = MultinomialLogitClassifierCV(**params).fit(X, y)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifierCV(**params, n_jobs=2).fit(
            xp.asarray(X, device=device), xp.asarray(y, device=device)
        )
        proba = clf.predict_proba(xp.asarray(X, device=device))
    assert clf.C_ == reference.C_
    np.testing.assert_allclose(to_numpy(clf.scores_), reference.scores_, rtol=1e-8)
    np.testing.assert_allclose(to_numpy(clf.coef_), reference.coef_, atol=1e-6)
    np.testing.assert_allclose(to_numpy(proba), reference.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("namespace", NAMESPACES[:1], ids=lambda n: n[2])
def test_predicting_for_another_namespace_says_so(namespace):
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    with sklearn.config_context(array_api_dispatch=True):
        on_device = MultinomialLogitClassifier().fit(
            xp.asarray(X, device=device), xp.asarray(y, device=device)
        )
        with pytest.raises(ValueError, match=r"predict_proba\(\) must use the same namespace"):
            on_device.predict_proba(X)
        in_numpy = MultinomialLogitClassifier().fit(X, y)
        with pytest.raises(ValueError, match=r"fitted on numpy arrays"):
            in_numpy.predict(xp.asarray(X, device=device))


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
def test_complex_X_is_refused_in_every_namespace(namespace):
    # check_array cast a complex torch tensor to float64 under dispatch:
    # the imaginary part dropped, a model fitted without a word
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    X_device, y_device = xp.asarray(X, device=device), xp.asarray(y, device=device)
    complex_X = xp.asarray(X + 1j, device=device)
    with sklearn.config_context(array_api_dispatch=True):
        for estimator in (MultinomialLogitClassifier(), MultinomialLogitClassifierCV(Cs=2)):
            with pytest.raises(ValueError, match="[Cc]omplex data not supported"):
                estimator.fit(complex_X, y_device)
        fitted = MultinomialLogitClassifier().fit(X_device, y_device)
        for method in ("predict", "predict_proba", "decision_function"):
            with pytest.raises(ValueError, match="[Cc]omplex data not supported"):
                getattr(fitted, method)(complex_X)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_backend_computes_what_the_numpy_backend_computes(namespace, fit_intercept):
    # A wrong Hessian would still let newton-cholesky converge (it only
    # preconditions CG there): each protocol method is compared directly with
    # the numpy backend's, itself tested against finite differences.
    from skmultilogit._backends import NumpyBackend
    from skmultilogit._backends._array_api import ArrayAPIBackend

    xp, device, _ = namespace
    rng = np.random.default_rng(1)
    n, d, K = 300, 5, 4
    X = rng.normal(size=(n, d)) * [1.0, 3.0, 0.2, 1.0, 5.0] + [0.0, 1.0, 0.0, -2.0, 0.0]
    y = rng.integers(0, K, size=n)
    weight = rng.uniform(0.5, 2.0, size=n)
    numpy_data = NumpyBackend(X, y, K, weight).with_factor(2.0, 3.0)
    X_xp = xp.asarray(X, device=device)
    # the backend gets the namespace the estimator gets: scikit-learn's
    # (array-api-compat's wrapper for torch), not the bare module
    with sklearn.config_context(array_api_dispatch=True):
        xp, _ = get_namespace(X_xp)
    xp_data = ArrayAPIBackend(X_xp, y, K, weight, xp, device)
    xp_data = xp_data.with_factor(2.0, 3.0)
    coef, direction = rng.normal(size=(K, d)), rng.normal(size=(K, d))
    intercept = rng.normal(size=K) if fit_intercept else None
    dir_intercept = rng.normal(size=K) if fit_intercept else None
    for ours, reference in [
        (xp_data.loss_gradient(coef, intercept), numpy_data.loss_gradient(coef, intercept)),
        (
            xp_data.hessp(coef, intercept, direction, dir_intercept),
            numpy_data.hessp(coef, intercept, direction, dir_intercept),
        ),
        ((xp_data.curvature(coef, intercept),), (numpy_data.curvature(coef, intercept),)),
    ]:
        for mine, theirs in zip(ours, reference, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)
    rows = rng.choice(n, size=120, replace=False)
    row_factor = rng.uniform(1.0, 3.0, size=rows.size)
    transform = dict(center=X.mean(axis=0), scale=X.std(axis=0))
    for rows_kwargs in [{}, dict(rows=rows, row_factor=row_factor)]:
        mine = xp_data.hessian(coef, intercept, **transform, **rows_kwargs)
        theirs = numpy_data.hessian(coef, intercept, **transform, **rows_kwargs)
        upper = np.triu_indices_from(theirs)  # the numpy backend fills the upper triangle
        np.testing.assert_allclose(mine[upper], theirs[upper], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mine, mine.T, rtol=0, atol=1e-13 * np.abs(mine).max())
        # the same Hessian left on the device, as newton-cholesky asks for it
        on_device = xp_data.hessian(coef, intercept, **transform, **rows_kwargs, on_device=True)
        assert on_device.device == device
        np.testing.assert_allclose(to_numpy(on_device), mine, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
def test_the_float32_loss_is_summed_as_precisely_as_numpys(namespace):
    # float32 X: the n x K work is float32, each row's loss term and their
    # sum float64 (where the device has it), as in the numpy backend. A
    # float32 sum over 200k rows (its result alone rounded to 6e-8 of it)
    # was up to 50x further from the float64 loss than numpy's.
    from skmultilogit._backends import NumpyBackend
    from skmultilogit._backends._array_api import ArrayAPIBackend

    xp, device, _ = namespace
    rng = np.random.default_rng(0)
    n, d, K = 200_000, 20, 5
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, K, size=n)
    weight = rng.uniform(0.5, 2.0, size=n)
    X_xp = xp.asarray(X, device=device)
    with sklearn.config_context(array_api_dispatch=True):
        xp, _ = get_namespace(X_xp)
    on_device = ArrayAPIBackend(X_xp, y, K, weight, xp, device)
    # the float64 loss of the same float32 numbers: the reference
    exact_data = NumpyBackend(X.astype(np.float64), y, K, weight)
    numpy_data = NumpyBackend(X, y, K, weight)
    for scale in (0.1, 0.3, 0.7, 1.5):
        coef, intercept = rng.normal(size=(K, d)) * scale, rng.normal(size=K)
        exact = exact_data.loss_gradient(coef, intercept)[0]
        numpy_error = abs(numpy_data.loss_gradient(coef, intercept)[0] - exact)
        error = abs(on_device.loss_gradient(coef, intercept)[0] - exact)
        # (both float32 losses keep the logits' float32 rounding: ~1e-9 to 1e-8)
        assert error <= 2 * numpy_error + 1e-9 * exact, (scale, error / exact, numpy_error / exact)


def test_the_loss_is_float32_on_a_device_without_float64():
    # MPS has no float64: the standard's inspection API says so per device
    from types import SimpleNamespace

    from skmultilogit._array_api import widest_float

    def namespace(names):
        info = SimpleNamespace(dtypes=lambda kind, device: {name: name for name in names})
        return SimpleNamespace(
            float32="float32", float64="float64", __array_namespace_info__=lambda: info
        )

    assert widest_float(namespace(["float32"]), "mps") == "float32"
    assert widest_float(namespace(["float32", "float64"]), "cpu") == "float64"
    for xp, device, _ in NAMESPACES:
        assert widest_float(xp, device) == xp.float64


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-3)])
def test_the_factor_on_the_device_solves_the_shifted_hessian(namespace, dtype, rtol):
    # Against numpy's dense solve of the matrix written out: H plus the
    # diagonal, plus the shift on the intercepts' block.
    from skmultilogit._cholesky import HOST, factoriser_for

    xp, device, _ = namespace
    rng = np.random.default_rng(3)
    size, intercepts_from, shift = 12, 9, 0.25
    root = rng.normal(size=(40, size))
    hessian = root.T @ root / 40
    diagonal = rng.uniform(0.1, 1.0, size=size)
    written_out = hessian + np.diag(diagonal)
    written_out[intercepts_from:, intercepts_from:] += shift
    residual = rng.normal(size=size)
    expected = np.linalg.solve(written_out, residual)
    with sklearn.config_context(array_api_dispatch=True):
        hessian_xp = xp.asarray(hessian, device=device)
        linalg = factoriser_for(hessian_xp)
        assert linalg is not HOST
        factor = linalg.factorise(hessian_xp, diagonal, intercepts_from, shift, dtype)
        assert factor.device == device
        solved = linalg.solve(factor, residual)
        assert solved.dtype == np.float64
        np.testing.assert_allclose(solved, expected, rtol=rtol, atol=0)
        # not positive definite: None, for the caller's ridge
        indefinite = hessian - 2 * np.eye(size) * np.linalg.eigvalsh(hessian).max()
        indefinite = xp.asarray(indefinite, device=device)
        assert linalg.factorise(indefinite, np.zeros(size), size, 0.0, dtype) is None
    np.testing.assert_allclose(
        HOST.solve(HOST.factorise(hessian, diagonal, intercepts_from, shift, dtype), residual),
        expected,
        rtol=rtol,
    )


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
def test_newton_cholesky_keeps_its_hessian_on_the_device(namespace, host_copies):
    # Only vectors may cross to the host: gradients, Hessian products, the
    # rows' curvature, the labels. The K (d + 1)-square Hessian and its
    # factor stay where X is.
    xp, device, _ = namespace
    rng = np.random.default_rng(4)
    n, d, K = 300, 20, 5
    X = rng.normal(size=(n, d))
    y = rng.integers(0, K, size=n)
    n_params = K * (d + 1)
    reference = MultinomialLogitClassifier(solver="newton-cholesky", tol=1e-10).fit(X, y)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier(solver="newton-cholesky", tol=1e-10)
        clf.fit(xp.asarray(X, device=device), xp.asarray(y, device=device))
    assert host_copies and max(host_copies) < n_params**2, max(host_copies)
    np.testing.assert_allclose(to_numpy(clf.coef_), reference.coef_, rtol=0, atol=1e-6)


DEVICE1 = [n for n in NAMESPACES if n[2] == "strict-device1"]


@pytest.mark.parametrize("namespace", DEVICE1, ids=lambda n: n[2])
@pytest.mark.parametrize("labels", ["numbers", "strings"])
def test_warm_start_on_a_device_starts_from_the_model(namespace, labels):
    # device1 refuses numpy conversion, as a CUDA tensor does: the model is
    # read back explicitly, or a warm start silently started from zero
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    y_given = np.array(["setosa", "versicolor", "virginica"])[y] if labels == "strings" else y
    y_xp = y_given if labels == "strings" else xp.asarray(y, device=device)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier(warm_start=True).fit(xp.asarray(X, device=device), y_xp)
        first = to_numpy(clf.coef_)
        clf.fit(xp.asarray(X, device=device), y_xp)
    assert int(to_numpy(clf.n_iter_)[0]) == 0  # it starts at the optimum
    np.testing.assert_allclose(to_numpy(clf.coef_), first, rtol=0, atol=1e-14)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("dispatch", [False, True], ids=["dispatch-off", "dispatch-on"])
def test_a_numpy_refit_warm_starts_from_a_device_model(namespace, dispatch):
    # The model fitted on a device is read back for the numpy refit whether
    # or not the dispatch is on then: the refit starts at the optimum.
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    reference = MultinomialLogitClassifier(tol=1e-10).fit(X, y)
    clf = MultinomialLogitClassifier(tol=1e-10, warm_start=True)
    with sklearn.config_context(array_api_dispatch=True):
        clf.fit(xp.asarray(X, device=device), xp.asarray(y, device=device))
    with sklearn.config_context(array_api_dispatch=dispatch):
        clf.fit(X, y)
    assert isinstance(clf.coef_, np.ndarray)
    assert clf.n_iter_[0] == 0
    np.testing.assert_allclose(clf.coef_, reference.coef_, rtol=0, atol=1e-6)


@pytest.mark.parametrize("namespace", DEVICE1, ids=lambda n: n[2])
def test_labels_and_weights_of_another_device_move_to_xs(namespace):
    # scikit-learn 1.9's contract (check_array_api_mixed_inputs): y and
    # sample_weight follow X's namespace and device; the model equals the
    # numpy fit on the same numbers.
    import array_api_strict

    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, size=150)
    reference = MultinomialLogitClassifier().fit(X, y, sample_weight=weight)
    cpu = array_api_strict.Device("CPU_DEVICE")
    with sklearn.config_context(array_api_dispatch=True):
        on_device = MultinomialLogitClassifier().fit(
            xp.asarray(X, device=device),
            xp.asarray(y, device=cpu),
            sample_weight=xp.asarray(weight, device=cpu),
        )
        on_numpy = MultinomialLogitClassifier().fit(
            X, y, sample_weight=xp.asarray(weight, device=device)
        )
        assert on_device.coef_.device == device
    assert isinstance(on_numpy.coef_, np.ndarray)
    np.testing.assert_allclose(to_numpy(on_device.coef_), reference.coef_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(on_numpy.coef_, reference.coef_, rtol=0, atol=1e-12)
    # outside the dispatch context a model on a device cannot predict numpy X
    with pytest.raises(ValueError, match=r"predict_proba\(\): the model was fitted on arrays"):
        on_device.predict_proba(X)


@pytest.mark.parametrize("namespace", DEVICE1, ids=lambda n: n[2])
def test_cv_scores_and_scorers_on_a_device(namespace):
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    X_xp = xp.asarray(X, device=device)
    reference = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=3).fit(X, names[y])
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=3).fit(X_xp, names[y])
        assert clf.score(X_xp, names[y]) == pytest.approx(reference.score(X, names[y]))
        with pytest.raises(ValueError, match="labels the model was not fitted on"):
            clf.score(X_xp, np.where(y == 0, "other", names[y]))
        brier = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=3, scoring="neg_brier_score")
        brier.fit(X_xp, xp.asarray(y, device=device))
    numpy_brier = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=3, scoring="neg_brier_score")
    numpy_brier.fit(X, y)
    np.testing.assert_allclose(to_numpy(brier.scores_), numpy_brier.scores_, rtol=1e-8)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("scoring", ["neg_brier_score", "f1"])
def test_binary_cv_scores_with_a_positive_label_as_in_numpy(namespace, scoring):
    # Two classes and a metric that takes labels and pos_label: the scorer
    # is told the positive class as a label of the host (a device scalar is
    # no valid pos_label), and scores as the numpy fit's.
    xp, device, _ = namespace
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    params = dict(Cs=[0.1, 1.0], cv=3, scoring=scoring, tol=1e-10, max_iter=1000)
    reference = MultinomialLogitClassifierCV(**params).fit(X, y)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifierCV(**params).fit(
            xp.asarray(X, device=device), xp.asarray(y, device=device)
        )
    assert clf.C_ == reference.C_
    np.testing.assert_allclose(to_numpy(clf.scores_), reference.scores_, rtol=1e-8)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("X_on_device", [True, False], ids=["X-on-device", "X-numpy"])
def test_cv_groups_on_a_device_split_as_in_numpy(namespace, X_on_device):
    # The splitter works in numpy: groups of another namespace are read back
    # (GroupKFold on a device1 or GPU array failed), with the folds of numpy groups.
    from sklearn.model_selection import GroupKFold

    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    groups = np.arange(len(y)) % 5
    params = dict(Cs=[0.1, 1.0], cv=GroupKFold(3), tol=1e-10, max_iter=1000)
    reference = MultinomialLogitClassifierCV(**params).fit(X, y, groups=groups)
    X_given = xp.asarray(X, device=device) if X_on_device else X
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifierCV(**params).fit(
            X_given, y, groups=xp.asarray(groups, device=device)
        )
    assert clf.C_ == reference.C_
    np.testing.assert_allclose(to_numpy(clf.scores_), reference.scores_, rtol=1e-8)


def no_float64(monkeypatch):
    """Make every device look like one without float64 (MPS) to the fitted attributes."""
    import skmultilogit._array_api

    monkeypatch.setattr(skmultilogit._array_api, "widest_float", lambda xp, device: xp.float32)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("has_float64", [True, False], ids=["float64", "no-float64"])
def test_cv_attributes_hold_the_dtypes_of_the_numpy_fit(namespace, has_float64, monkeypatch):
    # scikit-learn's array-API contract (check_array_api_input): each array
    # attribute on X's device in the numpy fit's dtype, float32 where the
    # device has no float64; float labels then stay numpy (their values).
    xp, device, _ = namespace
    if not has_float64:
        no_float64(monkeypatch)
    X, y = load_iris(return_X_y=True)
    X32, labels = X.astype(np.float32), y.astype(np.float64) + 1.0
    params = dict(Cs=[0.1, 1.0], l1_ratios=[0.0, 0.5], cv=3, solver="lbfgs", tol=1e-4)
    reference = MultinomialLogitClassifierCV(**params).fit(X32, labels)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifierCV(**params).fit(xp.asarray(X32, device=device), labels)
        predicted = clf.predict(xp.asarray(X32, device=device))
    for name in ("coef_", "intercept_", "coefs_paths_", "scores_", "Cs_", "l1_ratios_"):
        value, expected = getattr(clf, name), getattr(reference, name)
        dtype = xp.float64 if expected.dtype == np.float64 and has_float64 else xp.float32
        assert value.device == device and value.dtype == dtype, name
        # float32 fits, each stopped at tol: the same to 1e-3 of their scale
        scale = np.abs(expected).max()
        np.testing.assert_allclose(to_numpy(value), expected, rtol=0, atol=1e-3 * scale)
    assert isinstance(clf.classes_, np.ndarray) != has_float64
    np.testing.assert_array_equal(to_numpy(clf.classes_), reference.classes_)
    np.testing.assert_array_equal(to_numpy(predicted), reference.predict(X32))


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
def test_float_labels_stay_numpy_on_a_device_without_float64(namespace, monkeypatch):
    # MPS has no float64: float64 labels cannot live there, and classes_
    # stays numpy (as for string labels); the model is on the device.
    xp, device, _ = namespace
    no_float64(monkeypatch)
    X, y = load_iris(return_X_y=True)
    X32, labels = X.astype(np.float32), y.astype(np.float64) + 1.0
    reference = MultinomialLogitClassifier().fit(X32, labels)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier().fit(xp.asarray(X32, device=device), labels)
        predicted = clf.predict(xp.asarray(X32, device=device))
    assert clf.coef_.device == device and clf.coef_.dtype == xp.float32
    assert isinstance(clf.classes_, np.ndarray)
    np.testing.assert_array_equal(clf.classes_, reference.classes_)
    np.testing.assert_array_equal(np.asarray(predicted), reference.predict(X32))


@pytest.mark.parametrize("namespace", DEVICE1, ids=lambda n: n[2])
def test_callbacks_score_iterates_on_the_device(namespace):
    pytest.importorskip("sklearn.callback")
    from sklearn.callback import ScoringMonitor

    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    monitor = ScoringMonitor(scoring="neg_log_loss")
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier().set_callbacks(monitor)
        clf.fit(xp.asarray(X, device=device), xp.asarray(y, device=device))
    rows = [row for row in monitor.get_logs().data if row["task_name"] == "iteration"]
    assert len(rows) == int(to_numpy(clf.n_iter_)[0])


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
def test_inference_reads_a_device_model_back(namespace):
    # Standard errors of a model fitted on a device: the numpy model's, from
    # data on the device or in numpy; the model itself is not changed.
    from skmultilogit import inference

    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    weight = np.random.default_rng(5).uniform(0.5, 2.0, size=len(y))
    reference = MultinomialLogitClassifier(tol=1e-10).fit(X, y, sample_weight=weight)
    expected = inference(reference, X, y, weight, cov_type="HC1")
    X_xp, y_xp = xp.asarray(X, device=device), xp.asarray(y, device=device)
    weight_xp = xp.asarray(weight, device=device)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier(tol=1e-10).fit(X_xp, y_xp, weight_xp)
        from_device = inference(clf, X_xp, y_xp, weight_xp, cov_type="HC1")
    from_numpy = inference(clf, X, y, weight, cov_type="HC1")
    # outside the dispatch context too
    outside = inference(clf, X_xp, y_xp, weight_xp, cov_type="HC1")
    assert clf.coef_.device == device
    for result in (from_device, from_numpy, outside):
        assert isinstance(result.bse, np.ndarray)
        np.testing.assert_allclose(result.params, expected.params, rtol=0, atol=1e-6)
        np.testing.assert_allclose(result.bse, expected.bse, rtol=1e-5)
        np.testing.assert_allclose(
            result.predict_proba_interval(X[:5])[0],
            expected.predict_proba_interval(X[:5])[0],
            rtol=0,
            atol=1e-6,
        )


@pytest.mark.parametrize("namespace", DEVICE1, ids=lambda n: n[2])
def test_the_onnx_export_asks_for_a_numpy_model(namespace):
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx

    import skmultilogit.onnx  # noqa: F401 (registers the converter)

    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier().fit(xp.asarray(X, device=device), y)
    with pytest.raises(ValueError, match="The ONNX export needs a model fitted on numpy arrays"):
        to_onnx(clf, X[:1].astype(np.float32))


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_feature_statistics_on_the_device_match_their_definition(namespace, fit_intercept):
    # Weighted column mean and spread, with rows of zero weight (left out of
    # the ranges), a constant column (spread exactly 0) and a column 1e6 off
    # zero, against np.average of the written-out definitions.
    from skmultilogit._backends._array_api import ArrayAPIBackend
    from skmultilogit._statistics import feature_mean_scale

    xp, device, _ = namespace
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    X[:, 1] = 3.0
    X[:, 2] += 1e6
    weight = rng.uniform(0.5, 2.0, size=300)
    weight[:20] = 0.0
    X[:20, 1] = 99.0  # not counted: the column stays constant
    data = ArrayAPIBackend(
        xp.asarray(X, device=device), rng.integers(0, 3, 300), 3, weight, xp, device
    )
    with sklearn.config_context(array_api_dispatch=True):
        mean, spread = feature_mean_scale(data, fit_intercept)
    centre = np.average(X, axis=0, weights=weight) if fit_intercept else np.zeros(5)
    expected = np.sqrt(np.average((X - centre) ** 2, axis=0, weights=weight))
    np.testing.assert_allclose(mean, centre, rtol=1e-12)
    np.testing.assert_allclose(spread[[0, 2, 3, 4]], expected[[0, 2, 3, 4]], rtol=1e-9)
    if fit_intercept:
        # exactly constant over the counted rows: exactly its value and no spread
        assert (mean[1], spread[1]) == (3.0, 0.0)
    else:
        np.testing.assert_allclose(spread[1], 3.0, rtol=1e-12)


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda n: n[2])
@pytest.mark.parametrize("solver", ["lbfgs", "newton-cholesky"])
def test_a_fit_reads_no_rows_back_to_the_host(namespace, solver, host_copies):
    # What crosses to the host is K (d + 1) parameters' worth at a time (the
    # gradient, a preconditioned residual, the feature statistics), never a
    # block of X's rows (the statistics read 1024-row blocks back until
    # they were computed on the device). y is given as numpy here: labels
    # on the device would be read back once, n numbers.
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    X = np.repeat(X, 20, axis=0)
    y = np.repeat(y, 20)
    with sklearn.config_context(array_api_dispatch=True):
        MultinomialLogitClassifier(solver=solver).fit(xp.asarray(X, device=device), y)
    assert host_copies and max(host_copies) <= 3 * (4 + 1), max(host_copies)


def _device_without_float64():
    """array-api-strict's device without float64, which mimics MPS (where this version has it)."""
    try:
        import array_api_strict

        return array_api_strict, array_api_strict.Device("no_float64")
    except (ImportError, ValueError):
        return None


NO_FLOAT64_DEVICE = _device_without_float64()

# the warning of a float32 fit that stopped at float32's resolution of its objective
FLOAT32_STOP = ".*float32 precision"


@pytest.mark.skipif(NO_FLOAT64_DEVICE is None, reason="no array-API device without float64 here")
@pytest.mark.parametrize("params", EVERY_SOLVER)
def test_a_device_without_float64_fits_the_numpy_model(monkeypatch, standardised_digits, params):
    # Every array made on the device must be float32 (the device refuses
    # float64, as MPS does), and the fit must come as close to the float64
    # optimum as numpy's float32 fit does (L-BFGS stops 4e-3 from it in
    # float32, the Newton solvers 1e-5). The weights come as numpy float64,
    # for the fit to convert. A device's Hessian is whole (its backend leaves
    # no terms out), so numpy's fit here builds whole ones too: with terms
    # left out its newton-cholesky took other steps, and at tol=1e-5 ended
    # 1.2e-6 from the optimum in coef_ where the device's ended 1.3e-5.
    # A float32 fit follows its rounding to wherever tol stops it, and
    # numpy's float32 paths round differently (the compiled passes sum their
    # float products in another order; the compiled element-wise loops
    # contract to FMA; Fortran-ordered X takes its logits column-major):
    # class_weight="balanced" ended 2.5e-7 from the optimum in coef_ on the
    # compiled passes, 3.4e-7 on numpy alone, 1.3e-5 on Fortran X, as the
    # device did. The device is held to the farthest of them.
    import skmultilogit._solvers._newton_cholesky as newton_cholesky
    from skmultilogit import _loss

    monkeypatch.setattr(newton_cholesky, "OMIT_FRACTION", 0.0)
    xp, device = NO_FLOAT64_DEVICE
    X, y = standardised_digits
    X32 = X.astype(np.float32)
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    optimum = MultinomialLogitClassifier(**params, tol=1e-10, max_iter=2000)
    optimum.fit(X, y, sample_weight)
    X_xp = xp.asarray(X32, device=device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", FLOAT32_STOP, ConvergenceWarning)
        numpy32 = []
        for data, kernel in ((X32, _loss._kernel), (np.asfortranarray(X32), _loss._kernel),
                             (X32, None)):  # fmt: skip
            with monkeypatch.context() as patch:
                patch.setattr(_loss, "_kernel", kernel)
                numpy32.append(MultinomialLogitClassifier(**params, tol=1e-5, max_iter=2000))
                numpy32[-1].fit(data, y, sample_weight)
        with sklearn.config_context(array_api_dispatch=True):
            clf = MultinomialLogitClassifier(**params, tol=1e-5, max_iter=2000)
            clf.fit(X_xp, xp.asarray(y, device=device), sample_weight)
            proba = clf.predict_proba(X_xp)
            predicted = clf.predict(X_xp)
    # (not score: scikit-learn's accuracy_score averages in the namespace's
    # default float asked without a device, float64 on array-api-strict; on
    # torch, float32)
    for name in ("coef_", "intercept_"):
        value = getattr(clf, name)
        assert value.device == device and value.dtype == xp.float32, name
        expected = getattr(optimum, name)
        floor = 1e-6 * (np.abs(expected).max() or 1.0)
        numpy_error = max(np.abs(getattr(fit, name) - expected).max() for fit in numpy32)
        assert np.abs(to_numpy(value) - expected).max() <= 3 * numpy_error + floor, name
    assert proba.device == device and proba.dtype == xp.float32
    expected = optimum.predict_proba(X)
    numpy_error = max(np.abs(fit.predict_proba(X32) - expected).max() for fit in numpy32)
    assert np.abs(to_numpy(proba) - expected).max() <= 3 * numpy_error + 1e-6
    assert np.mean(to_numpy(predicted) == optimum.predict(X)) > 0.99


@pytest.mark.skipif(NO_FLOAT64_DEVICE is None, reason="no array-API device without float64 here")
def test_the_cv_estimator_on_a_device_without_float64(standardised_digits):
    xp, device = NO_FLOAT64_DEVICE
    X, y = standardised_digits
    params = dict(Cs=[0.01, 0.1, 1.0], cv=3, tol=1e-5, max_iter=1000)
    reference = MultinomialLogitClassifierCV(**params).fit(X, y)
    with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", FLOAT32_STOP, ConvergenceWarning)
        clf = MultinomialLogitClassifierCV(**params).fit(
            xp.asarray(X.astype(np.float32), device=device), xp.asarray(y, device=device)
        )
    assert clf.C_ == reference.C_
    assert clf.coef_.device == device and clf.coef_.dtype == xp.float32
    assert clf.scores_.dtype == xp.float32
    np.testing.assert_allclose(to_numpy(clf.scores_), reference.scores_, rtol=1e-3)
    scale = np.abs(reference.coef_).max()
    np.testing.assert_allclose(to_numpy(clf.coef_), reference.coef_, rtol=0, atol=1e-3 * scale)


@pytest.mark.parametrize("namespace", DEVICE1, ids=lambda n: n[2])
def test_bounds_given_as_device_arrays_are_those_bounds(namespace):
    xp, device, _ = namespace
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    lower = -rng.uniform(0.1, 0.5, size=(3, 4))
    upper = rng.uniform(0.1, 0.5, size=(3, 4))
    reference = MultinomialLogitClassifier(coef_bounds=(lower, upper)).fit(X, y)
    bounds = (xp.asarray(lower, device=device), xp.asarray(upper, device=device))
    with sklearn.config_context(array_api_dispatch=True):
        clf = MultinomialLogitClassifier(coef_bounds=bounds)
        clf.fit(xp.asarray(X, device=device), xp.asarray(y, device=device))
    np.testing.assert_allclose(to_numpy(clf.coef_), reference.coef_, atol=1e-8)
    assert np.any(np.isclose(reference.coef_, lower) | np.isclose(reference.coef_, upper))


def test_cpu_tensors_for_groups_and_inference_without_scipy_array_api():
    # With SCIPY_ARRAY_API unset scikit-learn's dispatch cannot start, and
    # torch X, y and weights are read as numpy arrays; groups and the data
    # of inference() were refused instead ("dispatch ... not available").
    pytest.importorskip("torch")
    import subprocess
    import sys

    code = """
import numpy as np, torch
from sklearn.datasets import load_iris
from sklearn.model_selection import GroupKFold
from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV, inference
X, y = load_iris(return_X_y=True)
groups = np.arange(len(y)) % 3
cv = dict(Cs=2, cv=GroupKFold(3))
tensors = MultinomialLogitClassifierCV(**cv).fit(
    torch.asarray(X), torch.asarray(y), groups=torch.asarray(groups)
)
arrays = MultinomialLogitClassifierCV(**cv).fit(X, y, groups=groups)
assert np.array_equal(tensors.scores_, arrays.scores_)
model = MultinomialLogitClassifier().fit(X, y)
assert np.array_equal(
    inference(model, torch.asarray(X), torch.asarray(y)).bse, inference(model, X, y).bse
)
"""
    env = {name: value for name, value in os.environ.items() if name != "SCIPY_ARRAY_API"}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, env=env)
