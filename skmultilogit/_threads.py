"""Threads: how many a pass over the data uses, the BLAS limit they share, and the pool.

Two ways to use several cores on a pass over X (a loss and gradient, a
Hessian product):

- BLAS threads inside each matrix product. The products of a pass are
  skinny (K is small next to n and d), so they gain little from threads,
  and the n x K element-wise work between them (max, exp, sums, log) runs
  on one core whatever BLAS does.
- Python threads over row blocks, each block's products on one BLAS thread
  and its element-wise work in numpy, which releases the GIL inside both.
  Then everything in the pass runs on every core. Measured on 200 000 x 100
  float64, K = 10, 2 cores: one loss and gradient took 40 ms with two BLAS
  threads and 30 ms with two row-block threads (50 ms on one thread).

So a large in-memory pass runs its row blocks in :func:`map_in_threads`,
as many threads as BLAS would have used (:func:`pass_threads`, which
follows ``threadpoolctl``: under ``threadpool_limits(1)`` a pass runs on
one thread), with BLAS held at one thread meanwhile
(:data:`SINGLE_BLAS_THREAD`). Small problems run on one thread: there BLAS
threads cost more than they give, and so would ours.

A BLAS library's thread count is one setting for the whole process, so
fits running at the same time in several threads (a grid search on the
threading backend) share it. The limit is therefore counted: the first
holder to start sets one thread, the last one to finish restores what was
there before, whatever the order in which they end. (One ``threadpoolctl``
limit per holder restores in the order they end: when the first of two
overlapping ones ends first, it lifts the limit under the second, and the
second then restores the one thread it found, for good.)

Since threadpoolctl 3.8, only one "controlling" Python thread may change a
process-wide OpenBLAS pool, and a change from any other thread is silently
dropped. The thread that restores the setting need not be the one that set
it, so it takes control for the restore and then releases it.
"""

import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import threadpoolctl
from joblib.externals.loky import cpu_count
from threadpoolctl import ThreadpoolController

# Below this many multiply-adds per matrix product (n * d * K), threads cost
# more than they give: L-BFGS does small vector algebra every iteration,
# and with two OpenBLAS threads that alone took milliseconds per iteration
# on the digits (12x slower fits). Larger products use all threads.
SINGLE_THREAD_BELOW = 2e7


# Passes of at least this many multiply-adds per product run their row
# blocks in threads (pass_threads): handing a group of blocks to a thread
# costs tens of microseconds, a pass of this size about a millisecond.
ROW_THREADS_FROM = 2e6


def product_size(data):
    """Multiply-adds of one product ``X W^T`` on a backend: the unit work is sized in."""
    return data.stored_entries * data.n_classes


@functools.lru_cache(maxsize=1)
def usable_cores():
    """The cores this process may run on: CPU affinity and cgroup quota, as loky counts them.

    Not ``os.cpu_count()``, the machine's: a process pinned to some cores
    (``taskset``) or a container under a CPU quota gets fewer, and a thread
    per machine core would then only wait for its turn. loky's count, not
    ``joblib.cpu_count()``, which says 1 wherever joblib's multiprocessing
    is off (``JOBLIB_MULTIPROCESSING=0``, or no semaphores) although threads
    need none. Counted once per process (21 us a call, against a pass of
    about a millisecond): a process pinned anew after its first large fit
    keeps the count it had.
    """
    return max(1, cpu_count())


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


def _controlled_by_another_thread(owner):
    """Whether a live thread other than ``owner`` controls OpenBLAS's limit (threadpoolctl >= 3.8).

    Such a thread is inside its own ``threadpool_limits``; taking control
    from it would drop its restore, and leave its limit set for good.
    """
    controller = getattr(threadpoolctl, "OpenBLASController", None)
    state = getattr(controller, "_SHARED_STATE", None)
    thread = getattr(state, "controlling_thread", None)
    return thread is not None and thread is not owner and thread.is_alive()


