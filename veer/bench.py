"""``python -m veer bench``: speed and memory of the segmenter and the generator.

Segment (``--what segment``), on a synthetic whole log (default 1664 x 17864
px, about 30 Mpx, from :func:`veer.synth.generate_log`, saved as a PNG):

* the engine, in a fresh child process so its memory is its own: read the PNG
  (:func:`veer.io.read_scan`), :meth:`veer.infer.Segmenter.segment`, write
  the mask PNG. "End to end" is read + segment + write (model loading and
  Python start-up are reported apart). Peak memory is the child's peak
  resident set (``ru_maxrss``), which covers everything it did.
* the naive way, in a second child, on the same tiles and the same threads:
  one tile at a time, no batching, fp32 NCHW tensors (no channels-last),
  the same views as the engine (the mirror unless ``--no-flip``; ``--views 4``
  adds both turned upside down) run as further passes per tile,
  ``torch.no_grad`` instead of inference mode, and full-image float32
  accumulators. The CPU is shared, so its load can change during a run: the
  child alternates, a strip of the log two tile rows high segmented by the
  engine, then the same tiles the naive way, for about ``--naive-tiles``
  tiles, and the speed-up is the ratio of those interleaved times. It also
  extrapolates the naive per-tile time to the whole log (plus the whole-image
  normalise/argmax it measures for real) and compares that with the full
  engine run.
* the network's cost: GMAC per megapixel (:func:`veer.model.gmac_per_megapixel`),
  the overlap factor of the tiling, the GFLOP/s the engine achieved, and the
  CPU's fp32 matrix-multiply peak (median of ``torch.mm`` on 2048 x 2048)
  measured in the same child just before, and the peak in the engine's own
  precision when that is not fp32 (``--precision``, default auto: bf16 on a
  CPU with native bf16, see :func:`veer.device.resolve_precision`). The
  engine's networks run where the segmenter runs them (``--backend``, default
  auto: OpenVINO on the CPU, see :mod:`veer.openvino_engine`); the naive way
  is always plain PyTorch.

Synth (``--what synth``): :func:`veer.synth.benchmark_tiles` training tiles per
second (single core) and the seconds to generate the whole log.

Load (``--what load``, not part of ``all``): ``--sessions N`` dashboard
sessions at once in this process, each reading the upload, segmenting with
the process-wide shared segmenter behind a gate of ``--max-concurrent K``
and scoring against the truth; every result must equal a single run's (exit
status 1 otherwise). Input: the smallest bundled sample (or ``--sample``), or
a synthetic log when ``--height``/``--width`` are given. See
:mod:`veer.loadtest`.

``--json OUT`` writes the figures as JSON; ``--save`` writes them to
``assets/bench.json``, which the dashboard's results page shows (a load
test's figures are merged into it under ``load``, keeping the others).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from veer.errors import VeerError
from veer.infer import multi_scale, scales_text

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BENCH_JSON = ASSETS / "bench.json"
LOG_HEIGHT, LOG_WIDTH = 17864, 1664

# The targets the issue set for this kind of machine (2 CPU cores).
TARGETS = {"end_to_end_s": 25.0, "peak_rss_mb": 2048.0, "speedup": 2.0}


# --------------------------------------------------------------------------- helpers


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
    """This process's resident set size now, in MB (NaN where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _loadavg() -> float | None:
    """The 1-minute load average (other work sharing the CPU), where the OS tells it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_gflops(n: int = 2048, reps: int = 7, device: Any = "cpu", dtype: str = "fp32") -> float:
    """Median GFLOP/s of ``torch.mm`` on n x n matrices (one warm-up), in fp32, bf16 or fp16."""
    import torch

    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    tdtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    a = torch.randn(n, n, generator=g).to(dev, tdtype)
    b = torch.randn(n, n, generator=g).to(dev, tdtype)
    times = []
    for i in range(reps + 1):
        _sync(dev)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(dev)
        if i:
            times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _load_models(mode: str, models_dir: str | None, random_weights: bool):
    """(models, cards) of a pipeline, from disk or (speed only) freshly initialised."""
    from veer.weights import PIPELINES, load_model

    names = PIPELINES[mode]
    if not random_weights:
        loaded = [load_model(n, models_dir, device="cpu") for n in names]
        return [m for m, _ in loaded], [c for _, c in loaded]
    import torch

    from veer.model import build_model
    from veer.weights import load_card

    torch.manual_seed(0)
    models, cards = [], []
    for n in names:
        try:
            config = load_card(n, models_dir)["config"]
        except VeerError:
            config = None  # no card either: the default architecture
        models.append(build_model(config, 3 if mode == "joint" else 1).eval())
        cards.append({"name": n, "random_weights": True})
    return models, cards


# --------------------------------------------------------------------------- child processes


def _cost_parts(seg: dict) -> str:
    """What the compute factor multiplies: 'overlap', 'overlap and views', ..."""
    parts = ["overlap"]
    if seg.get("views", 1) > 1:
        parts.append("views")
    if multi_scale(seg.get("scales")):
        parts.append("scales")
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _views(opts: dict) -> int:
    """Passes per tile asked for (:func:`veer.infer.views_for`)."""
    from veer.infer import views_for

    return views_for(opts.get("flip", True), opts.get("views"))


def _child_engine(opts: dict) -> dict:
    """Run in a fresh process: load, read, segment, write; report times and memory."""
    import torch

    from veer.classes import write_mask
    from veer.device import allocator_tuned, set_cpu_threads
    from veer.infer import Segmenter
    from veer.io import read_scan
    from veer.model import gmac_per_megapixel

    if opts.get("threads"):
        set_cpu_threads(opts["threads"])
    rss_import = rss_mb()
    t0 = time.perf_counter()
    models, cards = _load_models(opts["mode"], opts.get("models_dir"), opts.get("random_weights", False))
    seg = Segmenter.from_models(opts["mode"], models, opts["device"], tile=opts["tile"],
                                overlap=opts["overlap"], batch_size=opts.get("batch"),
                                precision=opts.get("precision") or "auto", views=_views(opts),
                                scales=opts.get("scales"), scale_views=opts.get("scale_views"),
                                backend=opts.get("backend") or "auto")
    seg.cards = cards
    load_s = time.perf_counter() - t0
    gmac = float(sum(gmac_per_megapixel(m) for m in seg.models))
    peak_mm = matmul_gflops(n=int(opts.get("matmul_n") or 2048), device=seg.device)
    peak_mm_prec = (peak_mm if seg.precision == "fp32" else
                    matmul_gflops(n=int(opts.get("matmul_n") or 2048), device=seg.device, dtype=seg.precision))
    rss_ready = rss_mb()

    t0 = time.perf_counter()
    scan = read_scan(opts["image"], max_pixels=10**9)
    read_s = time.perf_counter() - t0
    cpu0 = time.process_time()
    res = seg.segment(scan.gray)
    _sync(seg.device)
    cpu_s = time.process_time() - cpu0
    t1 = time.perf_counter()
    write_mask(opts["out_mask"], res.labels)
    write_s = time.perf_counter() - t1
    plan = seg.plan(*scan.shape)
    return {
        "device": res.device, "threads": torch.get_num_threads(), "load_average": _loadavg(),
        "tiles": plan.n_tiles, "tile": [plan.tile_h, plan.tile_w], "max_tile": list(seg.tile),
        "overlap": seg.overlap, "batch": seg.batch_size, "band_rows": seg.band_rows,
        # px the network evaluates per image px: the tiles' overlap times the passes per tile
        # (the views at every scale: a scale s costs s^2 of a pass)
        "compute_factor": plan.compute_factor * seg.passes, "overlap_factor": plan.compute_factor,
        "views": seg.views, "scales": list(seg.scales), "scale_views": seg.scale_views,
        "model_load_s": load_s, "read_s": read_s,
        "segment_s": res.seconds, "segment_cpu_s": cpu_s, "write_s": write_s,
        "end_to_end_s": read_s + res.seconds + write_s,
        "peak_rss_mb": peak_rss_mb(), "rss_after_import_mb": rss_import, "rss_ready_mb": rss_ready,
        "gmac_per_mpx": gmac, "matmul_gflops": peak_mm, "precision": seg.precision, "backend": seg.backend,
        "matmul_gflops_precision": peak_mm_prec,
        "label_shares": [float(v) for v in np.bincount(res.labels.ravel(), minlength=3)[:3] / res.labels.size],
        "weights": "random (speed only)" if opts.get("random_weights") else "shipped",
        "malloc_tuned": allocator_tuned(),
    }


def _child_naive(opts: dict) -> dict:
    """Naive vs engine on the same tiles, interleaved in time (see the module docstring).

    Each round takes a strip of the log two tile rows high (its tiles have
    exactly the size of the whole log's tiles), segments it with the engine,
    then runs the same tiles the naive way. Alternating keeps the ratio fair
    on a machine whose load changes while it runs.
    """
    import torch

    from veer.device import allocator_tuned, pick_device, set_cpu_threads
    from veer.infer import VIEW_FLIPS, Segmenter, at_scale, gaussian_weights, plan_tiles
    from veer.io import read_scan

    if opts.get("threads"):
        set_cpu_threads(opts["threads"])
    dev = pick_device(opts["device"])
    rw = opts.get("random_weights", False)
    models, _ = _load_models(opts["mode"], opts.get("models_dir"), rw)
    models = [m.to(dev).eval() for m in models]  # fp32, NCHW: no channels-last
    fast, _ = _load_models(opts["mode"], opts.get("models_dir"), rw)
    seg = Segmenter.from_models(opts["mode"], fast, dev, tile=opts["tile"], overlap=opts["overlap"],
                                batch_size=opts.get("batch"), precision=opts.get("precision") or "auto",
                                views=_views(opts), scales=opts.get("scales"),
                                scale_views=opts.get("scale_views"), backend=opts.get("backend") or "auto")
    gray = read_scan(opts["image"], max_pixels=10**9).gray
    H, W = gray.shape
    plan = seg.plan(H, W)
    th, tw = plan.tile_h, plan.tile_w
    weight = gaussian_weights(th, tw)
    acc = np.zeros((3, H, W), np.float32)   # the naive way: whole-image float32 accumulators
    wsum = np.zeros((H, W), np.float32)

    def one_view(t):
        with torch.no_grad():
            outs = [m(t) for m in models]
            if opts["mode"] == "joint":
                return torch.softmax(outs[0], 1)
            return torch.sigmoid(torch.cat(outs, 1))

    def views_of(t, views):
        p = one_view(t)
        for f in VIEW_FLIPS[1:views]:   # the same views as the engine, one after the other
            p = p + torch.flip(one_view(torch.flip(t, dims=f)), dims=f)
        return p / views

    def one_tile(y: int, x: int) -> None:
        t = torch.from_numpy(gray[y:y + th, x:x + tw].astype(np.float32) / 255.0)[None, None].to(dev)
        # and at the same scales as the engine, one after the other
        p = sum(at_scale(functools.partial(views_of, views=seg.views_at(s)), t, s)
                for s in seg.scales) / len(seg.scales)
        p = p[0].cpu().numpy()
        acc[:, y:y + th, x:x + tw] += p * weight
        wsum[y:y + th, x:x + tw] += weight

    # a strip two tile rows high whose plan has the whole log's tile size
    ov = int(np.ceil(seg.overlap * seg.tile[0]))
    strip = min(H, 2 * th - ov) if len(plan.ys) > 1 else H
    sub = plan_tiles(strip, W, seg.tile, seg.overlap, seg.align)
    per_round = sub.n_tiles
    rounds = max(1, int(opts["naive_tiles"]) // per_round)
    starts = np.rint(np.linspace(0, H - strip, rounds)).astype(int)
    seg.segment(gray[:strip])                 # warm-up both ways, not timed
    one_tile(*sub.origins[0])
    naive_s = engine_s = 0.0
    for y0 in starts:
        t0 = time.perf_counter()
        seg.segment(gray[y0:y0 + strip])
        _sync(dev)
        engine_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for y, x in sub.origins:
            one_tile(int(y0) + y, x)
        _sync(dev)
        naive_s += time.perf_counter() - t0
    tiles_timed = rounds * per_round
    wsum[wsum == 0] = 1.0  # pixels no timed tile reached
    t0 = time.perf_counter()
    probs = acc / wsum
    labels = probs.argmax(0).astype(np.uint8)
    finalize_s = time.perf_counter() - t0
    del probs, labels
    tile_s = naive_s / tiles_timed
    return {"rounds": int(rounds), "tiles_timed": int(tiles_timed), "tiles": plan.n_tiles,
            "strip_rows": int(strip), "strip_tile": [sub.tile_h, sub.tile_w],
            "tile_s": tile_s, "engine_tile_s": engine_s / tiles_timed, "speedup": naive_s / engine_s,
            "finalize_s": finalize_s, "segment_s_est": tile_s * plan.n_tiles + finalize_s,
            "peak_rss_mb": peak_rss_mb(), "malloc_tuned": allocator_tuned()}


def _run_child(kind: str, opts: dict, timeout: float = 3600) -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "veer.bench", "--child", kind, json.dumps(opts)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise VeerError(f"bench: the {kind} run failed (exit {proc.returncode}): {tail[0]}")
    out = json.loads(lines[-1])
    if "error" in out:
        raise VeerError(out["error"])
    return out


def _child_main(argv: list[str]) -> int:
    kind, opts = argv[0], json.loads(argv[1])
    try:
        out = _child_engine(opts) if kind == "engine" else _child_naive(opts)
    except VeerError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- the benchmarks


def bench_segment(*, height: int = LOG_HEIGHT, width: int = LOG_WIDTH, mode: str = "joint",
                  device: str = "auto", models_dir: str | None = None, tile: int | None = None,
                  overlap: float | None = None, batch: int | None = None, naive_tiles: int = 24,
                  threads: int | None = None, random_weights: bool = False, seed: int = 0,
                  log=None, say=print, matmul_n: int = 2048, precision: str = "auto",
                  flip: bool = True, backend: str = "auto", views: int | None = None,
                  scales=None, scale_views: int | None = None) -> dict:
    """Engine vs naive on one synthetic log; returns the figures (see the module docstring)."""
    from veer import infer
    from veer.io import save_png

    if log is None:
        from veer.synth import generate_log

        say(f"generating a {width} x {height} px synthetic log (seed {seed}) ...")
        t0 = time.perf_counter()
        log = generate_log(seed, height=height, width=width)
        gen_s = time.perf_counter() - t0
    else:
        gen_s = None
    gray = log.gray if hasattr(log, "gray") else np.asarray(log)
    H, W = gray.shape
    with tempfile.TemporaryDirectory(prefix="veer-bench-") as tmp:
        image = str(Path(tmp) / "log.png")
        save_png(image, gray)
        opts = {"mode": mode, "device": device, "models_dir": str(models_dir) if models_dir else None,
                "tile": tile or infer.DEFAULT_TILE,
                "overlap": infer.DEFAULT_OVERLAP if overlap is None else overlap,
                "batch": batch, "threads": threads, "random_weights": random_weights,
                "image": image, "out_mask": str(Path(tmp) / "log.mask.png"), "naive_tiles": naive_tiles,
                "matmul_n": matmul_n, "precision": precision, "flip": bool(flip), "views": views, "backend": backend,
                "scales": list(infer.scales_for(scales)), "scale_views": scale_views}
        say("segmenting it with the engine (child process) ...")
        eng = _run_child("engine", opts)
        say(f"timing the naive way against the engine on about {naive_tiles} of {eng['tiles']} tiles, "
            f"interleaved (child process) ...")
        naive = _run_child("naive", opts)
    mpx = H * W / 1e6
    work_gflop = 2 * eng["gmac_per_mpx"] * eng["compute_factor"] * mpx
    out = dict(eng)
    out.update({
        "mode": mode, "height": H, "width": W, "megapixels": mpx,
        "mpx_per_s": mpx / eng["end_to_end_s"], "segment_mpx_per_s": mpx / eng["segment_s"],
        "gflop_per_s": work_gflop / eng["segment_s"],
        "peak_fraction": work_gflop / eng["segment_s"] / eng["matmul_gflops"],
        "peak_fraction_precision": work_gflop / eng["segment_s"] / eng["matmul_gflops_precision"],
        "naive": naive, "speedup": naive["speedup"],
        "speedup_vs_full_run": naive["segment_s_est"] / eng["segment_s"],
        "generate_log_s": gen_s,
    })
    return out


def bench_synth(n: int = 200, size: int = 256) -> dict:
    from veer.synth import benchmark_tiles

    return {"tiles_per_s": float(benchmark_tiles(n=n, size=size)), "tile_size": size, "tiles": n}


# --------------------------------------------------------------------------- reporting


def _malloc_note(seg: dict) -> str:
    """How the CPU run's malloc was set (see veer.device.tune_cpu_allocator); "" off the CPU or if not recorded."""
    if "cpu" not in str(seg.get("device", "")).lower() or seg.get("malloc_tuned") is None:
        return ""
    return "; malloc kept mapped" if seg["malloc_tuned"] else "; malloc defaults (VEER_MALLOC=default or not glibc)"


def table(fig: dict) -> str:
    rows: list[tuple[str, str]] = []
    seg = fig.get("segment")
    if seg:
        nv = seg["naive"]
        full = seg["height"] * seg["width"] >= LOG_HEIGHT * LOG_WIDTH
        rows += [
            ("log", f"{seg['width']} x {seg['height']} px ({seg['megapixels']:.1f} Mpx), {seg['mode']}, "
                    f"{seg['weights']} weights"),
            ("device", f"{seg['device']}; fp32 matmul peak {seg['matmul_gflops']:.1f} GFLOP/s"
                       + (f", {seg['precision']} {seg['matmul_gflops_precision']:.1f} GFLOP/s"
                          if seg.get("precision", "fp32") != "fp32" else "") + "; "
                       f"load average {seg.get('load_average')} on {os.cpu_count()} cores" + _malloc_note(seg)),
            ("tiling", f"{seg['tiles']} tiles of {seg['tile'][1]} x {seg['tile'][0]} px, overlap >= "
                       f"{seg['overlap']:.3g}, batch {seg['batch']}, bands of {seg['band_rows']} rows; "
                       f"{seg['compute_factor']:.2f} px computed per image px"
                       + (f" ({seg['overlap_factor']:.2f} overlap x {seg['views']} views, "
                          f"{'the mirror too' if seg['views'] == 2 else 'mirrored and upside down too'})"
                          if seg.get("views", 1) > 1 else "")
                       + (f"; each tile at scales "
                          f"{scales_text(seg['scales'], seg.get('views'), seg.get('scale_views'))}"
                          if multi_scale(seg.get("scales")) else "")),
            ("model load", f"{seg['model_load_s']:.2f} s"),
            ("read PNG", f"{seg['read_s']:.2f} s"),
            ("segment", f"{seg['segment_s']:.2f} s ({seg['segment_mpx_per_s']:.2f} Mpx/s)"
                        + (f"; used {seg['segment_cpu_s']:.1f} CPU-s, {seg['segment_cpu_s'] / seg['segment_s']:.2f} "
                           f"of {os.cpu_count()} cores" if seg.get("segment_cpu_s") else "")),
            ("write mask PNG", f"{seg['write_s']:.2f} s"),
            ("end to end", f"{seg['end_to_end_s']:.2f} s ({seg['mpx_per_s']:.2f} Mpx/s)"
                           + (_mark(seg['end_to_end_s'] <= TARGETS['end_to_end_s']) if full
                              else "  (the 25 s target is for the whole 1664 x 17864 log)")),
            ("peak memory (RSS)", f"{seg['peak_rss_mb']:.0f} MB (after import {seg['rss_after_import_mb']:.0f} MB, "
                                  f"models ready {seg['rss_ready_mb']:.0f} MB)"
                                  f"{_mark(seg['peak_rss_mb'] <= TARGETS['peak_rss_mb'])}"),
            ("naive way", f"{nv['tile_s'] * 1000:.0f} ms per tile vs the engine's {nv['engine_tile_s'] * 1000:.0f} ms "
                          f"on the same {nv['tiles_timed']} of {nv['tiles']} tiles, interleaved in "
                          f"{nv['rounds']} round(s); whole log est. {nv['segment_s_est']:.1f} s"),
            ("speed-up", f"{seg['speedup']:.2f}x (interleaved); {seg['speedup_vs_full_run']:.2f}x against the "
                         f"full engine run above{_mark(seg['speedup'] >= TARGETS['speedup'])}"),
            ("network cost", f"{seg['gmac_per_mpx']:.2f} GMAC/Mpx; x{seg['compute_factor']:.2f} "
                             f"{_cost_parts(seg)} = "
                             f"{seg['gmac_per_mpx'] * seg['compute_factor']:.2f} GMAC per image Mpx"),
            ("achieved", f"{seg['gflop_per_s']:.1f} GFLOP/s = {100 * seg['peak_fraction']:.0f}% of the "
                         f"fp32 matmul peak"
                         + (f", {100 * seg['peak_fraction_precision']:.0f}% of the {seg['precision']} one"
                            if seg.get("precision", "fp32") != "fp32" else "")),
        ]
        if seg.get("generate_log_s") is not None:
            rows.append(("synth whole log", f"{seg['generate_log_s']:.2f} s"))
    syn = fig.get("synth")
    if syn:
        rows.append(("synth tiles", f"{syn['tiles_per_s']:.0f} tiles/s ({syn['tile_size']} px, single core)"))
    width = max(len(k) for k, _ in rows) if rows else 0
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _mark(ok: bool) -> str:
    return "  [target met]" if ok else "  [target MISSED]"


def add_arguments(parser) -> None:
    from veer.device import DEVICE_CHOICES, PRECISION_CHOICES
    from veer.infer import add_views_argument
    from veer.openvino_engine import BACKENDS

    parser.add_argument("--what", choices=("segment", "synth", "all", "load"), default="all",
                        help="what to measure (default all = segment and synth; load: many sessions at once)")
    parser.add_argument("--height", type=int, default=None,
                        help=f"log height in px (default {LOG_HEIGHT}; for load: a synthetic log instead of a sample)")
    parser.add_argument("--width", type=int, default=None,
                        help=f"log width in px (default {LOG_WIDTH}; for load: a synthetic log instead of a sample)")
    parser.add_argument("--sessions", type=int, default=8, metavar="N",
                        help="load: concurrent dashboard sessions (default 8)")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="K",
                        help="load: segmentations allowed at once (default VEER_MAX_CONCURRENT, else 1 on CPU, 2 on CUDA)")
    parser.add_argument("--sample", default=None, metavar="NAME",
                        help="load: bundled sample (stem, file name or path; default the smallest in assets/samples)")
    parser.add_argument("--mode", choices=("joint", "separate"), default="joint")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--models", default=None, metavar="DIR", help="weights folder (default assets/models)")
    parser.add_argument("--tile", type=int, default=None, help="largest tile side (default the segmenter's)")
    parser.add_argument("--overlap", type=float, default=None, help="least tile overlap (default the segmenter's)")
    parser.add_argument("--batch", type=int, default=None, help="tiles per batch (default by device)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default all cores)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="the engine's arithmetic (default auto; the naive way is always fp32)")
    add_views_argument(parser)   # both the engine and the naive way run these views
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="what runs the engine's networks (default auto: OpenVINO on the CPU when "
                             "installed; the naive way is always PyTorch)")
    parser.add_argument("--naive-tiles", type=int, default=24,
                        help="tiles timed the naive way (and again by the engine, interleaved)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic log")
    parser.add_argument("--random-weights", action="store_true",
                        help="untrained networks of the shipped architecture (speed only; for machines without weights)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures as JSON")
    parser.add_argument("--save", action="store_true", help="write the figures to assets/bench.json")


