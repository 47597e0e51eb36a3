"""The main job: the 8x8 digits, ours against LogisticRegression, in about two minutes.

What ``python benchmarks/bench_digits.py`` runs (``--full`` runs the
thorough harness instead: every solver, SAG/SAGA, memory, cross-validation).

For each of the three digits problems (raw, standardised, binarised):

* the reference optimum ``f*``, as in the full harness (``_harness.py``);
* each library's defaults, once as a user constructs it;
* each of ours (``newton-cholesky``, ``lbfgs``, ``newton-cg``) and each of
  LogisticRegression's deterministic solvers (``lbfgs``, ``newton-cg``,
  ``newton-cholesky``) on a ``tol`` ladder that stops at the first ``tol``
  whose fit reaches a relative objective gap of :data:`GAP_TARGET`: just
  wide enough to find each solver's time to that gap, the fastest setting
  of each library being the quickest of its solvers.

Every fit runs under one BLAS thread (``--blas-threads``), the fastest
setting of both libraries at this size; times are medians of ``--repeats``
fits after a warm-up. A progress bar (tqdm) counts the ladders; ``--verbose``
prints a line per run. It ends with the verdict per problem, where the plot,
the report and the JSON went, and the versions and thread settings.
"""

import functools
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    OURS,
    SKLEARN,
    C,
    Progress,
    environment,
    environment_line,
    fastest_to_gap,
    gap_time_axes,
    markdown_table,
    reference_optimum,
    run_one,
    thread_limit,
    write_json,
)
from _problems import DIGITS_BUILDERS
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from skmultilogit import MultinomialLogitClassifier

