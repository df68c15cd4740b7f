"""Grain-growth DNS speed: fused numba step vs memory bandwidth, IMEX, torch, tracking, and py-pde.

Run: ``python benchmarks/bench_graingrowth.py [--size 512] [--q 12] [--repeat 30] [--device cpu]`` (never in
CI). Prints the machine, the versions and a table. Measured in one run, on one machine:

- ``numpy copy``: ``np.copyto`` of a (Q, ny, nx) float64 array into a preallocated one, the reference bandwidth;
- ``numba explicit step``: the fused one-pass Euler step (``GrainGrowthEquation.explicit_step``), with the byte
  model read η + write η^{n+1} = 2·Q·ny·nx·8 bytes per step (the neighbouring rows of the stencil stay in cache);
  the bandwidth fraction is (bytes/s of the step) / (bytes/s of the copy of the same bytes);
- ``numba rhs + euler add``: the generic path (tendency, then η + dt·R), for comparison;
- ``imex step``: the core IMEX stepper (fused numba tendency + one real FFT pair per order parameter);
- ``torch cpu``: the torch explicit step and IMEX step on the CPU (float64, torch's own thread pool);
- with ``--device cuda``: the torch explicit and IMEX steps on the GPU against a device-to-device copy of the same
  bytes (``Tensor.copy_``) on that GPU, each call timed to completion (``torch.cuda.synchronize``);
- ``tracking``: the ``after_step`` hook (labels + reassignment check) per call, and per step at reassign_every;
- single-field Allen–Cahn ∂c/∂t = κ∇²c + c − c³ (Q = 1, the same equation as py-pde's ``AllenCahnPDE`` with
  ``interface_width`` = κ) on the same periodic grid with explicit Euler at the same dt: our fused kernel vs py-pde's
  compiled numba stepper (``EulerSolver(backend="numba")``; compile time excluded; both results compared). py-pde
  allocates temporaries every step, so its time depends on the allocator's state: timed here, after the large
  arrays above were allocated and freed (glibc then serves 2 MiB from its heap), a 512² step took 0.6–1.7 ms; in a
  fresh process, where glibc maps fresh pages for each, 4.5–6 ms (2-core AMD EPYC). The faster figure is printed.
  Both solvers run under the same numba threading layer; under workqueue, whose parallel regions are much dearer
  than OpenMP's, our kernel runs serially at Q = 1 (``parallel_min_size``).

Timings are medians (and best times) over ``--repeat`` calls after a warm-up. On a machine shared with other jobs
the parallel kernels suffer first; the script prints the 1-minute load average and numba's threading layer so a
reader can judge (``NUMBA_THREADING_LAYER=workqueue`` avoids the OpenMP spin-wait slowdown on busy machines).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hybrid.cases import load_case
from hybrid.core.integrators import IMEXEuler
from hybrid.solvers.graingrowth_kernels import graingrowth_step_numba


def _time(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> tuple[float, float]:
    """(median, best) wall seconds of ``fn`` over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def _machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.node()} | {cpu} | {os.cpu_count()} cores | {platform.system()} {platform.release()} | "
        f"1-min load {load:.2f}"
    )


def _versions() -> str:
    import numba
    import torch

    out = [
        f"python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"numba {numba.__version__} ({numba.config.THREADING_LAYER}, {numba.get_num_threads()} threads)",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
    ]
    try:
        import pde

        out.append(f"py-pde {pde.__version__}")
    except ImportError:
        out.append("py-pde not installed")
    from hybrid import __version__

    out.append(f"hybrid {__version__}")
    return ", ".join(out)


