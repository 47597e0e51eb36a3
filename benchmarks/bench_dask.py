"""Fitting on a Dask cluster against fitting in memory: time, bytes moved, data beyond a worker.

Runs (all on this machine, worker processes on 127.0.0.1, one thread each,
BLAS limited to one thread everywhere):

1. The same data in memory (numpy) and as a Dask array on 1 and on 2
   workers: the fit's wall time (median of ``--repeats`` fits after a
   warm-up), the bytes the workers sent out during one fit (their
   ``transfer_outgoing_bytes_total`` counters: gradients to the client and
   between workers in the tree reductions), and the largest difference of
   the coefficients from the in-memory fit.
2. A data set larger than one worker's memory limit, generated on the
   cluster (the client never holds it) and spread over 2 workers with a low
   ``memory_limit``: the fit must end without a worker being restarted.

All fits use ``solver="lbfgs"`` (what ``"auto"`` means on Dask) and the same
``tol``. Usage::

    python benchmarks/bench_dask.py            # 400 000 x 50 in memory, 600 MB beyond memory
    python benchmarks/bench_dask.py --quick    # small sizes, seconds
"""

import argparse
import functools
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import threadpoolctl

from skmultilogit import MultinomialLogitClassifier

N_CLASSES = 10
TOL = 1e-6


def bytes_sent(client):
    counters = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
    return sum(counters.values())


def make_problem(da, n_samples, n_features, chunk_rows, seed):
    """Features and labels from a multinomial logit model, generated on the cluster."""
    rng = np.random.default_rng(seed)
    coef = rng.normal(scale=1.0 / np.sqrt(n_features), size=(n_features, N_CLASSES))
    X = da.random.default_rng(seed).normal(
        size=(n_samples, n_features), chunks=(chunk_rows, n_features)
    )
    logits = X @ coef
    noise = da.random.default_rng(seed + 1).gumbel(size=logits.shape, chunks=logits.chunks)
    y = da.argmax(logits + noise, axis=1)
    return X, y


def fit_lbfgs(X, y):
    return MultinomialLogitClassifier(solver="lbfgs", tol=TOL).fit(X, y)


def timed_fits(fit, repeats):
    fit()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    return model, statistics.median(times), times


