"""scikit-learn's fit callbacks (``sklearn.callback``, scikit-learn >= 1.9) on every fit.

Every solver reports each accepted iterate through one hook (the solver
driver's ``on_iterate``); this module turns those reports into the task tree
of scikit-learn's callback protocol::

    fit                              the estimator's root task
    └── iteration 0, 1, ...          one per outer iteration of the solver

and, for :class:`~skmultilogit.MultinomialLogitClassifierCV`::

    fit
    ├── fold path 0, 1, ...          one per (fold, l1_ratio), as cv and l1_ratios list them
    │   └── C 0, 1, ...              its warm-started fits, in increasing C
    │       └── iteration 0, 1, ...
    └── refit                        (refit=True) the chosen C on all the data
        └── iteration 0, 1, ...

Each iteration task begins before the iteration runs and ends after it, with
the iterate as a ready-to-predict estimator (``fitted_estimator``, built only
when a callback asks for it). As in scikit-learn, the last iteration task a
solver begins never runs: it ends empty. A callback whose
``on_fit_task_end`` returns True at an iteration stops that fit there; the
model is that iterate, and the fit warns that it stopped before ``tol``.

On older scikit-learn nothing here imports ``sklearn.callback``: the
estimators have no ``set_callbacks``, as scikit-learn's own have none, and
the functions below do nothing.
"""

import contextlib
import functools

from ._array_api import labels_to_namespace, to_namespace

try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # scikit-learn < 1.9: no callbacks
    CallbackSupportMixin = None

    def with_callbacks(method):
        return method


#: The base classes an estimator adds for callback support (none before 1.9).
CALLBACK_MIXINS = () if CallbackSupportMixin is None else (CallbackSupportMixin,)
#: The frames ``fit_method`` puts between a user's ``fit`` call and ``fit``:
#: added to a warning's ``stacklevel`` so that it names the user's line.
WRAPPER_FRAMES = 1 if CallbackSupportMixin is None else 2


def fit_method(fit):
    """``fit`` with scikit-learn's callbacks (``with_callbacks``), unfitted where it raises.

    Validation sets ``n_features_in_`` (and ``feature_names_in_``) before
    anything can fail: a refit that raised afterwards (bad labels, a
    callback's exception) left them beside the previous fit's ``coef_``,
    and ``predict`` failed inside numpy. Every fitted attribute (public
    names ending in ``_``, and the fitted objective) goes instead.
    """
    fit = with_callbacks(fit)

    @functools.wraps(fit)
    def fitted_or_unfitted(estimator, *args, **kwargs):
        try:
            return fit(estimator, *args, **kwargs)
        except BaseException:
            fitted = [
                name
                for name in vars(estimator)
                if (name.endswith("_") and not name.startswith("_")) or name == "_fitted_objective"
            ]
            for name in fitted:
                delattr(estimator, name)
            raise

    return fitted_or_unfitted


class FittedAttributes:
    """``(coef, intercept) ->`` the fitted attributes that make a model of the estimator.

    A class, not a closure: a fold path's task travels to joblib's worker
    processes with it, and the standard pickler of the ``multiprocessing``
    backend refuses local functions. ``feature_names=False`` gives the model
    no feature names, for tasks whose hooks get X as an array while the
    estimator was fitted on a DataFrame (a fold's training rows).
    """

    def __init__(self, classes, dtype, namespace=None, feature_names=True):
        self.classes = classes
        self.dtype = dtype
        self.namespace = namespace  # (xp, device) of array-API data: the model's
        self.feature_names = feature_names

    def __call__(self, coef, intercept):
        attributes = {
            "classes_": self.classes,
            "coef_": coef.astype(self.dtype),
            "intercept_": intercept.astype(self.dtype),
        }
        if self.namespace is not None:
            attributes["classes_"] = labels_to_namespace(self.classes, *self.namespace)
            attributes["coef_"], attributes["intercept_"] = to_namespace(
                (attributes["coef_"], attributes["intercept_"]), *self.namespace
            )
        if not self.feature_names:
            attributes["feature_names_in_"] = None
        return attributes

    def without_feature_names(self):
        return FittedAttributes(self.classes, self.dtype, self.namespace, feature_names=False)


class _NoTask:
    """What a task is where there are no callbacks: every report is dropped."""

    on_iterate = None
    has_callbacks = False

    def subtask(self, *args, **kwargs):
        return self

    def on_data(self, *args, **kwargs):
        return self

    @contextlib.contextmanager
    def ending_open_tasks_on_error(self):
        yield

    @contextlib.contextmanager
    def running(self):
        yield self

    def begin(self, **kwargs):
        return self

    def end(self, **kwargs):
        return False

    def iterations(self, *args, **kwargs):
        return self

    def close(self):
        pass


NO_TASK = _NoTask()


