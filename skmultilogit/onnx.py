"""Export the estimators to ONNX: converters registered with skl2onnx.

Importing this module registers a converter for
:class:`~skmultilogit.MultinomialLogitClassifier` and
:class:`~skmultilogit.MultinomialLogitClassifierCV` with skl2onnx, after
which ``skl2onnx.to_onnx`` converts them, alone or inside any pipeline, like
scikit-learn's own ``LogisticRegression``. It needs the ``onnx`` extra
(``pip install "skmultilogit[onnx]"``: skl2onnx, and onnxruntime to run the
graphs); ``import skmultilogit`` itself needs neither.

The graph computes the estimator's model, ``softmax(X coef_^T + intercept_)``
over all ``K`` rows of ``coef_`` (with two classes too: the two-row softmax,
not skl2onnx's ``[-w, w]`` rebuild of a one-row model):

* float32 input: the ONNX-ML ``LinearClassifier`` operator with a softmax
  post-transform (``MatMul``, ``Add`` and ``Softmax`` where that operator is
  black-listed);
* float64 input: ``MatMul``, ``Add`` and ``Softmax`` in float64 (the ML
  operator computes in float32 only), the label an ``ArgMax`` gathered from
  the classes;
* other inputs (int64, bool) are cast to float32 first.

Outputs are skl2onnx's for classifiers: the label (int64 for integer, boolean
or integral float classes, as skl2onnx maps them; string otherwise) and the
probabilities, by default through a ``ZipMap`` (a list of ``{class:
probability}`` dicts). The option ``zipmap`` (``{id(model): {"zipmap":
False}}``, or ``{MultinomialLogitClassifier: {"zipmap": False}}`` by type)
gives an ``(n_samples, K)`` tensor instead, ``"columns"`` one output per
class; ONNX-ML's ZipMap holds float32 only, so a float64 graph's dicts are
rounded to float32 (the tensor and the columns stay float64). ``nocl=True``
gives labels ``0 .. K-1``, indices into ``classes_``.

Examples
--------
>>> import numpy as np
>>> import onnxruntime as rt
>>> from skl2onnx import to_onnx
>>> from sklearn.datasets import load_iris
>>> import skmultilogit.onnx  # registers the converters
>>> from skmultilogit import MultinomialLogitClassifier
>>> X, y = load_iris(return_X_y=True)
>>> clf = MultinomialLogitClassifier().fit(X, y)
>>> onx = to_onnx(clf, X[:1], options={"zipmap": False})
>>> session = rt.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
>>> label, proba = session.run(None, {"X": X})
>>> bool((label == clf.predict(X)).all())
True
>>> bool(np.abs(proba - clf.predict_proba(X)).max() < 1e-12)
True
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._classifier import MultinomialLogitClassifier
from ._cv import MultinomialLogitClassifierCV

try:
    from onnx import TensorProto
    from skl2onnx import update_registered_converter
    from skl2onnx._parse import _parse_sklearn_classifier
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from skl2onnx.common.utils_classifier import get_label_classes
except ImportError as error:  # the extra is optional: say which one
    raise ImportError(
        "skmultilogit.onnx needs skl2onnx (and onnxruntime to run the graphs): "
        'pip install "skmultilogit[onnx]"'
    ) from error

__all__ = ["register_converters"]

# The options skl2onnx's classifier parser and label helper read: "zipmap"
# must be declared for skl2onnx to hand our estimators to that parser at all,
# and its get_label_classes asks for "nocl" (labels 0..K-1 instead of classes_).
OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [False, True]}

ALIASES = {
    MultinomialLogitClassifier: "SkmultilogitMultinomialLogitClassifier",
    MultinomialLogitClassifierCV: "SkmultilogitMultinomialLogitClassifierCV",
}

_INT64 = np.iinfo(np.int64)


def _label_values(classes):
    """``(values, is_string)``: the classes as the graph's int64 or string labels.

    skl2onnx's ZipMap and shape calculator map integer, boolean and integral
    float classes to int64 labels and everything else to strings; the
    graph's own labels must follow them, so anything they would garble is
    refused here, before a deep failure inside skl2onnx.
    """
    classes = np.asarray(classes)
    kind = classes.dtype.kind
    if kind in "US" or (kind == "O" and all(isinstance(c, str) for c in classes)):
        return [str(c) for c in classes], True
    if kind in "iub":
        if kind == "u" and classes.max() > _INT64.max:
            raise ValueError(
                f"Class labels above {_INT64.max} have no int64 ONNX label; got {classes.max()}."
            )
        return [int(c) for c in classes], False
    if kind == "f":
        if not np.all(np.isfinite(classes) & (classes == np.round(classes))):
            raise ValueError(
                "ONNX labels are int64 or strings: float class labels must be whole numbers, "
                f"got {classes.tolist()}."
            )
        if np.abs(classes).max() > 2.0**62:
            raise ValueError(f"Class labels too large for int64 ONNX labels: {classes.tolist()}.")
        return [int(c) for c in classes], False
    raise TypeError(
        "ONNX labels are int64 or strings; classes_ of "
        f"{type(classes[0]).__name__} (dtype {classes.dtype}) have no ONNX label type. "
        "Fit with integer or string labels to export the model."
    )


def _parse(scope, model, inputs, custom_parsers=None):
    # skl2onnx's classifier parser (label and probabilities, then ZipMap as
    # the option says), after the checks it would otherwise fail deep inside.
    check_is_fitted(model, ("coef_", "intercept_", "classes_"))
    if not isinstance(model.coef_, np.ndarray):
        # skl2onnx's own shape calculators read classes_ as numpy, deep inside
        raise ValueError(
            "The ONNX export needs a model fitted on numpy arrays; this one was fitted on "
            f"arrays of {type(model.coef_).__module__}. Fit it again on numpy arrays to export it."
        )
    _label_values(get_label_classes(scope, model))
    return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)


def _zipmap_needs_float(options, source):
    # ONNX-ML's ZipMap takes float32 tensors only (skl2onnx's own
    # LogisticRegression gives an invalid graph for float64 input and the
    # default ZipMap): float64 probabilities are rounded to float32 for it.
    # The test is skl2onnx's parser's: a ZipMap unless the option is the bool
    # False or "columns" (1, 0 and numpy's bools all get one).
    zipmap = options["zipmap"]
    no_zipmap = (isinstance(zipmap, bool) and not zipmap) or (
        isinstance(zipmap, str) and zipmap == "columns"
    )
    return not no_zipmap and isinstance(source.type, DoubleTensorType)


def _shapes(operator):
    """skl2onnx's linear-classifier shapes; float32 probabilities where a ZipMap takes them."""
    calculate_linear_classifier_output_shapes(operator)
    options = operator.scope_inst.get_options(operator.raw_operator, dict(zipmap=True))
    if _zipmap_needs_float(options, operator.inputs[0]):
        probabilities = operator.outputs[1]
        probabilities.type = FloatTensorType(probabilities.type.shape)