def _case(size: int, q: int, integrator: str, backend: str = "numpy", device: str = "cpu") -> dict[str, Any]:
    return {
        "case": {"name": "bench", "model": "graingrowth", "seed": 1, "backend": backend, "device": device},
        "grid": {"lengths": [2.0 * size, 2.0 * size], "shape": [size, size]},
        "model": {"order_parameters": q},
        "initial": {"kind": "voronoi", "grains": max(4, (size * size) // 262)},
        "time": {"integrator": integrator, "dt": 0.25, "steps": 1},
    }


def _device_rows(n: int, q: int, device: str, rep: int) -> list[tuple[str, tuple[float, float], str]]:
    """The torch explicit and IMEX steps on ``device`` against a copy of the same bytes on that device."""
    import torch

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def synced(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            fn()
            sync()

        return run

    dsim = load_case(_case(n, q, "euler", backend="torch", device=device))
    dsim.output.path = None
    deq: Any = dsim.equation
    eta = dsim.state["eta"]
    nbytes = 2 * eta.numel() * eta.element_size()
    dst = torch.empty_like(eta)
    t_copy = _time(synced(lambda: dst.copy_(eta)), rep)
    ds = [dsim.state]

    def step() -> None:
        ds[0] = ds[0].replace(deq.explicit_step(ds[0], 0.25), 0.25)

    t_step = _time(synced(step), rep)
    dimex = IMEXEuler(deq, 0.25)
    di = [dsim.state]

    def imex_step() -> None:
        di[0] = dimex(di[0])

    t_imex = _time(synced(imex_step), rep)
    gbs = nbytes / t_step[0] / 1e9
    return [
        (f"torch {device} copy (read + write eta)", t_copy, f"{nbytes / t_copy[0] / 1e9:.2f} GB/s"),
        (
            f"torch {device} explicit step",
            t_step,
            f"{gbs:.2f} GB/s = {t_copy[0] / t_step[0]:.2f} (best {t_copy[1] / t_step[1]:.2f}) of the {device} copy",
        ),
        (f"torch {device} imex step", t_imex, f"{t_imex[0] / t_step[0]:.1f}x the {device} explicit step"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="grid points per side (default 512)")
    ap.add_argument("--q", type=int, default=12, help="order parameters Q (default 12, as the shipped case)")
    ap.add_argument("--repeat", type=int, default=30, help="timed repetitions (median)")
    ap.add_argument("--device", default="cpu", help="also time the torch kernels on this device (e.g. cuda)")
    args = ap.parse_args(argv)
    n, q, rep = args.size, args.q, args.repeat
    print(f"machine: {_machine()}")
    print(f"versions: {_versions()}")
    print(f"grid {n}x{n}, Q = {q}, float64; eta = {q * n * n * 8 / 2**20:.1f} MiB\n")
    rows: list[tuple[str, tuple[float, float], str]] = []
    few = max(5, rep // 3)

    def frac(a: tuple[float, float], b: tuple[float, float]) -> str:
        """Bandwidth of a as a fraction of b's (same bytes), median and best."""
        return f"{b[0] / a[0]:.2f} (best {b[1] / a[1]:.2f})"

    # -- memory reference: copy of the same bytes
    sim = load_case(_case(n, q, "euler"))
    sim.output.path = None
    eq: Any = sim.equation
    eta = sim.state["eta"]
    nbytes = 2 * eta.nbytes  # read + write
    dst = np.empty_like(eta)
    t_copy = _time(lambda: np.copyto(dst, eta), rep)
    rows.append(("numpy copy (read + write eta)", t_copy, f"{nbytes / t_copy[0] / 1e9:.2f} GB/s"))

    # -- fused explicit step through the equation (buffer recycling as in a run)
    holder = [sim.state]

    def step() -> None:
        holder[0] = holder[0].replace(eq.explicit_step(holder[0], 0.25), 0.25)

    t_step = _time(step, rep)
    rows.append(
        ("numba explicit step (fused)", t_step, f"{nbytes / t_step[0] / 1e9:.2f} GB/s = {frac(t_step, t_copy)} of copy")
    )
    out = np.empty_like(eta)
    t_kernel = _time(lambda: graingrowth_step_numba(eta, 0.25, *eq._args, out=out), rep)
    rows.append(
        (
            "  kernel alone, preallocated out",
            t_kernel,
            f"{nbytes / t_kernel[0] / 1e9:.2f} GB/s = {frac(t_kernel, t_copy)} of copy",
        )
    )

    def generic() -> None:
        st = holder[0]
        r = eq.rhs(st)["eta"]
        holder[0] = st.replace({**st.fields, "eta": st["eta"] + 0.25 * r}, 0.25)

    t_gen = _time(generic, few)
    rows.append(("numba rhs + euler add (generic path)", t_gen, f"{t_gen[0] / t_step[0]:.1f}x the fused step"))

    # -- IMEX
    imex = IMEXEuler(eq, 0.25)
    st_i = [sim.state]

    def imex_step() -> None:
        st_i[0] = imex(st_i[0])

    t_imex = _time(imex_step, few)
    rows.append(("imex step (numba rhs + numpy FFTs)", t_imex, f"{t_imex[0] / t_step[0]:.1f}x the fused step"))

    # -- tracking / reassignment hook
    t_track = _time(lambda: eq.after_step(sim.state), few)
    rows.append(
        (
            "after_step (track + reassign check)",
            t_track,
            f"{t_track[0] / eq.every * 1e3:.2f} ms/step at reassign_every = {eq.every}",
        )
    )

    # -- torch on the CPU
    import torch

    tsim = load_case(_case(n, q, "euler", backend="torch"))
    tsim.output.path = None
    teq: Any = tsim.equation
    ts = [tsim.state]

    def torch_step() -> None:
        ts[0] = ts[0].replace(teq.explicit_step(ts[0], 0.25), 0.25)

    t_torch = _time(torch_step, few)
    rows.append(
        (
            f"torch cpu explicit step ({torch.get_num_threads()} threads)",
            t_torch,
            f"{t_torch[0] / t_step[0]:.1f}x the numba step",
        )
    )
    timex = IMEXEuler(teq, 0.25)
    tsi = [tsim.state]

    def torch_imex() -> None:
        tsi[0] = timex(tsi[0])

    t_timex = _time(torch_imex, few)
    rows.append(("torch cpu imex step", t_timex, f"{t_timex[0] / t_imex[0]:.2f}x the numpy imex step"))

    if args.device != "cpu":
        rows += _device_rows(n, q, args.device, rep)

    # -- single-field Allen–Cahn vs py-pde (same equation, grid, dt, steps)
    kappa, dt, steps = 2.0, 0.25, 200
    c0 = np.random.default_rng(0).uniform(-0.5, 0.5, (n, n))
    ours = np.ascontiguousarray(c0[None])
    buf = np.empty_like(ours)

    def ours_run() -> np.ndarray:
        a, b = ours.copy(), buf
        for _ in range(steps):
            graingrowth_step_numba(a, dt, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, kappa, out=b)
            a, b = b, a
        return a

    res_ours = ours_run()
    try:
        import pde

        grid = pde.CartesianGrid([[0.0, 2.0 * n], [0.0, 2.0 * n]], [n, n], periodic=True)
        field = pde.ScalarField(grid, c0.T.copy())  # py-pde arrays are (x, y)
        solver = pde.EulerSolver(pde.AllenCahnPDE(interface_width=kappa), backend="numba", adaptive=False)
        stepper = solver.make_stepper(field, dt=dt)
        stepper(field.copy(), 0.0, 2 * dt)  # compile
        holder_p: list[Any] = [None]

        def pde_run() -> None:
            work = field.copy()
            stepper(work, 0.0, steps * dt)
            holder_p[0] = work

        # alternate the two solvers, one run of `steps` steps each per round, so that both see the same machine
        # state; the ratio is the median of the rounds' ratios
        pde_run()
        ours_run()
        t_o: list[float] = []
        t_p: list[float] = []
        for _ in range(max(5, few)):
            for fn, acc in ((ours_run, t_o), (pde_run, t_p)):
                t0 = time.perf_counter()
                fn()
                acc.append((time.perf_counter() - t0) / steps)
        ratio = statistics.median(p / o for p, o in zip(t_p, t_o, strict=True))
        diff = float(np.abs(holder_p[0].data.T - res_ours[0]).max())
        rows.append(("Allen-Cahn Q=1: hybrid fused numba step", (statistics.median(t_o), min(t_o)), ""))
        rows.append(
            (
                "Allen-Cahn Q=1: py-pde EulerSolver numba",
                (statistics.median(t_p), min(t_p)),
                f"hybrid is {ratio:.1f}x faster (median over {len(t_o)} alternating rounds); "
                f"max |difference| {diff:.1e}",
            )
        )
    except ImportError:
        rows.append(
            ("Allen-Cahn Q=1: py-pde", (float("nan"), float("nan")), "py-pde not installed (pip install py-pde)")
        )
        med, best = _time(ours_run, 5, warmup=1)
        rows.append(("Allen-Cahn Q=1: hybrid fused numba step", (med / steps, best / steps), ""))

    width = max(len(r[0]) for r in rows)
    print(f"{'case'.ljust(width)}  {'median ms':>9}  {'best ms':>8}  notes")
    for name, (med, best), note in rows:
        print(f"{name.ljust(width)}  {1e3 * med:9.3f}  {1e3 * best:8.3f}  {note}")
    print(f"\nbyte model of a step: read eta + write eta_new = 2 x {q} x {n} x {n} x 8 B = {nbytes / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