class Task:
    """One task of the tree: its context and what its hooks are told.

    ``X``, ``y`` and ``metadata`` (``{"sample_weight": ...}`` or None) are
    the data of this task, passed to the hooks (a scorer such as
    ``ScoringMonitor``'s evaluates the iterates on them); ``attributes`` maps
    ``(coef, intercept)`` to the fitted attributes that make a copy of
    ``estimator`` predict (``fitted_estimator``).
    """

    def __init__(self, context, estimator, X, y, metadata, attributes, open_tasks=None):
        self.context = context
        self.estimator = estimator
        self.X = X
        self.y = y
        self.metadata = metadata
        self.attributes = attributes
        # the tasks of this tree begun and not yet ended, shared by all of them
        self.open_tasks = [] if open_tasks is None else open_tasks

    def __getstate__(self):
        # (a fold path's task sent to a worker process: it begins its own list)
        return {**self.__dict__, "open_tasks": []}

    @classmethod
    def root(cls, estimator, X, y, sample_weight, attributes, max_subtasks):
        """The estimator's root task, begun; :data:`NO_TASK` before scikit-learn 1.9."""
        if CallbackSupportMixin is None:
            return NO_TASK
        context = estimator._init_callback_context(max_subtasks=max_subtasks)
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        return cls(context, estimator, X, y, metadata, attributes).begin()

    @property
    def has_callbacks(self):
        return bool(getattr(self.estimator, "_skl_callbacks", None))

    def subtask(self, name, max_subtasks=0):
        """A child task, not begun, on this task's data."""
        context = self.context.subcontext(task_name=name, max_subtasks=max_subtasks)
        return Task(
            context,
            self.estimator,
            self.X,
            self.y,
            self.metadata,
            self.attributes,
            self.open_tasks,
        )

    def on_data(self, X, y, sample_weight=None):
        """This task (not begun) on other data: a fold's training rows, as an array.

        None: no data to tell. The models its hooks get have no feature
        names, as the rows have none. Its tasks are a tree of their own for
        :meth:`ending_open_tasks_on_error`.
        """
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        attributes = self.attributes.without_feature_names()
        # a tree of its own (a fold path, run in a thread or a process of its
        # own): its context ends its tasks, and no other thread's
        return Task(self.context, self.estimator, X, y, metadata, attributes, [])

    @contextlib.contextmanager
    def ending_open_tasks_on_error(self):
        """A context in which an exception first ends every task begun in it, innermost first.

        Each begin then has its end (an empty one), whatever stopped the fit:
        a validation error raised by the solver layer, or a callback's own.
        """
        try:
            yield
        except BaseException:
            for task in reversed(list(self.open_tasks)):
                # the error that stopped the fit is the one to see, not a
                # hook's failing on the way out
                with contextlib.suppress(BaseException):
                    task.end(empty=True)
            raise

    @contextlib.contextmanager
    def running(self):
        """This task begun for the block, and ended after it (a fold's path).

        If the block raises, every task begun in it ends first, empty
        (:meth:`ending_open_tasks_on_error`), this one included.
        """
        with self.ending_open_tasks_on_error():
            self.begin()
            yield self
        self.end()

    def _hook_arguments(self, coef_intercept):
        if coef_intercept is None:
            attributes = None
        else:

            def attributes():
                return self.attributes(*coef_intercept())

        return {
            "estimator": self.estimator,
            "X": self.X,
            "y": self.y,
            "metadata": self.metadata,
            "reconstruction_attributes": attributes,
        }

    def begin(self, coef_intercept=None):
        """Call ``on_fit_task_begin``; ``coef_intercept()`` gives the state it begins from."""
        self.open_tasks.append(self)
        self.context.call_on_fit_task_begin(**self._hook_arguments(coef_intercept))
        return self

    def end(self, coef_intercept=None, *, fitted=False, empty=False):
        """Call ``on_fit_task_end``; whether a callback asks to stop.

        ``coef_intercept()`` gives the model at the end of the task;
        ``fitted``: the estimator itself is (the end of its fit); neither: the
        task has no one model (a fold's path). ``empty`` ends a task that
        never ran, telling the hooks nothing but the estimator.
        """
        if self in self.open_tasks:
            self.open_tasks.remove(self)
        if empty:
            return bool(self.context.call_on_fit_task_end(estimator=self.estimator))
        arguments = self._hook_arguments(coef_intercept)
        if fitted:
            arguments["reconstruction_attributes"] = {}
        return bool(self.context.call_on_fit_task_end(**arguments))

    def iterations(self, coef_intercept0):
        """The iteration subtasks of this (fit) task: an :class:`Iterations`.

        Without callbacks set on the estimator, :data:`NO_TASK`: no
        iteration contexts are made (a meta-estimator's task tree still gets
        this fit's root task).
        """
        if not self.has_callbacks:
            return NO_TASK
        return Iterations(self, coef_intercept0)


def fit_hooks(task, max_iter, name="C"):
    """The ``fit_hooks`` of ``_path.coefficient_path``: a subtask ``name`` per fit of the path.

    None when there are no callbacks (``task`` is :data:`NO_TASK`, or the
    estimator has none).
    """
    if not task.has_callbacks:
        return None

    def hooks(start):
        fit_task = task.subtask(name, max_subtasks=max_iter + 1).begin(start)
        iterations = fit_task.iterations(start)

        def done(coef, intercept):
            iterations.close()
            fit_task.end(lambda: (coef, intercept))

        return iterations.on_iterate, done

    return hooks


class Iterations:
    """The iteration subtasks of one fit: :meth:`on_iterate` is the solver's hook."""

    def __init__(self, task, coef_intercept0):
        self.task = task
        self.current = task.subtask("iteration").begin(coef_intercept0)

    def on_iterate(self, coef_intercept):
        """End the iteration that gave ``coef_intercept()``; True if a callback asks to stop."""
        if self.current.end(coef_intercept):
            self.current = None
            return True
        self.current = self.task.subtask("iteration").begin(coef_intercept)
        return False

    def close(self):
        """End the iteration task begun after the last iterate: it never ran."""
        if self.current is not None:
            self.current.end(empty=True)
            self.current = None
