"""skops persistence: a round trip predicts bit-identically; only our classes need trust.

skops refuses to load any type it does not trust by default. The fitted
state of both estimators is arrays, Python scalars and plain containers,
which it trusts, so the only types a file asks the user to trust are the two
estimator classes themselves (a numpy dtype object or a random generator
stored on the estimator would add to that list; this test would catch it).
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV

sio = pytest.importorskip("skops.io")
UntrustedTypesFoundException = pytest.importorskip(
    "skops.io.exceptions"
).UntrustedTypesFoundException

# What docs/deploying.rst tells users to pass as trusted=: written out, so
# that moving a class to another module fails here and the page is updated.
TRUSTED = [
    "skmultilogit._classifier.MultinomialLogitClassifier",
    "skmultilogit._cv.MultinomialLogitClassifierCV",
]
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def fitted_models(X, y):
    """``{name: (fitted model, its untrusted types, the X to predict on)}``."""
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "8", "9"])
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])])
    return {
        "plain": (MultinomialLogitClassifier().fit(X, y), [TRUSTED[0]], X),
        "elastic_net": (
            MultinomialLogitClassifier(C=0.1, l1_ratio=0.5, max_iter=1000).fit(X, y),
            [TRUSTED[0]],
            X,
        ),
        "float32_strings": (
            MultinomialLogitClassifier().fit(X.astype(np.float32), names[y]),
            [TRUSTED[0]],
            X.astype(np.float32),
        ),
        "pipeline": (
            make_pipeline(StandardScaler(), MultinomialLogitClassifier(C=0.5)).fit(X, y),
            [TRUSTED[0]],
            X,
        ),
        "cv": (
            MultinomialLogitClassifierCV(Cs=[0.01, 0.1, 1.0], cv=3).fit(X, y),
            [TRUSTED[1]],
            X,
        ),
        "cv_elastic_net_frame": (
            make_pipeline(
                StandardScaler(),
                MultinomialLogitClassifierCV(
                    Cs=[0.1, 1.0], l1_ratios=(0.0, 0.5), cv=3, max_iter=1000
                ),
            ).fit(frame, y % 3),
            [TRUSTED[1]],
            frame,
        ),
    }


def test_round_trip_predicts_bit_identically(digits, tmp_path):
    X, y = digits
    for name, (model, untrusted, X_in) in fitted_models(X, y).items():
        path = tmp_path / f"{name}.skops"
        sio.dump(model, path)
        assert sio.get_untrusted_types(file=path) == untrusted, name
        restored = sio.load(path, trusted=untrusted)
        assert type(restored) is type(model)
        for method in METHODS:
            np.testing.assert_array_equal(
                getattr(restored, method)(X_in), getattr(model, method)(X_in), err_msg=name
            )
        assert restored.get_params(deep=False).keys() == model.get_params(deep=False).keys()


def test_the_documented_trusted_list_loads_everything(digits):
    X, y = digits
    for name, (model, _, X_in) in fitted_models(X, y).items():
        restored = sio.loads(sio.dumps(model), trusted=TRUSTED)
        np.testing.assert_array_equal(
            restored.predict_proba(X_in), model.predict_proba(X_in), err_msg=name
        )


def test_loading_without_trust_is_refused(digits):
    X, y = digits
    data = sio.dumps(MultinomialLogitClassifier().fit(X, y))
    with pytest.raises(UntrustedTypesFoundException, match="MultinomialLogitClassifier"):
        sio.loads(data)


def test_fitted_state_is_plain_data(digits):
    # What keeps the untrusted list short: arrays of numbers or strings and
    # Python scalars only (no dtype objects, generators, functions, dataclasses).
    X, y = digits
    for name, (model, _, _) in fitted_models(X, y).items():
        estimator = model[-1] if hasattr(model, "steps") else model
        for attribute, value in vars(estimator).items():
            if not attribute.endswith("_"):
                continue  # constructor parameters are the user's
            if isinstance(value, np.ndarray):
                assert value.dtype.kind in "biufUO", (name, attribute, value.dtype)
                if value.dtype.kind == "O":
                    assert all(isinstance(v, str) for v in value.ravel()), (name, attribute)
            else:
                assert type(value) in (int, float, bool, str), (name, attribute, type(value))
