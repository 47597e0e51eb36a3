"""
Pipeline and GridSearchCV over C, with a validation curve
==========================================================

:class:`~skmultilogit.MultinomialLogitClassifier` takes ``LogisticRegression``'s
parameter names, so it drops into a :class:`~sklearn.pipeline.Pipeline` and a
grid search over the inverse penalty strength ``C`` unchanged.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

pipeline = make_pipeline(StandardScaler(), MultinomialLogitClassifier())
Cs = np.logspace(-4, 2, 13)
grid = GridSearchCV(
    pipeline,
    {"multinomiallogitclassifier__C": Cs},
    cv=5,
    return_train_score=True,
).fit(X_train, y_train)
best_C = grid.best_params_["multinomiallogitclassifier__C"]
print(f"best C: {best_C:.3g}, test accuracy: {grid.score(X_test, y_test):.3f}")

# %%
# Validation curve
# ----------------
# Small ``C`` underfits (both scores low); large ``C`` fits the training folds
# ever better while the validation score levels off: the gap between the
# curves is the overfitting the penalty controls.
results = grid.cv_results_
for kind, colour in (("train", "tab:blue"), ("test", "tab:orange")):
    mean, std = results[f"mean_{kind}_score"], results[f"std_{kind}_score"]
    label = "training folds" if kind == "train" else "validation folds"
    plt.semilogx(Cs, mean, color=colour, label=label)
    plt.fill_between(Cs, mean - std, mean + std, color=colour, alpha=0.2)
plt.axvline(best_C, color="grey", linestyle=":", label=f"best C = {best_C:.3g}")
plt.xlabel("C")
plt.ylabel("accuracy")
plt.legend()
plt.title("5-fold cross-validation on standardised digits")
plt.show()
