"""Multinomial (softmax) logistic regression as a scikit-learn estimator.

The estimator :class:`MultinomialLogitClassifier` minimises exactly the
objective of scikit-learn's ``LogisticRegression`` (multinomial; L2, L1 or
elastic net), :class:`MultinomialLogitClassifierCV` chooses its C by
cross-validation along warm-started paths. Both hand a closed-form
gradient to ``scipy.optimize.minimize`` or to this package's Newton solver;
the same kernel is public as :func:`loss_gradient`, with :func:`softmax` and :func:`log_softmax`.
:func:`inference` gives standard errors, tests, marginal effects and
probability intervals for a fitted model.
"""

from ._classifier import MultinomialLogitClassifier
from ._cv import MultinomialLogitClassifierCV
from ._inference import InferenceResult, MarginalEffects, inference
from ._loss import log_softmax, softmax
from ._objective import loss_gradient

__all__ = [
    "InferenceResult",
    "MarginalEffects",
    "MultinomialLogitClassifier",
    "MultinomialLogitClassifierCV",
    "inference",
    "log_softmax",
    "loss_gradient",
    "softmax",
]
__version__ = "0.1.0"