def compare_with_memory(args, distributed, da):
    results = []
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        X_dask, y_dask = make_problem(da, args.n_samples, args.n_features, args.chunk_rows, 0)
        X, y = client.compute([X_dask, y_dask], sync=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            in_memory, memory_time, memory_times = timed_fits(
                functools.partial(fit_lbfgs, X, y), args.repeats
            )
        results.append(
            {
                "setting": "in memory (numpy)",
                "time_s": memory_time,
                "times_s": memory_times,
                "iterations": int(in_memory.n_iter_[0]),
                "bytes_sent": 0,
                "max_coef_diff": 0.0,
            }
        )
        print(f"in memory: {memory_time:.3g} s", file=sys.stderr, flush=True)
        for n_workers in (1, 2):
            cluster.scale(n_workers)
            client.wait_for_workers(n_workers)
            while len(client.scheduler_info()["workers"]) != n_workers:
                time.sleep(0.1)
            X_cluster, y_cluster = client.persist(
                [
                    da.from_array(X, chunks=(args.chunk_rows, -1)),
                    da.from_array(y, chunks=args.chunk_rows),
                ]
            )
            distributed.wait([X_cluster, y_cluster])
            before = bytes_sent(client)
            on_cluster = fit_lbfgs(X_cluster, y_cluster)
            sent = bytes_sent(client) - before
            _, cluster_time, cluster_times = timed_fits(
                functools.partial(fit_lbfgs, X_cluster, y_cluster), args.repeats
            )
            results.append(
                {
                    "setting": f"Dask, {n_workers} worker{'s' * (n_workers > 1)}",
                    "time_s": cluster_time,
                    "times_s": cluster_times,
                    "iterations": int(on_cluster.n_iter_[0]),
                    "bytes_sent": int(sent),
                    "max_coef_diff": float(np.abs(on_cluster.coef_ - in_memory.coef_).max()),
                }
            )
            print(f"{n_workers} workers: {cluster_time:.3g} s", file=sys.stderr, flush=True)
            del X_cluster, y_cluster
        return results, int(X.nbytes)


def beyond_one_worker(args, distributed, da):
    from dask.utils import parse_bytes

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=args.memory_limit,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        X, y = make_problem(da, args.big_samples, args.n_features, args.chunk_rows, 1)
        X, y = client.persist([X, y])
        distributed.wait([X, y])
        workers_before = set(client.scheduler_info()["workers"])
        before = bytes_sent(client)
        start = time.perf_counter()
        model = fit_lbfgs(X, y)
        elapsed = time.perf_counter() - start
        sent = bytes_sent(client) - before
        workers_after = set(client.scheduler_info()["workers"])
        return {
            "X_bytes": int(X.nbytes),
            "memory_limit_per_worker": args.memory_limit,
            "time_s": elapsed,
            "iterations": int(model.n_iter_[0]),
            "bytes_sent": int(sent),
            "workers_unchanged": workers_before == workers_after,
            "larger_than_one_worker": int(X.nbytes) > parse_bytes(args.memory_limit),
        }


def report(results, X_bytes, beyond):
    lines = [
        f"Fit on {X_bytes / 2**20:.0f} MiB of float64 (K = {N_CLASSES}, lbfgs, tol={TOL}):",
        "",
        "| setting | time (s) | iterations | bytes sent by workers | of X | max coef diff |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results:
        lines.append(
            f"| {row['setting']} | {row['time_s']:.3g} | {row['iterations']} | "
            f"{row['bytes_sent'] / 2**10:.0f} KiB | {row['bytes_sent'] / X_bytes:.2%} | "
            f"{row['max_coef_diff']:.1e} |"
        )
    lines += [
        "",
        f"{beyond['X_bytes'] / 2**20:.0f} MiB of X over 2 workers with memory_limit="
        f"{beyond['memory_limit_per_worker']} each (larger than one worker's limit: "
        f"{'yes' if beyond['larger_than_one_worker'] else 'no, --quick'}): fitted in "
        f"{beyond['time_s']:.3g} s, {beyond['iterations']} iterations, "
        f"{beyond['bytes_sent'] / 2**10:.0f} KiB sent by the workers, workers "
        f"{'unchanged' if beyond['workers_unchanged'] else 'RESTARTED'}.",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per setting (3)")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "dask.json"
    )
    args = parser.parse_args(argv)
    try:
        import dask.array as da
        import distributed
    except ImportError:
        parser.exit(1, "bench_dask.py needs the dask extra: pip install 'skmultilogit[dask]'\n")
    if args.quick:
        args.n_samples, args.n_features, args.chunk_rows = 20_000, 20, 5_000
        args.big_samples, args.memory_limit = 200_000, "400MiB"
        args.repeats = args.repeats or 1
    else:
        args.n_samples, args.n_features, args.chunk_rows = 400_000, 50, 50_000
        args.big_samples, args.memory_limit = 1_500_000, "500MiB"
        args.repeats = args.repeats or 3
    with threadpoolctl.threadpool_limits(1):
        results, X_bytes = compare_with_memory(args, distributed, da)
        beyond = beyond_one_worker(args, distributed, da)
    text = report(results, X_bytes, beyond)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text(text + "\n")
    args.output.write_text(
        json.dumps({"quick": args.quick, "in_memory_vs_dask": results, "beyond": beyond}, indent=2)
    )
    if not beyond["workers_unchanged"]:
        sys.exit("a worker was restarted during the fit beyond one worker's memory")


if __name__ == "__main__":
    main()
