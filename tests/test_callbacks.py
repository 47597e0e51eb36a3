"""scikit-learn's fit callbacks (sklearn.callback, scikit-learn >= 1.9) on every solver."""

import collections
import importlib.util
import os
import subprocess
import sys
import threading
import time
import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV

HAS_CALLBACKS = importlib.util.find_spec("sklearn.callback") is not None
needs_callbacks = pytest.mark.skipif(not HAS_CALLBACKS, reason="scikit-learn < 1.9")


def task_path(context):
    """The task names from the root down to ``context``."""
    names = []
    while context is not None:
        names.append(context.task_name)
        context = context.parent
    return tuple(reversed(names))


class Recorder:
    """A callback that records every hook call, and asks to stop at iteration ``stop_at``."""

    def __init__(self, stop_at=None):
        self.stop_at = stop_at
        self.events = []
        self.iterates = []  # (path, coef, intercept, X, y, metadata) at each iteration's end

    def setup(self, estimator, context):
        self.events.append(("setup", task_path(context)))

    def teardown(self, estimator, context):
        self.events.append(("teardown", task_path(context)))

    def on_fit_task_begin(
        self, estimator, context, *, X=None, y=None, metadata=None, fitted_estimator=None
    ):
        self.events.append(("begin", task_path(context), id(context)))

    def on_fit_task_end(
        self, estimator, context, *, X=None, y=None, metadata=None, fitted_estimator=None
    ):
        self.events.append(("end", task_path(context), id(context), fitted_estimator is not None))
        if context.task_name in ("iteration",) and fitted_estimator is not None:
            self.iterates.append(
                (
                    task_path(context),
                    fitted_estimator.coef_.copy(),
                    fitted_estimator.intercept_.copy(),
                    fitted_estimator.predict_proba(X),
                    X,
                    metadata,
                )
            )
            return self.stop_at is not None and len(self.iterates) == self.stop_at
        return False


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def written_out_objective(proba, y, coef, C, sample_weight, l1_ratio=0.0):
    """C * sum_i s_i (-log p_i,y_i) + the penalty on coef, from predicted probabilities."""
    rows = np.arange(len(y))
    data_term = C * np.sum(sample_weight * -np.log(proba[rows, y]))
    l1 = l1_ratio * np.abs(coef).sum()
    return data_term + l1 + 0.5 * (1 - l1_ratio) * np.sum(coef**2)


def assert_begins_and_ends_pair(events):
    begun = {}
    for event in events:
        if event[0] == "begin":
            assert event[2] not in begun, f"a task begun twice: {event[1]}"
            begun[event[2]] = event[1]
        elif event[0] == "end":
            assert begun.pop(event[2], None) == event[1], f"an end without a begin: {event[1]}"
    assert not begun, f"tasks begun and never ended: {list(begun.values())}"


