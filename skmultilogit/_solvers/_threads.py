"""How many BLAS threads a fit uses: one on small problems, all cores on large ones.

The counted limit behind it, and why it is counted, are in
``skmultilogit._threads``. While any small fit runs, a concurrent large fit
runs on one BLAS thread too, which on a machine already busy with parallel
fits keeps it from oversubscribing the cores.
"""

import contextlib

from .._threads import SINGLE_BLAS_THREAD, SINGLE_THREAD_BELOW, product_size

__all__ = ["SINGLE_THREAD_BELOW", "blas_thread_limit", "product_size"]


def blas_thread_limit(data):
    """A context limiting BLAS to 1 thread for a fit on the backend ``data``, or a no-op.

    Small problems run on one thread; so does BLAS in a large fit on a
    backend whose passes run their row blocks in threads of their own
    (``row_threads``, see ``skmultilogit._threads``): BLAS threads left
    spinning after one product took the cores from the next pass's threads
    (a loss and gradient on 200 000 x 100 float64, K = 10, 2 cores: 29 ms
    alone, 51 ms right after a two-thread product). Elsewhere (the client of
    a Dask fit, array-API namespaces) BLAS keeps its threads. The context
    covers a whole fit, the feature statistics included, so that a small
    fit gives the same bits whether or not other fits run beside it.
    """
    if product_size(data) < SINGLE_THREAD_BELOW or getattr(data, "row_threads", False):
        return SINGLE_BLAS_THREAD.hold()
    return contextlib.nullcontext()
