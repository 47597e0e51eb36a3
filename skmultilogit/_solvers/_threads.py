"""How many BLAS threads a fit uses: one on small problems, all cores on large ones.

A BLAS library's thread count is one setting for the whole process, so fits
running at the same time in several threads (a grid search on the threading
backend) share it. The limit is therefore counted: the first small fit to
start sets one thread, the last one to finish restores what was there
before, whatever the order in which they end. (One ``threadpoolctl`` limit
per fit restores in the order the fits end: when the first of two
overlapping fits ends first, it lifts the limit under the second, and the
second then restores the one thread it found, for good.) While any small fit
runs, a concurrent large fit runs on one BLAS thread too, which on a machine
already busy with parallel fits keeps it from oversubscribing the cores.

Since threadpoolctl 3.8, only one "controlling" Python thread may change a
process-wide OpenBLAS pool, and a change from any other thread is silently
dropped. The thread that restores the setting need not be the one that set
it, so it takes control for the restore and then releases it.
"""

import contextlib
import functools
import threading

import threadpoolctl
from threadpoolctl import ThreadpoolController

# Below this many multiply-adds per matrix product (n * d * K), BLAS threads
# cost more than they give: scipy's L-BFGS-B does small vector algebra every
# iteration, and with two OpenBLAS threads that alone took milliseconds per
# iteration on the digits (12x slower fits). Larger products keep all threads.
SINGLE_THREAD_BELOW = 2e7


@functools.lru_cache(maxsize=1)
def _thread_controller():
    # Finding the loaded BLAS libraries takes about 5 ms: once per process,
    # not once per fit (a cross-validated path makes hundreds of fits).
    return ThreadpoolController()


def _clear_controlling_thread(force):
    """Let the next thread that sets OpenBLAS's limit control it (threadpoolctl >= 3.8)."""
    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=force)


class _CountedLimit:
    """One BLAS thread while at least one holder is inside; the original setting after."""

    def __init__(self):
        self._lock = threading.Lock()
        self._holders = 0
        self._limiter = None

    @contextlib.contextmanager
    def hold(self):
        with self._lock:
            if self._holders == 0:
                _clear_controlling_thread(force=True)
                self._limiter = _thread_controller().limit(limits=1, user_api="blas")
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    _clear_controlling_thread(force=True)
                    self._limiter.restore_original_limits()
                    self._limiter = None
                    _clear_controlling_thread(force=False)


_SINGLE_BLAS_THREAD = _CountedLimit()


def product_size(data):
    """Multiply-adds of one product ``X W^T`` on a backend: the unit the solvers size work in."""
    return data.stored_entries * data.n_classes


def blas_thread_limit(data):
    """A context limiting BLAS to 1 thread for small problems (a backend ``data``); else a no-op.

    It covers a whole fit, the feature statistics included, so that a small
    fit gives the same bits whether or not other fits run beside it.
    """
    if product_size(data) < SINGLE_THREAD_BELOW:
        return _SINGLE_BLAS_THREAD.hold()
    return contextlib.nullcontext()
