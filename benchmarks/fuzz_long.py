"""Long fuzz run: >= 1000 generated networks x pipelines through optimize, onnxruntime and back (`make fuzz`).

Each case is a network spec and a pipeline string drawn by :mod:`graphpress.testing.fuzz`; the check is
:func:`graphpress.testing.fuzz_check.check_case` (the result runs, output shapes unchanged, ONNX export matches
torch in onnxruntime; or a clear InfeasibleRequestError with the model untouched, counted as "refused").
Failures are collected rather than shrunk, so one run reports every failing case
with the spec that rebuilds it. Workers are separate processes with distinct hypothesis seeds.

    python benchmarks/fuzz_long.py --cases 1000 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import warnings


def _run_worker(args: tuple[int, int]) -> tuple[int, int, list[tuple[str, str, str]]]:
    """Run ``cases`` examples with hypothesis seed ``worker_seed``; returns (count, refused, failures)."""
    cases, worker_seed = args
    warnings.simplefilter("ignore")
    import logging

    from hypothesis import HealthCheck, given, seed, settings

    from graphpress.testing.fuzz import build_network, net_specs, pipelines
    from graphpress.testing.fuzz_check import check_case

    logging.disable(logging.WARNING)  # per-layer notices of the ONNX writer would drown the report
    failures: list[tuple[str, str, str]] = []
    count = refused = 0

    @seed(worker_seed)
    @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(net_specs(), pipelines())
    def one_case(spec, pipeline):
        nonlocal count, refused
        count += 1
        if count % 50 == 0:  # progress, so a long run can be watched (and counted if it is cut short)
            print(f"worker {worker_seed}: {count} cases, {len(failures)} failures", flush=True)
        try:
            refused += check_case(build_network(spec), pipeline) == "refused"
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none stops the run
            failures.append((repr(spec), pipeline, f"{type(exc).__name__}: {exc}"[:400]))
            print(f"worker {worker_seed}: FAIL {spec!r} {pipeline}: {exc}"[:600], flush=True)

    one_case()
    return count, refused, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="total generated cases (default 1000)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="base hypothesis seed")
    args = parser.parse_args(argv)
    per_worker = -(-args.cases // args.workers)
    jobs = [(per_worker, args.seed + k) for k in range(args.workers)]
    start = time.time()
    if args.workers == 1:
        results = [_run_worker(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(_run_worker, jobs)
    count = sum(n for n, _, _ in results)
    refused = sum(r for _, r, _ in results)
    failures = [f for _, _, fs in results for f in fs]
    print(f"fuzz: {count} cases, {len(failures)} failures, {refused} refused as infeasible (model checked "
          f"unchanged), {time.time() - start:.0f} s")
    for spec, pipeline, error in failures:
        print(f"FAIL {spec}\n  pipeline: {pipeline}\n  {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
