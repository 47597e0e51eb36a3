"""Requests that cannot fit in memory are refused before anything large is allocated."""

import os


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
