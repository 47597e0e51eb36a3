"""Memory: requests that cannot fit are refused up front; the largest temporaries, on huge pages.

:func:`check_fits` refuses a request before anything large is allocated;
:func:`large_empty` places Hessian-sized temporaries on huge pages of their
own where the OS has them.
"""

import math
import mmap
import os
import threading
import weakref

import numpy as np


def available_memory():
    """Bytes of memory this process can still allocate, or None where that cannot be told.

    Linux's ``MemAvailable`` (free memory plus what the kernel can reclaim),
    capped by a cgroup's limit (a container's) where one is set; elsewhere
    the free physical pages.
    """
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:
        with (
            open("/sys/fs/cgroup/memory.max") as limit,
            open("/sys/fs/cgroup/memory.current") as used,
        ):
            text = limit.read().strip()
            if text != "max":
                available = min(available, int(text) - int(used.read().strip()))
    except (OSError, ValueError):
        pass
    return available


def format_bytes(n_bytes):
    """``n_bytes`` in the largest binary unit that keeps it above 1 (``"37.3 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{n_bytes:.0f} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def check_fits(n_bytes, what, advice):
    """Raise ValueError when ``what`` (it needs ``n_bytes``) is larger than the memory available."""
    available = available_memory()
    if available is not None and n_bytes > available:
        raise ValueError(
            f"{what} needs {format_bytes(n_bytes)}, more than the {format_bytes(available)} "
            f"of memory available. {advice}"
        )


# Arrays of at least this many bytes that large_empty allocates go on
# transparent huge pages of HUGE_PAGE_BYTES where the OS has them.
HUGE_PAGE_MIN_BYTES = 512 << 10
HUGE_PAGE_BYTES = 2 << 20

# numpy's tracemalloc domain (NPY_TRACE_DOMAIN): memory measurements that
# count numpy's arrays count these too.
NUMPY_TRACE_DOMAIN = 389047


def _tracemalloc_api():
    """CPython's ``PyTraceMalloc_Track`` and ``_Untrack``, or None where ctypes cannot reach."""
    try:
        import ctypes

        track = ctypes.pythonapi.PyTraceMalloc_Track
        untrack = ctypes.pythonapi.PyTraceMalloc_Untrack
    except (ImportError, AttributeError):
        return None
    track.argtypes = [ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t]
    track.restype = ctypes.c_int
    untrack.argtypes = [ctypes.c_uint, ctypes.c_size_t]
    untrack.restype = ctypes.c_int
    return track, untrack


_TRACEMALLOC = _tracemalloc_api() if hasattr(mmap, "MADV_HUGEPAGE") else None

# The address each live large_empty array is tracked at, with its token. A
# mapping is unmapped (the GIL released) before its finalizer runs, and in
# between another thread's large_empty can map and track the same address:
# the late finalizer then untracked the new, live array (about 1 in 80 in
# two threads allocating and freeing 1 MiB arrays), unless it checks that
# the address is still its own.
_TRACKED = {}
_TRACKED_LOCK = threading.Lock()


def _untrack(address, token):
    with _TRACKED_LOCK:
        if _TRACKED.get(address) is token:
            del _TRACKED[address]
            _TRACEMALLOC[1](NUMPY_TRACE_DOMAIN, address)


def large_empty(shape, dtype, order="C"):
    """An uninitialised array, on transparent huge pages where it is large and the OS has them.

    Fresh memory's 4 KiB pages are faulted in one by one on first touch: a
    650-square float32 matrix (the 8x8 digits' Hessian at K = 10) took 413
    faults and 0.98 ms to zero, and a fit's fresh Hessian and class-pair
    sums (945 faults) about 2 ms of the raw digits' 34 (one thread, this
    project's benchmark machine); on a 2 MiB huge page the matrix took one
    fault and 0.16 ms. So arrays of at least ``HUGE_PAGE_MIN_BYTES`` get a
    2 MiB-aligned anonymous mapping of their own, advised
    ``MADV_HUGEPAGE`` (as numpy advises its own arrays from 4 MiB), freed
    with the array, and counted by ``tracemalloc`` in numpy's domain as
    numpy's arrays are. Elsewhere (no ``MADV_HUGEPAGE``, or no way to tell
    ``tracemalloc``), for smaller arrays and where no mapping is to be had,
    ``np.empty``. The pages the OS backs it with may be up to 2 MiB more
    than its bytes.

    Examples
    --------
    >>> import numpy as np
    >>> array = large_empty((700, 700), np.float32, order="F")
    >>> array.shape, array.dtype, array.flags.f_contiguous, array.flags.writeable
    ((700, 700), dtype('float32'), True, True)
    """
    dtype = np.dtype(dtype)
    n_bytes = math.prod(shape) * dtype.itemsize
    if _TRACEMALLOC is None or n_bytes < HUGE_PAGE_MIN_BYTES:
        return np.empty(shape, dtype=dtype, order=order)
    size = -(-n_bytes // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    try:
        mapping = mmap.mmap(-1, size + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:
        # no mapping to be had (out of memory, or of mappings): numpy's
        # allocation, whose failure is a MemoryError that names the size
        return np.empty(shape, dtype=dtype, order=order)
    raw = np.frombuffer(mapping, dtype=np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE_BYTES
    try:
        mapping.madvise(mmap.MADV_HUGEPAGE, start, size)
    except OSError:  # a kernel without transparent huge pages: ordinary ones
        pass
    array = raw[start : start + n_bytes].view(dtype).reshape(shape, order=order)
    address, token = array.ctypes.data, object()
    with _TRACKED_LOCK:
        _TRACKED[address] = token
        _TRACEMALLOC[0](NUMPY_TRACE_DOMAIN, address, n_bytes)
    # the mapping lives as long as an array of it does; then it is unmapped
    weakref.finalize(mapping, _untrack, address, token).atexit = False
    return array
