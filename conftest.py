"""Test configuration for the whole checkout (one conftest, so that doctest collection of
test directories never imports two modules named ``conftest``).

Hypothesis profiles: HYPOTHESIS_PROFILE=ci (.ci/run), default, or thorough. ``ci`` is
derandomised (the same examples on every run, so a landing cannot fail by luck) and keeps no
example database in the checkout; ``thorough`` draws 40x more examples, for bug hunts after a
change to the solvers.

The Dask page's example and the modules that import Dask need the ``dask`` extra; without it
they are not collected. So for the ``onnx`` extra (skl2onnx, onnxruntime) and skops: the
deployment page and ``skmultilogit/onnx.py`` are collected only where they can run, and the
callbacks page only with scikit-learn >= 1.9.
"""

import importlib.util
import os

# scikit-learn's array-API dispatch (tests/test_array_api.py, and the array-API
# estimator checks) needs scipy's array-API mode, read when scipy is imported:
# set before any test module imports it.
os.environ.setdefault("SCIPY_ARRAY_API", "1")


def _installed(*names):
    return all(importlib.util.find_spec(name) for name in names)


DASK_INSTALLED = _installed("dask", "distributed")
# docs/deploying.rst runs ONNX and skops examples; skmultilogit/onnx.py imports skl2onnx.
ONNX_INSTALLED = _installed("skl2onnx", "onnxruntime")
SKOPS_INSTALLED = _installed("skops")
# docs/callbacks.rst runs scikit-learn's callbacks (scikit-learn >= 1.9).
CALLBACKS_INSTALLED = _installed("sklearn.callback")


def array_api_dispatch_works():
    """Whether scikit-learn can dispatch to array-api-strict here (1.6 needs array-api-compat)."""
    if not _installed("array_api_strict"):
        return False
    import sklearn

    try:
        with sklearn.config_context(array_api_dispatch=True):
            pass
    except (ImportError, RuntimeError):
        return False
    return True


def pytest_ignore_collect(collection_path, config):
    # The Dask page and the modules that import Dask (skmultilogit/_dask.py,
    # skmultilogit/_backends/_dask.py: loaded only for Dask input) need the extra.
    if collection_path.name in ("dask.rst", "_dask.py") and not DASK_INSTALLED:
        return True
    if (
        collection_path.name == "onnx.py"
        and collection_path.parent.name == "skmultilogit"
        and not ONNX_INSTALLED
    ):
        return True
    if collection_path.name == "deploying.rst" and not (ONNX_INSTALLED and SKOPS_INSTALLED):
        return True
    if collection_path.name == "callbacks.rst" and not CALLBACKS_INSTALLED:
        return True
    if collection_path.name == "array_api.rst" and not array_api_dispatch_works():
        return True
    return None


try:
    from hypothesis import settings
except ImportError:  # the property tests skip themselves
    pass
else:
    settings.register_profile("default", max_examples=25, deadline=None)
    settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None)
    settings.register_profile("thorough", max_examples=1000, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