@needs_callbacks
@pytest.mark.parametrize(
    "params",
    [
        dict(solver="lbfgs", max_iter=500),
        dict(solver="newton-cg"),
        dict(solver="newton-cholesky"),
        dict(solver="newton-cholesky", fit_intercept=False, C=10.0),
        dict(solver="lbfgs", l1_ratio=0.5, C=0.1, max_iter=500),
    ],
    ids=["lbfgs", "newton-cg", "newton-cholesky", "no-intercept", "elastic-net"],
)
def test_every_solver_reports_each_iteration_as_a_task(digits, params):
    X, y = digits
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    recorder = Recorder()
    clf = MultinomialLogitClassifier(**params).set_callbacks(recorder)
    clf.fit(X, y, sample_weight=sample_weight)

    events = recorder.events
    assert events[0] == ("setup", ("fit",))
    assert events[1][:2] == ("begin", ("fit",))
    assert events[-2][:2] == ("end", ("fit",)) and events[-2][3]  # the fitted model
    assert events[-1] == ("teardown", ("fit",))
    assert_begins_and_ends_pair(events)
    iteration_ends = [e for e in events if e[0] == "end" and e[1] == ("fit", "iteration")]
    # one task per iteration the solver counted, and one begun after the last that never ran
    assert sum(e[3] for e in iteration_ends) == clf.n_iter_[0]
    assert [e[3] for e in iteration_ends] == [True] * clf.n_iter_[0] + [False]

    # The iterates are the solver's, in the user's coordinates: the objective
    # written out from their predicted probabilities falls at every step
    # (it would not from the solver's centred and scaled coordinates).
    C, l1_ratio = clf.C, clf.l1_ratio
    labels = np.searchsorted(clf.classes_, y)
    start = written_out_objective(
        np.full((len(y), 10), 0.1), labels, np.zeros((10, 64)), C, sample_weight
    )
    objectives = [
        written_out_objective(proba, labels, coef, C, sample_weight, l1_ratio)
        for _, coef, _, proba, _, _ in recorder.iterates
    ]
    assert objectives[0] < start
    assert np.all(np.diff(objectives) <= 1e-12 * abs(objectives[0]))
    final = written_out_objective(
        clf.predict_proba(X), labels, clf.coef_, C, sample_weight, l1_ratio
    )
    assert final <= objectives[-1] * (1 + 1e-12)
    if l1_ratio == 0:
        np.testing.assert_array_equal(recorder.iterates[-1][1], clf.coef_)
    # the hooks are told the data and the weights of the fit
    assert all(it[4] is X and it[5]["sample_weight"] is sample_weight for it in recorder.iterates)


