"""ONNX export (skmultilogit.onnx): onnxruntime's outputs against the estimator's and numpy's.

The references are independent of the converter: the estimator's own
``predict`` / ``predict_proba`` (computed in float64 by this package), and a
softmax of ``X coef_^T + intercept_`` written out in numpy here.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

rt = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
pytest.importorskip("skmultilogit.onnx")

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-10}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def run(onx, X):
    session = rt.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


def numpy_softmax(model, X):
    """softmax(X W^T + b) over all rows of coef_, written out (float64)."""
    z = np.asarray(X, dtype=np.float64) @ model.coef_.T.astype(np.float64) + model.intercept_
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def assert_labels(labels, expected, proba, dtype):
    """Equal labels; in float32 rows whose top two probabilities tie within 1e-5 may differ."""
    labels, expected = np.asarray(labels), np.asarray(expected)
    differ = labels != expected
    if dtype == np.float32:
        top2 = np.sort(proba, axis=1)[:, -2:]
        differ &= top2[:, 1] - top2[:, 0] > 1e-5
    assert not differ.any(), (labels[differ][:5], expected[differ][:5])


def check_tensor_outputs(model, X, dtype):
    """The zipmap=False graph's label and probabilities against predict and predict_proba."""
    X = X.astype(dtype)
    onx = skl2onnx.to_onnx(model, X[:1], options={"zipmap": False})
    labels, proba = run(onx, X)
    assert proba.dtype == dtype and proba.shape == (len(X), len(model.classes_))
    expected = model.predict_proba(X)
    gap = np.abs(proba - expected).max()
    assert gap < TOL[dtype], gap
    assert_labels(labels, model.predict(X), expected, dtype)
    return labels, proba, gap


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_digits_pipeline_matches_predict_and_predict_proba(digits, dtype):
    X, y = digits
    pipeline = make_pipeline(StandardScaler(), MultinomialLogitClassifier()).fit(X, y)
    check_tensor_outputs(pipeline, X, dtype)
    clf = pipeline[-1]
    # the estimator's own reference and a numpy one agree, so both bind
    Z = pipeline[0].transform(X)
    np.testing.assert_allclose(clf.predict_proba(Z), numpy_softmax(clf, Z), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_string_labels(digits, dtype):
    X, y = digits
    labels = np.array(["small", "large"])[(y > 4).astype(int)]
    pipeline = make_pipeline(StandardScaler(), MultinomialLogitClassifier(C=0.1)).fit(X, labels)
    onnx_labels, _, _ = check_tensor_outputs(pipeline, X, dtype)
    assert set(onnx_labels) == {"small", "large"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cv_estimator(digits, dtype):
    X, y = digits
    X = StandardScaler().fit_transform(X[:500])
    cv = MultinomialLogitClassifierCV(Cs=[0.01, 0.1, 1.0], cv=3).fit(X, y[:500])
    check_tensor_outputs(cv, X, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "make_labels",
    [
        lambda y: 7 * y - 20,  # non-contiguous, negative
        lambda y: (y > 4).astype(np.int64),  # K = 2 integers
        lambda y: np.array([3, 1000])[(y > 4).astype(int)].astype(np.uint16),
        lambda y: (y % 3).astype(float) + 10.0,  # integral floats: int64 ONNX labels
        lambda y: (y % 2) == 1,  # booleans: ONNX labels 0 and 1
        lambda y: np.array(["a", "b", "c"], dtype=object)[y % 3],
    ],
    ids=["noncontiguous", "binary-int", "uint16", "float", "bool", "object-str"],
)
def test_label_types(digits, dtype, make_labels):
    X, y = digits
    X = StandardScaler().fit_transform(X[:400])
    labels = make_labels(y[:400])
    clf = MultinomialLogitClassifier(C=0.1).fit(X, labels)
    onnx_labels, _, _ = check_tensor_outputs(clf, X, dtype)
    if labels.dtype.kind in "iufb":
        # int64 labels equal to the classes' values (False -> 0, True -> 1)
        assert onnx_labels.dtype == np.int64
        np.testing.assert_array_equal(onnx_labels, clf.predict(X.astype(dtype)).astype(np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l1_ratio", [0.0, 0.7])
def test_two_classes_are_the_two_row_softmax_not_sigmoid_of_twice_a_row(digits, dtype, l1_ratio):
    X, y = digits
    X = StandardScaler().fit_transform(X[:400])
    clf = MultinomialLogitClassifier(C=0.05, l1_ratio=l1_ratio).fit(X, y[:400] > 4)
    _, proba, _ = check_tensor_outputs(clf, X, dtype)
    np.testing.assert_allclose(proba, numpy_softmax(clf, X), rtol=0, atol=TOL[dtype])
    # skl2onnx's linear-classifier converter rebuilds a one-row model w as
    # [-w, w] with a softmax; fed the 1-d score's row w = w_1 - w_0 it gives
    # sigmoid(2 z). That is far from the model, so the checks above tell them apart.
    z = X @ (clf.coef_[1] - clf.coef_[0]) + (clf.intercept_[1] - clf.intercept_[0])
    wrong = 1.0 / (1.0 + np.exp(-2.0 * z))
    assert np.abs(wrong - proba[:, 1]).max() > 0.05


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hand_set_two_row_model(dtype):
    # Rows that do not sum to zero: only the plain two-row softmax matches.
    X = np.random.default_rng(0).normal(size=(50, 3))
    clf = MultinomialLogitClassifier().fit(X, np.arange(50) % 2)
    clf.coef_ = np.array([[1.0, -2.0, 0.5], [0.25, 1.5, -1.0]])
    clf.intercept_ = np.array([0.3, -0.1])
    _, proba, _ = check_tensor_outputs(clf, X, dtype)
    z = X @ clf.coef_.T + clf.intercept_
    expected_1 = 1.0 / (1.0 + np.exp(-(z[:, 1] - z[:, 0])))
    np.testing.assert_allclose(proba[:, 1], expected_1, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zipmap_default_is_a_list_of_dicts(digits, dtype):
    X, y = digits
    pipeline = make_pipeline(StandardScaler(), MultinomialLogitClassifier()).fit(X, 3 * y + 1)
    X = X.astype(dtype)
    labels, maps = run(skl2onnx.to_onnx(pipeline, X[:1]), X)
    assert isinstance(maps, list) and len(maps) == len(X)
    assert sorted(maps[0]) == sorted(int(c) for c in pipeline.classes_)
    expected = pipeline.predict_proba(X)
    proba = np.array([[m[int(c)] for c in pipeline.classes_] for m in maps])
    # ZipMap holds float32 (with float64 input too: its only value type)
    assert np.abs(proba - expected).max() < 1e-6
    assert_labels(labels, pipeline.predict(X), expected, np.float32)


def test_zipmap_off_by_id_and_by_type_and_columns(digits):
    X, y = digits
    X = StandardScaler().fit_transform(X[:300]).astype(np.float32)
    clf = MultinomialLogitClassifier().fit(X, y[:300])
    expected = clf.predict_proba(X)
    for options in ({id(clf): {"zipmap": False}}, {MultinomialLogitClassifier: {"zipmap": False}}):
        _, proba = run(skl2onnx.to_onnx(clf, X[:1], options=options), X)
        assert isinstance(proba, np.ndarray)
        assert np.abs(proba - expected).max() < 1e-5
    outputs = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": "columns"}), X)
    assert len(outputs) == 1 + len(clf.classes_)  # the label, then one column per class
    columns = np.column_stack(outputs[1:])
    assert np.abs(columns - expected).max() < 1e-5


def test_float32_without_the_linear_classifier_operator(digits):
    X, y = digits
    X = StandardScaler().fit_transform(X[:300]).astype(np.float32)
    clf = MultinomialLogitClassifier().fit(X, y[:300])
    onx = skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False}, black_op={"LinearClassifier"})
    assert "LinearClassifier" not in {node.op_type for node in onx.graph.node}
    labels, proba = run(onx, X)
    assert np.abs(proba - clf.predict_proba(X)).max() < 1e-5
    assert_labels(labels, clf.predict(X), clf.predict_proba(X), np.float32)


def test_float32_graph_uses_the_ml_operator_and_float64_does_not(digits):
    X, y = digits
    clf = MultinomialLogitClassifier().fit(X[:300], y[:300])
    ops32 = {n.op_type for n in skl2onnx.to_onnx(clf, X[:1].astype(np.float32)).graph.node}
    ops64 = {n.op_type for n in skl2onnx.to_onnx(clf, X[:1]).graph.node}
    assert "LinearClassifier" in ops32
    assert "LinearClassifier" not in ops64 and {"MatMul", "Softmax", "ArgMax"} <= ops64


def test_unfitted_estimator_is_refused_clearly(digits):
    X, _ = digits
    for model in (MultinomialLogitClassifier(), MultinomialLogitClassifierCV()):
        with pytest.raises(NotFittedError, match="not fitted"):
            skl2onnx.to_onnx(model, X[:1])
    with pytest.raises(NotFittedError, match="not fitted"):
        skl2onnx.to_onnx(make_pipeline(StandardScaler(), MultinomialLogitClassifier()), X[:1])


def test_labels_without_an_onnx_type_are_refused_clearly():
    X = np.random.default_rng(0).normal(size=(40, 3))
    clf = MultinomialLogitClassifier().fit(X, np.arange(40) % 2)
    clf.classes_ = np.array([b"x", b"y"], dtype=object)  # bytes: neither int nor str
    with pytest.raises(TypeError, match="ONNX labels are int64 or strings"):
        skl2onnx.to_onnx(clf, X[:1])
    clf.classes_ = np.array([0.5, 1.0])
    with pytest.raises(ValueError, match="whole numbers"):
        skl2onnx.to_onnx(clf, X[:1])
    clf.classes_ = np.array([0, 2**63 + 5], dtype=np.uint64)
    with pytest.raises(ValueError, match="int64"):
        skl2onnx.to_onnx(clf, X[:1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_and_nocl_options(digits, dtype):
    X, y = digits
    X = StandardScaler().fit_transform(X[:300]).astype(dtype)
    clf = MultinomialLogitClassifier().fit(X, 2 * y[:300] + 1)
    expected = clf.predict_proba(X)
    outputs = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": "columns"}), X)
    assert outputs[1].dtype == dtype  # no ZipMap operator: float64 stays float64
    assert np.abs(np.column_stack(outputs[1:]) - expected).max() < TOL[dtype]
    # nocl: labels are the indices 0..K-1 into classes_
    labels, _ = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False, "nocl": True}), X)
    assert_labels(clf.classes_[labels], clf.predict(X), expected, dtype)
    assert set(labels) <= set(range(len(clf.classes_)))


@pytest.mark.parametrize("zipmap", [1, np.True_, 0, np.False_])
def test_zipmap_values_that_are_not_bools_follow_skl2onnx(digits, zipmap):
    # skl2onnx accepts 1, 0 and numpy's bools and adds a ZipMap for all of
    # them (only the bool False turns it off): the float64 graph must then
    # cast for it, or onnxruntime refuses the graph.
    X, y = digits
    clf = MultinomialLogitClassifier().fit(X[:300], y[:300])
    labels, maps = run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": zipmap}), X)
    assert isinstance(maps, list)
    proba = np.array([[m[int(c)] for c in clf.classes_] for m in maps])
    assert np.abs(proba - clf.predict_proba(X)).max() < 1e-6
    assert_labels(labels, clf.predict(X), clf.predict_proba(X), np.float32)


@pytest.mark.parametrize("black_op", [None, {"LinearClassifier"}])
@pytest.mark.parametrize("input_dtype", [np.int64, np.bool_])
def test_integer_and_boolean_inputs_are_computed_in_float32(digits, input_dtype, black_op):
    X, y = digits
    X = (X[:300] > 7) if input_dtype == np.bool_ else X[:300].astype(np.int64)
    clf = MultinomialLogitClassifier().fit(X, y[:300])
    onx = skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False}, black_op=black_op)
    labels, proba = run(onx, X)
    expected = clf.predict_proba(X.astype(np.float64))
    assert np.abs(proba - expected).max() < 1e-5
    assert_labels(labels, clf.predict(X), expected, np.float32)
