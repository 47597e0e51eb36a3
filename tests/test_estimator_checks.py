"""scikit-learn's own estimator contract, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV


# The CV instances use moderate C values. The sample-weight checks fit 15
# samples with 30 features: separable data. There, at C = 1e4, the Newton
# iterates for weighted rows and for repeated rows part within the solver's
# tol (2e-4 in coef), while the check asks for agreement to 1e-7.
# check_non_transformer_estimators_n_iter wants n_iter_ >= 1. A fit that starts
# at its optimum does 0 iterations, and it does: C = 1e-4 with an L1 part has
# the optimum W = 0.
@parametrize_with_checks(
    [
        MultinomialLogitClassifier(),
        MultinomialLogitClassifier(l1_ratio=0.5),
        MultinomialLogitClassifierCV(Cs=[0.1, 1.0, 10.0], cv=3),
        MultinomialLogitClassifierCV(Cs=[0.5, 5.0], l1_ratios=(0.0, 0.5), cv=2, refit=False),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