def _add_constant(scope, container, stem, array, onnx_type):
    name = scope.get_unique_variable_name(stem)
    container.add_initializer(name, onnx_type, list(array.shape), array.ravel().tolist())
    return name


def _softmax_graph(
    scope, container, operator, input_name, coef, intercept, labels, is_string, cast=False
):
    """``MatMul``, ``Add``, ``Softmax``; the label ``classes[ArgMax]``, in ``coef``'s dtype.

    ``cast``: the probabilities cast to float32 at the end (for a ZipMap).
    """
    dtype = np.float64 if coef.dtype == np.float64 else np.float32
    float_type = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    weights = _add_constant(scope, container, "coef", coef.T.astype(dtype), float_type)
    bias = _add_constant(scope, container, "intercept", intercept.astype(dtype), float_type)
    product = scope.get_unique_variable_name("product")
    logits = scope.get_unique_variable_name("logits")
    container.add_node(
        "MatMul", [input_name, weights], product, name=scope.get_unique_operator_name("MatMul")
    )
    container.add_node("Add", [product, bias], logits, name=scope.get_unique_operator_name("Add"))
    probabilities = operator.outputs[1].full_name
    softmax = scope.get_unique_variable_name("softmax") if cast else probabilities
    container.add_node(
        "Softmax", logits, softmax, name=scope.get_unique_operator_name("Softmax"), axis=1
    )
    if cast:
        container.add_node(
            "Cast",
            softmax,
            probabilities,
            name=scope.get_unique_operator_name("Cast"),
            to=TensorProto.FLOAT,
        )
    # The first of tied maxima, as numpy's argmax in predict.
    index = scope.get_unique_variable_name("index")
    container.add_node(
        "ArgMax",
        logits,
        index,
        name=scope.get_unique_operator_name("ArgMax"),
        axis=1,
        keepdims=0,
    )
    if is_string:
        classes = np.array([label.encode("utf-8") for label in labels], dtype=object)
        classes_name = _add_constant(scope, container, "classes", classes, TensorProto.STRING)
    else:
        classes = np.array(labels, dtype=np.int64)
        classes_name = _add_constant(scope, container, "classes", classes, TensorProto.INT64)
    container.add_node(
        "Gather",
        [classes_name, index],
        operator.outputs[0].full_name,
        name=scope.get_unique_operator_name("Gather"),
        axis=0,
    )