GAP_TARGET = 1e-8
LADDER = (1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
MAX_ITER = 10_000
OUR_SOLVERS = ("newton-cholesky", "lbfgs", "newton-cg")
LR_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky")
LIBRARY_NAMES = {OURS: "skmultilogit", SKLEARN: "LogisticRegression"}
# Colours by library (ours blue, LogisticRegression orange), markers by solver.
LIBRARY_COLOURS = {
    OURS: ("#08519c", "#3182bd", "#6baed6"),
    SKLEARN: ("#a63603", "#e6550d", "#fd8d3c"),
}
SOLVER_MARKERS = {"lbfgs": "o", "newton-cg": "s", "newton-cholesky": "D"}


@dataclass(frozen=True)
class Ladder:
    """One (library, solver) whose ``tol`` is tightened until the gap is reached."""

    library: str
    solver: str

    def estimator(self, tol):
        if self.library == OURS:
            return MultinomialLogitClassifier(C=C, solver=self.solver, tol=tol, max_iter=MAX_ITER)
        return LogisticRegression(C=C, solver=self.solver, tol=tol, max_iter=MAX_ITER)


def ladders():
    return [Ladder(OURS, s) for s in OUR_SOLVERS] + [Ladder(SKLEARN, s) for s in LR_SOLVERS]


def defaults(library):
    return MultinomialLogitClassifier() if library == OURS else LogisticRegression()


def run_problem(problem, args, reporter):
    """The reference, the defaults and the ladders of one problem: its rows."""
    reporter.step(f"{problem.name}: f*")
    f_star, f_star_from, details = reference_optimum(problem)
    data = (problem.X_train, problem.y_train, problem.X_test, problem.y_test)
    measure = functools.partial(
        run_one, f_star=f_star, C=C, repeats=args.repeats, time_budget=args.max_seconds_per_run
    )
    rows = []

    def record(library, solver, tol, result):
        row = {"problem": problem.name, "library": library, "solver": solver, "tol": tol}
        rows.append(row | result)
        reporter.line(
            f"[{problem.name}] {library} {solver} tol={'default' if tol is None else tol}: "
            f"{result['time_s']:.3g} s, gap {result['gap']:.1e}"
            + (", ConvergenceWarning" if result["warned"] else "")
        )

    reporter.step(f"{problem.name}: defaults")
    for library in (OURS, SKLEARN):
        estimator = defaults(library)
        record(library, estimator.solver, None, measure(functools.partial(clone, estimator), *data))
    for ladder in ladders():
        reporter.step(f"{problem.name}: {LIBRARY_NAMES[ladder.library]} {ladder.solver}")
        for tol in LADDER:
            result = measure(functools.partial(ladder.estimator, tol), *data)
            record(ladder.library, ladder.solver, tol, result)
            if result["gap"] <= GAP_TARGET:
                break
    reference = {"f_star": f_star, "f_star_from": f_star_from, "fits": details}
    return problem.describe() | {"reference": reference}, rows


def verdict(problems, rows):
    """Per problem: each library's fastest ladder run to the gap, the ratio, and its defaults."""
    ladder_rows = [r for r in rows if r["tol"] is not None]
    entries = fastest_to_gap(ladder_rows, [p["name"] for p in problems], GAP_TARGET)
    for entry, problem in zip(entries, problems, strict=True):
        entry["shape"] = problem
        for library in (OURS, SKLEARN):
            entry[library] = {
                "fastest": entry[library],
                "defaults": next(
                    r
                    for r in rows
                    if r["problem"] == problem["name"]
                    and r["library"] == library
                    and r["tol"] is None
                ),
            }
    return entries


def _setting(row):
    return f"{row['solver']}, tol={row['tol']:.0e}" if row else "did not reach it"


def verdict_text(entries):
    """The verdict as markdown: a short table per problem."""
    out = []
    for entry in entries:
        shape = entry["shape"]
        out.append(
            f"### digits, {entry['problem']} ({shape['n_train']} x {shape['n_features']}, "
            f"K = {shape['n_classes']})"
        )
        out.append("")
        records = []
        for library in (OURS, SKLEARN):
            best, default = entry[library]["fastest"], entry[library]["defaults"]
            records.append(
                {
                    "library": LIBRARY_NAMES[library],
                    f"fastest to gap {GAP_TARGET:.0e}": _setting(best),
                    "time (s)": f"{best['time_s']:.3g}" if best else "-",
                    "defaults: time (s)": f"{default['time_s']:.3g}",
                    "defaults: gap": f"{default['gap']:.1e}",
                    "defaults: warning": "ConvergenceWarning" if default["warned"] else "none",
                }
            )
        out.append(markdown_table(records, tuple(records[0])))
        ratio = entry["ratio"]
        if ratio is None:
            comparison = "n/a"
        elif ratio <= 1:
            comparison = f"{ratio:.2f} (ours {1 / ratio:.1f}x faster)"
        else:
            comparison = f"{ratio:.2f} (ours {ratio:.1f}x slower)"
        out.append("")
        out.append(f"Time to the gap, ours / LogisticRegression's: {comparison}")
        out.append("")
    return "\n".join(out)


def plot(problems, rows, path):
    """Gap against time, log-log, a panel per problem: ours blue, LogisticRegression orange.

    Each solver's ladder is a line (markers: its ``tol`` values, loosest
    first); each library's defaults a large star. Returns the path, or None
    without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        return None
    fig, axes = plt.subplots(
        1, len(problems), figsize=(5.2 * len(problems), 4.6), squeeze=False, layout="constrained"
    )
    handles = {}
    for ax, problem in zip(axes.flat, problems, strict=True):
        mine = [r for r in rows if r["problem"] == problem["name"]]
        for library, solvers in ((OURS, OUR_SOLVERS), (SKLEARN, LR_SOLVERS)):
            for colour, solver in zip(LIBRARY_COLOURS[library], solvers, strict=True):
                ladder = [
                    r
                    for r in mine
                    if r["library"] == library and r["solver"] == solver and r["tol"] is not None
                ]
                if not ladder:
                    continue
                (line,) = ax.plot(
                    [r["time_s"] for r in ladder],
                    [max(r["gap"], 1e-16) for r in ladder],
                    color=colour,
                    marker=SOLVER_MARKERS[solver],
                    linestyle="-" if library == OURS else "--",
                    linewidth=2,
                    markersize=6,
                    label=f"{LIBRARY_NAMES[library]} {solver}",
                )
                handles.setdefault(line.get_label(), line)
            default = next(r for r in mine if r["library"] == library and r["tol"] is None)
            ax.plot(
                default["time_s"],
                max(default["gap"], 1e-16),
                marker="*",
                markersize=16,
                color=LIBRARY_COLOURS[library][0],
                markeredgecolor="black",
                linestyle="",
            )
            handles[f"{LIBRARY_NAMES[library]} defaults"] = Line2D(
                [],
                [],
                marker="*",
                markersize=14,
                color=LIBRARY_COLOURS[library][0],
                markeredgecolor="black",
                linestyle="",
            )
        gap_time_axes(ax, GAP_TARGET)
        ax.set_title(
            f"digits, {problem['name']}: {problem['n_train']} x {problem['n_features']}, "
            f"K = {problem['n_classes']}"
        )
        ax.set_xlabel("fit time (s), median")
    handles[f"gap {GAP_TARGET:.0e}"] = Line2D([], [], color="grey", linestyle=":")
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(args):
    """Run the main job with parsed ``args``; print the verdict and write the outputs."""
    start = time.perf_counter()
    problems, rows = [], []
    names = args.problems
    total = len(names) * (2 + len(ladders()))
    reporter = Progress(total, args.verbose)
    with thread_limit(args.blas_threads[0]):
        env = environment(args.blas_threads[:1])
        for name in names:
            described, problem_rows = run_problem(DIGITS_BUILDERS[name](), args, reporter)
            problems.append(described)
            rows.extend(problem_rows)
    reporter.close()
    entries = verdict(problems, rows)
    output = Path(args.output)
    plot_path = None if args.no_plot else plot(problems, rows, output.with_suffix(".png"))
    elapsed = time.perf_counter() - start
    if args.no_plot:
        plot_note = "Plot: not drawn (--no-plot)."
    elif plot_path is None:
        plot_note = "Plot: matplotlib is not installed (pip install -e '.[benchmarks]')."
    else:
        plot_note = f"Plot: {plot_path}"
    text = "\n".join(
        [
            f"## Time to a relative objective gap of {GAP_TARGET:.0e}, C = {C:g}",
            "",
            verdict_text(entries),
            plot_note,
            f"Report: {output.with_suffix('.md')}; all runs: {output}",
            environment_line(env),
            f"Medians of {args.repeats} fits after a warm-up; {len(rows)} runs in "
            f"{elapsed:.0f} s. The thorough ladder: --full.",
        ]
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(text + "\n")
    write_json(
        output,
        {
            "settings": {
                "mode": "main",
                "problems": names,
                "repeats": args.repeats,
                "C": C,
                "ladder": list(LADDER),
                "gap_target": GAP_TARGET,
                "max_seconds_per_run": args.max_seconds_per_run,
            },
            "environment": env,
            "problems": problems,
            "rows": rows,
            "verdict": [
                {
                    "problem": e["problem"],
                    "ratio_ours_over_sklearn": e["ratio"],
                    **{lib: e[lib] for lib in (OURS, SKLEARN)},
                }
                for e in entries
            ],
            "plot": None if plot_path is None else str(plot_path),
            "total_seconds": elapsed,
        },
    )
    print(text)
    return entries
