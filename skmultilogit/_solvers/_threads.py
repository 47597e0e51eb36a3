"""How many BLAS threads a fit uses: one on small problems, all cores on large ones."""

import contextlib
import functools

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


def blas_thread_limit(loss):
    """A context limiting BLAS to 1 thread for small problems; for others, a no-op."""
    if loss.product_size < SINGLE_THREAD_BELOW:
        return _thread_controller().limit(limits=1, user_api="blas")
    return contextlib.nullcontext()