def run(args) -> int:
    from veer.weights import write_json

    fig: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m veer bench", *(sys.argv[2:] if sys.argv[1:2] == ["bench"] else [])]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__, "load_average_at_start": _loadavg()},
        "targets": TARGETS,
    }

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.what in ("synth", "all"):
        say("timing synth.benchmark_tiles ...")
        fig["synth"] = bench_synth()
    if args.what in ("segment", "all"):
        fig["segment"] = bench_segment(
            height=args.height or LOG_HEIGHT, width=args.width or LOG_WIDTH, mode=args.mode, device=args.device,
            models_dir=args.models, tile=args.tile, overlap=args.overlap, batch=args.batch,
            naive_tiles=args.naive_tiles, threads=args.threads, random_weights=args.random_weights,
            seed=args.seed, say=say, precision=args.precision, views=args.views, backend=args.backend,
            scales=args.scales, scale_views=args.scale_views)
    if args.what == "load":
        from veer import loadtest

        if args.threads:
            from veer.device import set_cpu_threads

            set_cpu_threads(args.threads)
        load = loadtest.load_test(
            sessions=args.sessions, max_concurrent_runs=args.max_concurrent, mode=args.mode,
            device=args.device, models_dir=args.models, sample=args.sample, height=args.height,
            width=args.width, seed=args.seed, tile=args.tile, overlap=args.overlap, batch=args.batch,
            random_weights=args.random_weights, say=say)
        fig["load"] = {"created": fig["created"], "command": fig["command"], **load}
        print(loadtest.table(load))
    else:
        print(table(fig))
    if args.json:
        write_json(args.json, fig)
        say(f"figures written to {args.json}")
    if args.save:
        write_json(BENCH_JSON, _merged_with_saved(fig, args.what))
        say(f"figures written to {BENCH_JSON}")
    return 0 if fig.get("load", {}).get("ok", True) else 1


def _merged_with_saved(fig: dict, what: str) -> dict:
    """What --save writes: a load test joins the saved figures; other runs keep a saved load test."""
    saved = {}
    try:
        saved = json.loads(BENCH_JSON.read_text())
    except (OSError, ValueError):
        pass
    if not isinstance(saved, dict):
        saved = {}
    if what == "load":
        return {**saved, "load": fig["load"]} if saved else fig
    return {**fig, "load": saved["load"]} if "load" in saved else fig


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2:]))
    sys.exit("use: python -m veer bench --help")