def _convert(scope, operator, container):
    """The converter: the fitted model's softmax over all ``K`` rows of ``coef_``."""
    model = operator.raw_operator
    labels, is_string = _label_values(get_label_classes(scope, model))
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    source = operator.inputs[0]
    if isinstance(source.type, DoubleTensorType):
        cast = _zipmap_needs_float(container.get_options(model, dict(zipmap=True)), source)
        _softmax_graph(
            scope, container, operator, source.full_name, coef, intercept, labels, is_string, cast
        )
        return
    input_name = source.full_name
    if not isinstance(source.type, FloatTensorType):  # int64, bool: computed in float32
        input_name = scope.get_unique_variable_name("cast_input")
        container.add_node(
            "Cast",
            source.full_name,
            input_name,
            name=scope.get_unique_operator_name("Cast"),
            to=TensorProto.FLOAT,
        )
    if not container.is_allowed({"LinearClassifier"}):
        coef, intercept = coef.astype(np.float32), intercept.astype(np.float32)
        _softmax_graph(scope, container, operator, input_name, coef, intercept, labels, is_string)
        return
    # All K rows as they are, softmax over the K scores: never a one-row
    # model rebuilt as [-w, w] (sigmoid(2 z): right labels, wrong probabilities).
    attrs = {
        "coefficients": coef.ravel().tolist(),
        "intercepts": intercept.tolist(),
        "multi_class": 0,
        "post_transform": "SOFTMAX",
        ("classlabels_strings" if is_string else "classlabels_ints"): labels,
    }
    container.add_node(
        "LinearClassifier",
        input_name,
        [operator.outputs[0].full_name, operator.outputs[1].full_name],
        op_domain="ai.onnx.ml",
        name=scope.get_unique_operator_name("LinearClassifier"),
        **attrs,
    )


def register_converters():
    """Register the ONNX converter of both estimators with skl2onnx.

    Called when :mod:`skmultilogit.onnx` is imported; calling it again
    re-registers the same converters (after another library overwrote
    them, say). The converter, the parser (skl2onnx's own for classifiers)
    and skl2onnx's linear-classifier shape calculator are registered under
    the aliases ``SkmultilogitMultinomialLogitClassifier`` and
    ``SkmultilogitMultinomialLogitClassifierCV``, with the options
    ``zipmap`` (``True``, ``False`` or ``"columns"``) and ``nocl``
    (``True``: labels ``0 .. K-1``).

    Returns
    -------
    aliases : dict
        The registered alias of each estimator class.

    Examples
    --------
    >>> from skmultilogit.onnx import register_converters
    >>> sorted(register_converters().values())
    ['SkmultilogitMultinomialLogitClassifier', 'SkmultilogitMultinomialLogitClassifierCV']
    """
    for model, alias in ALIASES.items():
        update_registered_converter(
            model,
            alias,
            _shapes,
            _convert,
            parser=_parse,
            options=OPTIONS,
        )
    return dict(ALIASES)


register_converters()
