"""Multinomial (softmax) logistic regression as a scikit-learn estimator.

The estimator :class:`MultinomialLogitClassifier` minimises exactly the
objective of scikit-learn's ``LogisticRegression`` (multinomial, L2) with a
closed-form gradient handed to ``scipy.optimize.minimize``; the same kernel is
public as :func:`loss_gradient`, with :func:`softmax` and :func:`log_softmax`.
"""

from ._classifier import MultinomialLogitClassifier
from ._loss import log_softmax, loss_gradient, softmax

__all__ = ["MultinomialLogitClassifier", "log_softmax", "loss_gradient", "softmax"]
__version__ = "0.1.0"