@needs_callbacks
@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
def test_a_callback_that_asks_to_stop_ends_the_fit_at_that_iterate(digits, solver):
    X, y = digits
    recorder = Recorder(stop_at=3)
    clf = MultinomialLogitClassifier(solver=solver).set_callbacks(recorder)
    with pytest.warns(ConvergenceWarning, match="A callback stopped the fit early"):
        clf.fit(X, y)
    assert clf.n_iter_[0] == 3
    np.testing.assert_array_equal(clf.coef_, recorder.iterates[2][1])
    np.testing.assert_array_equal(clf.intercept_, recorder.iterates[2][2])
    assert_begins_and_ends_pair(recorder.events)
    # no iteration task begun after the stop
    assert sum(e[1] == ("fit", "iteration") for e in recorder.events if e[0] == "begin") == 3
    # the same model as three iterations by max_iter, which knows nothing of callbacks
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        three = MultinomialLogitClassifier(solver=solver, max_iter=3).fit(X, y)
    np.testing.assert_allclose(clf.coef_, three.coef_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(clf.intercept_, three.intercept_, rtol=0, atol=1e-12)


@needs_callbacks
def test_scoring_monitor_logs_one_row_per_iteration(digits):
    from sklearn.callback import ScoringMonitor

    X, y = digits
    monitor = ScoringMonitor(scoring="neg_log_loss")
    clf = MultinomialLogitClassifier(solver="newton-cholesky").set_callbacks(monitor)
    clf.fit(X, y)
    rows = monitor.get_logs().data
    iterations = [row for row in rows if row["task_name"] == "iteration"]
    assert len(iterations) == clf.n_iter_[0]
    losses = [-row["neg_log_loss"] for row in iterations]
    assert np.all(np.diff(losses) < 0)  # C = 1 on 600 rows: the data term dominates
    (root,) = [row for row in rows if row["task_name"] == "fit"]
    from sklearn.metrics import log_loss

    np.testing.assert_allclose(-root["neg_log_loss"], log_loss(y, clf.predict_proba(X)))


@needs_callbacks
def test_progress_bar_in_a_grid_search(digits, capsys):
    pytest.importorskip("rich")
    from sklearn.callback import ProgressBar

    X, y = digits
    MultinomialLogitClassifier().set_callbacks(ProgressBar()).fit(X, y)
    recorder = Recorder()
    search = GridSearchCV(
        MultinomialLogitClassifier().set_callbacks(recorder), {"C": [0.1, 1.0]}, cv=2
    )
    search.set_callbacks(ProgressBar(max_propagation_depth=None)).fit(X, y)
    # our fits hang under the search's tasks: 2 C values x 2 splits, and the refit
    roots = [e[1] for e in recorder.events if e[0] == "begin" and e[1][-1:] == ("fit",)]
    assert sorted(roots) == [("fit", "fit")] + [("fit", "search", "fit")] * 4
    iteration_paths = {e[1][:-1] for e in recorder.events if e[1][-1:] == ("iteration",)}
    assert len(iteration_paths) == 2  # candidate-split evaluations and the refit
    assert_begins_and_ends_pair([e for e in recorder.events if e[1][-1:] == ("iteration",)])


@needs_callbacks
@pytest.mark.parametrize("n_jobs", [None, 2])
def test_cv_tasks_are_fold_paths_then_c_values_then_iterations(digits, n_jobs):
    from sklearn.callback import ScoringMonitor

    X, y = digits
    recorder, monitor = Recorder(), ScoringMonitor(scoring="accuracy")
    clf = MultinomialLogitClassifierCV(Cs=[0.01, 0.1, 1.0], cv=3, n_jobs=n_jobs)
    clf.set_callbacks(recorder, monitor).fit(X, y)
    n_iterations = int(clf.n_iter_.sum())
    rows = monitor.get_logs().data
    fold_rows = [row for row in rows if len(row["task_id_path"]) == 4]
    # the monitor's rows come back from joblib's worker processes too
    assert len(fold_rows) == n_iterations
    paths = {row["task_id_path"][:3] for row in fold_rows}
    assert len(paths) == 3 * 3  # (fold path, C value) pairs
    refit = [
        row for row in rows if row["task_name"] == "iteration" and len(row["task_id_path"]) == 3
    ]
    assert len(refit) >= 1
    if n_jobs is None:
        # in this process the recorder saw everything: per fold path, per C,
        # as many iterations as the path's n_iter_
        counts = []
        current = None
        for e in recorder.events:
            if e[0] == "begin" and e[1] == ("fit", "fold path", "C"):
                current = 0
            elif e[0] == "end" and e[1] == ("fit", "fold path", "C", "iteration") and e[3]:
                current += 1
            elif e[0] == "end" and e[1] == ("fit", "fold path", "C"):
                counts.append(current)
        # fits run in increasing C along each fold's path, as n_iter_ is laid out
        assert counts == list(clf.n_iter_.reshape(-1))
        refit_iterates = [it for it in recorder.iterates if it[0] == ("fit", "refit", "iteration")]
        np.testing.assert_array_equal(refit_iterates[-1][1], clf.coef_)
        assert_begins_and_ends_pair(recorder.events)


def test_no_callbacks_before_scikit_learn_1_9():
    code = (
        "import sys; import sklearn; from sklearn.datasets import load_iris;"
        "from skmultilogit import MultinomialLogitClassifier as M;"
        "X, y = load_iris(return_X_y=True); M().fit(X, y);"
        "print(hasattr(M(), 'set_callbacks'), 'sklearn.callback' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    if HAS_CALLBACKS:
        assert out == ["True", "True"]
    else:
        assert out == ["False", "False"]


@needs_callbacks
def test_callbacks_leave_no_state_behind(digits):
    X, y = digits
    clf = MultinomialLogitClassifier().set_callbacks(Recorder())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(X, y)
    assert not hasattr(clf, "_callback_fit_ctx")
    assert not hasattr(clf, "_skl_callbacks_to_teardown")


class RaiseAt(Recorder):
    """A recorder whose hook raises at the end of its ``at``-th iteration."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_fit_task_end(
        self, estimator, context, *, X=None, y=None, metadata=None, fitted_estimator=None
    ):
        super().on_fit_task_end(
            estimator, context, X=X, y=y, metadata=metadata, fitted_estimator=fitted_estimator
        )
        if len(self.iterates) == self.at and fitted_estimator is not None:
            raise KeyboardInterrupt("stop here")


@needs_callbacks
def test_every_task_ends_when_a_fit_fails(digits):
    X, y = digits
    # a solver-layer error after the tasks began: a Hessian too large to form
    too_wide = Recorder()
    wide = np.random.default_rng(0).normal(size=(20, 200_000))
    with pytest.raises(ValueError, match="newton-cholesky"):
        MultinomialLogitClassifier(solver="newton-cholesky").set_callbacks(too_wide).fit(
            wide, np.arange(20) % 10
        )
    assert_begins_and_ends_pair(too_wide.events)
    # a callback's own error, in a fit and in a CV path and its refit
    for estimator, at in [
        (MultinomialLogitClassifier(), 2),
        (MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=2), 3),
        (MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=2), 10**9),  # none: completes
    ]:
        raising = RaiseAt(at)
        estimator.set_callbacks(raising)
        if at < 10**9:
            with pytest.raises(KeyboardInterrupt):
                estimator.fit(X, y)
        else:
            estimator.fit(X, y)
        assert_begins_and_ends_pair(raising.events)
        assert raising.events[-1][0] == "teardown"


@needs_callbacks
def test_a_refit_that_a_callback_stops_by_raising_leaves_no_mixed_model(digits):
    # validation set n_features_in_ = 64 before the hook raised, beside the
    # previous fit's 4-feature coef_: predict failed inside numpy's matmul
    X, y = digits
    iris_X, iris_y = load_iris(return_X_y=True)
    for estimator in (MultinomialLogitClassifier(), MultinomialLogitClassifierCV(Cs=2, cv=2)):
        estimator.fit(iris_X, iris_y).set_callbacks(RaiseAt(2))
        with pytest.raises(KeyboardInterrupt):
            estimator.fit(X, y)
        assert not any(name.endswith("_") and not name.startswith("_") for name in vars(estimator))
        with pytest.raises(NotFittedError):
            estimator.predict(X)
        estimator.set_callbacks(Recorder())
        np.testing.assert_array_equal(estimator.fit(X, y).predict(X[:5]), y[:5])


@needs_callbacks
def test_cv_callbacks_with_a_dataframe_and_the_multiprocessing_backend(digits):
    # The fold tasks travel to worker processes by the standard pickler, and
    # their models carry no feature names (the hooks get the fold's rows as
    # an array): no warning about them.
    import joblib
    import pandas as pd
    from sklearn.callback import ScoringMonitor

    X, y = digits
    frame = pd.DataFrame(X, columns=[f"pixel{j}" for j in range(X.shape[1])])
    monitor = ScoringMonitor(scoring="accuracy")
    cv = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=2, n_jobs=2).set_callbacks(monitor)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with joblib.parallel_backend("multiprocessing"):
            cv.fit(frame, y)
    # (scikit-learn's ScoringMonitor brings rows back from loky's workers, see
    # above, but not from the multiprocessing backend's: only the refit's here)
    rows = monitor.get_logs().data
    assert any(row["task_name"] == "iteration" for row in rows)


class LogToFile(Recorder):
    """Writes each begin and end, with its process, to a file; raises at the ``at``-th end.

    (Fold paths run in joblib's worker processes, on copies of the callback.)
    """

    def __init__(self, at, path):
        super().__init__()
        self.at, self.path, self.ends = at, path, 0

    def _log(self, what, context):
        with open(self.path, "a") as log:
            log.write(f"{os.getpid()} {what} {id(context)} {task_path(context)}\n")

    def on_fit_task_begin(self, estimator, context, **kwargs):
        self._log("begin", context)

    def on_fit_task_end(self, estimator, context, **kwargs):
        self._log("end", context)
        self.ends += 1
        if self.ends == self.at:
            self._log("raise", context)
            raise RuntimeError(f"stop here, in process {os.getpid()}")
        return False


@needs_callbacks
def test_every_task_a_worker_process_begins_ends_when_its_hook_raises(digits, tmp_path):
    # With n_jobs=2 the fold paths run in worker processes, whose copies of
    # the tasks the fit's own context cannot end: the fold path's own does,
    # for the path whose hook raised and whose error reached the fit. (Joblib
    # does not wait for the others: another worker may still be inside its
    # path when the error reaches the fit, a raising worker may already have
    # begun the next one, and a worker whose hook raised too can be stopped
    # by loky before its path has ended its tasks: in one CI run of 2016
    # tests the other raising worker's fold path and C were left begun.)
    X, y = digits
    log = tmp_path / "tasks.log"
    estimator = MultinomialLogitClassifierCV(Cs=2, cv=3, n_jobs=2)
    with pytest.raises(RuntimeError, match="stop here") as error:
        estimator.set_callbacks(LogToFile(5, str(log))).fit(X[:300], y[:300])
    reported = str(error.value).rsplit(maxsplit=1)[-1]  # the process whose error reached the fit
    events = [line.split(maxsplit=3) for line in log.read_text().splitlines()]
    raised = {pid for pid, what, *_ in events if what == "raise"}
    assert reported in raised and str(os.getpid()) not in raised  # raised in a worker process
    open_tasks, after_raise = {}, False
    for pid, what, task, path in events:
        if pid != reported:
            continue
        if what == "raise":
            after_raise = True
        elif what == "begin":
            if after_raise:  # the next path: the raising one has ended
                break
            open_tasks[task] = path
        else:
            assert open_tasks.pop(task, None) == path
    assert not open_tasks, sorted(open_tasks.values())


class EndsCounter:
    """Counts each task's begins and ends across threads; raises at the ``at``-th end.

    Keeps the contexts (their ids stay unique) and sleeps a millisecond in
    each hook, so that two threads' paths interleave.
    """

    def __init__(self, at):
        self.at, self.ends, self.lock = at, 0, threading.Lock()
        self.begun, self.ended, self.contexts = collections.Counter(), collections.Counter(), []

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, **kwargs):
        with self.lock:
            self.contexts.append(context)
            self.begun[id(context)] += 1
        time.sleep(0.001)

    def on_fit_task_end(self, estimator, context, **kwargs):
        with self.lock:
            self.contexts.append(context)
            self.ended[id(context)] += 1
            self.ends += 1
            if self.ends == self.at:
                raise RuntimeError("stop here")
        time.sleep(0.001)
        return False


@needs_callbacks
@pytest.mark.parametrize("at", [15, 40])
def test_a_hook_raising_in_a_thread_ends_no_other_threads_task(digits, at):
    # In threads (array-API input's default) the fold paths shared one list
    # of open tasks: the raising path's context ended the other thread's
    # running tasks too, which ended them again when they finished (a
    # reviewer's script: fold path, C and iteration tasks ended twice). A
    # path's tasks are a tree of their own now. (The other thread's path
    # goes on after the error reaches the fit: its tasks end later.)
    X, y = digits
    counter = EndsCounter(at)
    with joblib.parallel_config(backend="threading"):
        with pytest.raises(RuntimeError, match="stop here"):
            MultinomialLogitClassifierCV(Cs=3, cv=4, n_jobs=2).set_callbacks(counter).fit(
                X[:300] / 16, y[:300]
            )
    for _ in range(500):  # the other thread's path, finishing
        with counter.lock:
            if counter.begun == counter.ended:
                break
        time.sleep(0.01)
    with counter.lock:
        assert max(counter.ended.values()) == 1, "a task ended twice"
        assert counter.begun == counter.ended