class CountedLimit:
    """One BLAS thread while at least one holder is inside; the original setting after.

    ``threads_before`` is the most BLAS threads there were when the first
    holder came in (what ``threadpoolctl`` or the environment allowed),
    ``holders`` how many are inside.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.holders = 0
        self.threads_before = 1
        self._limiter = None
        self._owner = None
        self._took_control = False

    @contextlib.contextmanager
    def hold(self):
        with self._lock:
            if self.holders == 0:
                self.threads_before = blas_threads()
                self._owner = threading.current_thread()
                # While another thread's threadpool_limits controls OpenBLAS
                # this limit is not set (BLAS keeps that thread's setting),
                # and not restored: that thread restores its own.
                self._took_control = not _controlled_by_another_thread(self._owner)
                if self._took_control:
                    _clear_controlling_thread(force=True)
                self._limiter = _thread_controller().limit(limits=1, user_api="blas")
            self.holders += 1
        try:
            yield
        finally:
            with self._lock:
                self.holders -= 1
                if self.holders == 0:
                    # the last holder restores, from whichever thread, unless
                    # a user's threadpool_limits has taken control meanwhile
                    if self._took_control and not _controlled_by_another_thread(self._owner):
                        _clear_controlling_thread(force=True)
                        self._limiter.restore_original_limits()
                        _clear_controlling_thread(force=False)
                    self._limiter = self._owner = None


SINGLE_BLAS_THREAD = CountedLimit()


def blas_threads():
    """The most threads any loaded BLAS library is set to use now (1 if none is found)."""
    blas = _thread_controller().select(user_api="blas").lib_controllers
    return max((library.num_threads or 1 for library in blas), default=1)


def _openmp_threads():
    """This thread's OpenMP limit (per thread, where ``threadpool_limits`` sets it), or None.

    The most over the OpenMP libraries loaded: ``threadpool_limits`` sets
    them all, while a library may set its own alone (PyTorch's, to the
    physical cores, 1 on a 2-thread machine).
    """
    openmp = _thread_controller().select(user_api="openmp").lib_controllers
    return max((library.num_threads or 1 for library in openmp), default=None)


def pass_threads(data, n_blocks):
    """How many threads a pass over ``n_blocks`` row blocks of the backend ``data`` uses.

    One for small passes (below :data:`ROW_THREADS_FROM`); else as many as
    BLAS had before the fits running now held it at one thread (what
    ``threadpoolctl`` set, by default the cores), at most one per block and
    per core. Fits running side by side in threads each take that many, as
    each took that many BLAS threads before.
    """
    if n_blocks < 2 or product_size(data) < ROW_THREADS_FROM:
        return 1
    with SINGLE_BLAS_THREAD._lock:
        held = SINGLE_BLAS_THREAD.holders > 0
        allowed = SINGLE_BLAS_THREAD.threads_before if held else blas_threads()
    # BLAS's limit is process-wide, held by the first fit; threadpool_limits
    # also sets OpenMP's, which is this thread's own: a fit inside
    # threadpool_limits(1) runs on one thread while another fit runs
    openmp = _openmp_threads()
    if openmp is not None:
        allowed = min(allowed, openmp)
    return max(1, min(n_blocks, allowed, usable_cores()))


_POOL_LOCK = threading.Lock()
_POOL = None


def _forget_pool_in_child():
    # A forked child (joblib's multiprocessing backend) inherits the pool
    # object but not its threads: work handed to it would wait forever. It
    # inherits the counted limit too, held by fits that run only in the
    # parent: the child's BLAS gets back the setting from before them.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()
    usable_cores.cache_clear()  # the child may be pinned to other cores
    held, threads = SINGLE_BLAS_THREAD.holders > 0, SINGLE_BLAS_THREAD.threads_before
    SINGLE_BLAS_THREAD.__init__()
    if held:
        _clear_controlling_thread(force=True)
        _thread_controller().limit(limits=threads, user_api="blas")
        _clear_controlling_thread(force=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # never more than the cores: pass_threads asks for no more
            _POOL = ThreadPoolExecutor(
                max_workers=max(1, usable_cores() - 1),
                thread_name_prefix="skmultilogit-rows",
            )
        return _POOL


def map_in_threads(function, groups):
    """``[function(group) for group in groups]``, the groups on threads at once, BLAS on one.

    The first group runs in the calling thread, the others in a shared pool
    of threads (which never wait on each other, so concurrent passes cannot
    deadlock it). An exception in any group is raised here once all have
    ended.
    """
    if len(groups) == 1:
        return [function(groups[0])]
    # numpy's error state is per thread: the caller's (a fit ignores
    # overflow in line-search trials) goes with the work
    errors = np.geterr()

    def under_callers_errstate(group):
        with np.errstate(**errors):
            return function(group)

    with SINGLE_BLAS_THREAD.hold():
        futures = [_pool().submit(under_callers_errstate, group) for group in groups[1:]]
        try:
            first = function(groups[0])
        finally:
            wait(futures)
    return [first, *(future.result() for future in futures)]
