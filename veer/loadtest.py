"""The load test behind ``python -m veer bench --what load``: many dashboard sessions at once.

The dashboard serves every browser session from one process: the models are
loaded once (:func:`veer.infer.get_segmenter`) and a process-wide gate bounds
how many segmentations run at the same time (``VEER_MAX_CONCURRENT``,
:func:`veer.infer.set_max_concurrent`); the others wait and are told their
place in the queue. :func:`load_test` checks that claim end to end in one
process:

1. the input: one bundled sample scan (the smallest in ``assets/samples`` by
   default) with its truth mask, or a synthetic log of the given size
   (:func:`veer.synth.generate_log`), as the bytes a user would upload;
2. one reference session, alone: read the bytes, segment, score;
3. ``sessions`` threads released together by a :class:`threading.Barrier`,
   each doing what a session of the live-segmentation page does: read the
   uploaded bytes with :func:`veer.io.read_scan`, take the process-wide
   segmenter, segment with an ``on_queued`` callback that records whether and
   at which position it had to wait, and score against the truth
   (:func:`veer.evaluate.score_prediction`, :func:`veer.metrics.error_map`);
4. every label map (and conflict map, separate pipeline) must be identical
   (``np.array_equal``) to the reference, and every score too.

Figures (the keys of :data:`FIGURE_KEYS`): wall seconds, per-session latency
(upload to scores) median and max, time spent waiting for a slot, how many
sessions were queued and the largest queue position seen, the process's peak
resident memory (``ru_maxrss``) and its growth over the single run, the
resident memory sampled every 10 ms in each phase (which does not depend on
what the process did before), how many segmenter objects the sessions got
(1: the models are shared), and "identical: N/N".
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from veer.bench import peak_rss_mb, rss_mb
from veer.errors import ConfigError

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"

# what load_test returns (documented; the tests check them)
FIGURE_KEYS = (
    "sessions", "max_concurrent", "mode", "device", "input", "height", "width", "megapixels", "tiles",
    "weights", "model_load_s", "single_s", "wall_s", "latency_median_s", "latency_max_s",
    "wait_median_s", "wait_max_s", "segment_median_s", "queued", "max_queue_position", "rss_ready_mb",
    "single_peak_rss_mb", "peak_rss_mb", "rss_growth_mb", "sampled_rss_mb", "segmenters",
    "identical", "scores_identical", "macro_curves_f1", "failed", "errors", "ok", "per_session",
)


# --------------------------------------------------------------------------- memory


class RssSampler:
    """Samples :func:`rss_mb` every ``interval`` s in a thread; ``peak`` is the largest seen."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = float(interval)
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="veer-rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


# --------------------------------------------------------------------------- input


def smallest_sample(folder: Path | str = SAMPLES_DIR) -> Path:
    """The bundled sample scan (with truth) with the fewest pixels."""
    from PIL import Image

    from veer.synth import find_samples

    found = []
    for p in find_samples(folder):
        with Image.open(p) as img:
            found.append((img.width * img.height, p.name, p))
    if not found:
        raise ConfigError(f"no sample scans with truth in {folder}; pass --height/--width for a synthetic log")
    return min(found)[2]


def resolve_sample(sample: str | Path | None, folder: Path | str = SAMPLES_DIR) -> Path:
    """A sample given as a path, a file name or a stem in ``folder``; default the smallest."""
    if sample is None:
        return smallest_sample(folder)
    p = Path(sample)
    if p.is_file():
        return p
    from veer.synth import find_samples

    for q in find_samples(folder):
        if sample in (q.name, q.stem):
            return q
    raise ConfigError(f"--sample {sample}: not a file, nor a sample in {folder}")


def load_input(*, sample: str | Path | None = None, height: int | None = None, width: int | None = None,
               seed: int = 0, say: Callable[[str], None] = print) -> tuple[bytes, str, np.ndarray | None]:
    """(uploaded bytes, file name, truth mask or None): a synthetic log when a size is given, else a sample."""
    if height is not None or width is not None:
        from veer.io import png_bytes
        from veer.synth import generate_log

        say(f"generating a {width or 'random'} x {height or 'random'} px synthetic log (seed {seed}) ...")
        log = generate_log(seed, height=height, width=width)
        if log.ext == "jpg" and log.encoded is not None:
            return log.encoded, f"synthetic_{seed}.jpg", log.mask
        return png_bytes(log.image), f"synthetic_{seed}.png", log.mask
    from veer.classes import read_mask

    path = resolve_sample(sample)
    mask_path = path.with_name(f"{path.stem}.mask.png")  # as veer.synth.save_log names it
    truth = read_mask(mask_path, allow_ignore=True) if mask_path.exists() else None
    return path.read_bytes(), path.name, truth


# --------------------------------------------------------------------------- the shared segmenter


def segmenter_provider(mode: str = "joint", device: str = "auto", models_dir: str | Path | None = None, *,
                       tile: int | None = None, overlap: float | None = None, batch: int | None = None,
                       random_weights: bool = False) -> Callable[[], Any]:
    """What a session calls to get the process-wide segmenter.

    With the defaults that is exactly the dashboard's call,
    :func:`veer.infer.get_segmenter`. With other tiling or random weights it is
    one :class:`veer.infer.Segmenter` built on first use and shared the same way.
    """
    from veer import infer

    if not random_weights and tile is None and overlap is None and batch is None:
        return lambda: infer.get_segmenter(mode, device, models_dir)
    lock = threading.Lock()
    box: list[Any] = []

    def get() -> Any:
        with lock:
            if not box:
                from veer.bench import _load_models

                models, cards = _load_models(mode, str(models_dir) if models_dir else None, random_weights)
                seg = infer.Segmenter.from_models(
                    mode, models, device, tile=tile or infer.DEFAULT_TILE,
                    overlap=infer.DEFAULT_OVERLAP if overlap is None else overlap, batch_size=batch)
                seg.cards = cards
                box.append(seg)
            return box[0]

    return get


@contextlib.contextmanager
def max_concurrent(n: int | None) -> Iterator[int]:
    """Set the process-wide concurrency limit for the block (None: leave it); yields the limit in force."""
    from veer import infer

    before = infer.queue_status()["limit"]
    if n is not None:
        if int(n) < 1:
            raise ConfigError(f"--max-concurrent must be at least 1, got {n}")
        infer.set_max_concurrent(int(n))
    try:
        yield infer.queue_status()["limit"]
    finally:
        infer.set_max_concurrent(before)


# --------------------------------------------------------------------------- one session


def _score_json(score: dict | None) -> str | None:
    """Scores as canonical JSON (NaN-safe equality between sessions)."""
    if score is None:
        return None
    return json.dumps(score, sort_keys=True, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))


def run_session(data: bytes, name: str, truth: np.ndarray | None, get_segmenter: Callable[[], Any], *,
                record: dict | None = None, progress: Callable[[int, int], None] | None = None) -> tuple[Any, dict]:
    """What one live-segmentation session does: read the upload, segment, score.

    Returns (result, record); ``record`` (filled in place when given) gets
    ``queued``, ``queue_position`` (from ``on_queued``), ``latency_s`` (upload
    to scores), ``read_s``, ``wait_s`` (from calling segment to holding a slot,
    i.e. the queue), ``segment_s`` (in the slot), ``score_s``, ``segmenter``
    (its id, to show the sessions share one) and ``scores`` (canonical JSON).
    """
    from veer.evaluate import score_prediction
    from veer.io import read_scan
    from veer.metrics import error_counts, error_map

    rec = record if record is not None else {}
    rec.update(queued=False, queue_position=None)
    slot_at: list[float] = []

    def on_queued(position: int) -> None:
        rec["queued"] = True
        rec["queue_position"] = int(position)

    def on_progress(done: int, total: int) -> None:
        if not slot_at:  # the segmenter reports (0, total) as soon as it holds a slot
            slot_at.append(time.perf_counter())
        if progress is not None:
            progress(done, total)

    t0 = time.perf_counter()
    scan = read_scan(data, name=name)
    seg = get_segmenter()
    rec["segmenter"] = id(seg)
    t_call = time.perf_counter()
    result = seg.segment(scan.gray, progress=on_progress, on_queued=on_queued)
    t1 = time.perf_counter()
    score = None
    if truth is not None:
        score = score_prediction(truth, result.labels, result.conflict if result.mode == "separate" else None)
        score["error_counts"] = error_counts(error_map(truth, result.labels))
    t2 = time.perf_counter()
    rec["latency_s"] = t2 - t0
    rec["read_s"] = t_call - t0
    rec["wait_s"] = (slot_at[0] if slot_at else t_call) - t_call
    rec["segment_s"] = float(result.seconds)
    rec["score_s"] = t2 - t1
    rec["scores"] = _score_json(score)
    rec["macro_curves_f1"] = None if score is None else score.get("macro_curves", {}).get("f1")
    return result, rec


def _same(result: Any, ref: Any) -> bool:
    if not np.array_equal(result.labels, ref.labels):
        return False
    if (result.conflict is None) != (ref.conflict is None):
        return False
    return result.conflict is None or np.array_equal(result.conflict, ref.conflict)


# --------------------------------------------------------------------------- the load test


def load_test(*, sessions: int = 8, max_concurrent_runs: int | None = None, mode: str = "joint",
              device: str = "auto", models_dir: str | Path | None = None, sample: str | Path | None = None,
              height: int | None = None, width: int | None = None, seed: int = 0,
              data: bytes | None = None, name: str = "upload.png", truth: np.ndarray | None = None,
              tile: int | None = None, overlap: float | None = None, batch: int | None = None,
              random_weights: bool = False, get_segmenter: Callable[[], Any] | None = None,
              say: Callable[[str], None] = print, progress_every: float = 5.0,
              timeout: float = 3600.0) -> dict:
    """Drive ``sessions`` concurrent sessions through upload, segmentation and scoring.

    The input is ``data`` (bytes named ``name``, optional ``truth``) when
    given, else a synthetic log when ``height``/``width`` are given, else the
    bundled ``sample`` (default the smallest). ``max_concurrent_runs`` sets the
    process-wide gate for the run (None: ``VEER_MAX_CONCURRENT`` or the
    device default) and is restored afterwards. Returns the figures (keys
    :data:`FIGURE_KEYS`); ``ok`` is False if any session failed or differs.
    ``get_segmenter`` replaces :func:`segmenter_provider` (tests). ``say``
    gets progress lines (at most every ``progress_every`` s).
    """
    from veer import infer
    from veer.io import read_scan

    sessions = int(sessions)
    if sessions < 1:
        raise ConfigError(f"--sessions must be at least 1, got {sessions}")
    if data is None:
        data, name, truth = load_input(sample=sample, height=height, width=width, seed=seed, say=say)
    get_seg = get_segmenter or segmenter_provider(mode, device, models_dir, tile=tile, overlap=overlap,
                                                  batch=batch, random_weights=random_weights)

    with max_concurrent(max_concurrent_runs) as limit:
        say(f"loading the {mode} model(s) ...")
        t0 = time.perf_counter()
        seg = get_seg()
        load_s = time.perf_counter() - t0
        gray_shape = read_scan(data, name=name).gray.shape
        plan = seg.plan(*gray_shape)
        rss_ready = rss_mb()

        say(f"reference: one session alone on {name} ({gray_shape[1]} x {gray_shape[0]} px, "
            f"{plan.n_tiles} tiles) ...")
        with RssSampler() as single_rss:
            ref, ref_rec = run_session(data, name, truth, get_seg)
        single_peak = peak_rss_mb()
        say(f"reference done in {ref_rec['latency_s']:.2f} s; now {sessions} sessions at once, "
            f"at most {limit} segmenting at a time ...")

        records: list[dict] = [{"session": i} for i in range(sessions)]
        tiles_done = [0] * sessions
        results: list[Any] = [None] * sessions
        barrier = threading.Barrier(sessions + 1)
        finished = threading.Semaphore(0)

        def worker(i: int) -> None:
            rec = records[i]

            def progress(done: int, total: int) -> None:
                tiles_done[i] = done

            try:
                barrier.wait(timeout=timeout)
                results[i], _ = run_session(data, name, truth, get_seg, record=rec, progress=progress)
            except threading.BrokenBarrierError:
                rec["error"] = "the sessions did not all start"
            except Exception as exc:  # noqa: BLE001 - a failed session is a figure, not a crash
                rec["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            finally:
                rec["finished"] = True
                finished.release()

        threads = [threading.Thread(target=worker, args=(i,), name=f"veer-session-{i}", daemon=True)
                   for i in range(sessions)]
        with RssSampler() as load_rss:
            for t in threads:
                t.start()
            barrier.wait(timeout=timeout)  # every session is ready: go
            start = last = time.perf_counter()
            done = 0
            while done < sessions and time.perf_counter() - start < timeout:
                if finished.acquire(timeout=0.25):
                    done += 1
                now = time.perf_counter()
                if now - last >= progress_every and done < sessions:
                    last = now
                    q = infer.queue_status()
                    say(f"  {now - start:6.1f} s: {done}/{sessions} sessions done, {q['running']} segmenting, "
                        f"{q['queued']} queued, {sum(tiles_done)}/{sessions * plan.n_tiles} tiles")
            wall = time.perf_counter() - start
        for i, t in enumerate(threads):
            if t.is_alive():
                records[i].setdefault("error", f"still running after {timeout:.0f} s")

    peak = peak_rss_mb()
    identical = scores_same = 0
    for res, rec in zip(results, records):
        rec["identical"] = res is not None and "error" not in rec and _same(res, ref)
        rec["scores_identical"] = rec["identical"] and rec.get("scores") == ref_rec["scores"]
        identical += rec["identical"]
        scores_same += rec["scores_identical"]
    ok_recs = [r for r in records if "error" not in r]
    failed = sessions - len(ok_recs)
    lat = [r["latency_s"] for r in ok_recs]
    waits = [r["wait_s"] for r in ok_recs]
    segs = [r["segment_s"] for r in ok_recs]
    positions = [r["queue_position"] for r in ok_recs if r.get("queue_position")]
    keep = ("session", "latency_s", "read_s", "wait_s", "segment_s", "score_s", "queued", "queue_position",
            "identical", "scores_identical", "error")
    per_session = [{k: r.get(k) for k in keep} for r in records]

    def med(xs: list[float]) -> float | None:
        return float(statistics.median(xs)) if xs else None

    h, w = gray_shape
    fig = {
        "sessions": sessions, "max_concurrent": int(limit), "mode": mode, "device": ref.device,
        "input": name, "height": int(h), "width": int(w), "megapixels": h * w / 1e6, "tiles": plan.n_tiles,
        "weights": ("random (speed only)" if random_weights else
                    "shipped" if models_dir is None else f"from {models_dir}"),
        "model_load_s": load_s, "single_s": ref_rec["latency_s"], "wall_s": wall,
        "latency_median_s": med(lat), "latency_max_s": max(lat) if lat else None,
        "wait_median_s": med(waits), "wait_max_s": max(waits) if waits else None,
        "segment_median_s": med(segs),
        "queued": sum(1 for r in ok_recs if r.get("queued")),
        "max_queue_position": max(positions) if positions else 0,
        "rss_ready_mb": rss_ready, "single_peak_rss_mb": single_peak, "peak_rss_mb": peak,
        "rss_growth_mb": peak - single_peak,
        "sampled_rss_mb": {"ready": rss_ready, "single_peak": single_rss.peak, "load_peak": load_rss.peak,
                           "growth": load_rss.peak - single_rss.peak},
        "segmenters": len({r["segmenter"] for r in ok_recs} | {ref_rec["segmenter"]}),
        "identical": int(identical), "scores_identical": int(scores_same) if truth is not None else None,
        "failed": failed, "errors": sorted({r["error"] for r in records if "error" in r}),
        "macro_curves_f1": ref_rec.get("macro_curves_f1"),
        "per_session": per_session,
    }
    fig["ok"] = failed == 0 and identical == sessions and (truth is None or scores_same == sessions)
    return fig


# --------------------------------------------------------------------------- reporting


def _s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} s"


def table(fig: dict) -> str:
    """The load test's figures as an aligned two-column table."""
    sampled = fig["sampled_rss_mb"]
    scores = fig.get("scores_identical")
    rows = [
        ("input", f"{fig['input']}: {fig['width']} x {fig['height']} px ({fig['megapixels']:.2f} Mpx), "
                  f"{fig['tiles']} tiles, {fig['mode']}, {fig['weights']} weights"),
        ("device", str(fig["device"])),
        ("sessions", f"{fig['sessions']} at once, at most {fig['max_concurrent']} segmenting at a time; "
                     f"{fig['segmenters']} segmenter object(s) shared"),
        ("model load", _s(fig["model_load_s"])),
        ("single session", f"{_s(fig['single_s'])} (upload to scores)"),
        ("wall", _s(fig["wall_s"])),
        ("latency", f"median {_s(fig['latency_median_s'])}, max {_s(fig['latency_max_s'])}"),
        ("waiting for a slot", f"median {_s(fig['wait_median_s'])}, max {_s(fig['wait_max_s'])}"),
        ("segmenting", f"median {_s(fig['segment_median_s'])} per session"),
        ("queued", f"{fig['queued']} of {fig['sessions']}; largest queue position {fig['max_queue_position']}"),
        ("peak memory (RSS)", f"{fig['peak_rss_mb']:.0f} MB; +{fig['rss_growth_mb']:.0f} MB over the single "
                              f"run's peak of {fig['single_peak_rss_mb']:.0f} MB"),
        ("sampled RSS", f"models ready {sampled['ready']:.0f} MB, single run peak {sampled['single_peak']:.0f} MB, "
                        f"{fig['sessions']} sessions peak {sampled['load_peak']:.0f} MB "
                        f"({sampled['growth']:+.0f} MB)"),
        ("identical", f"{fig['identical']}/{fig['sessions']}"
                      + ("" if scores is None else f" (scores {scores}/{fig['sessions']})")),
    ]
    if fig["failed"]:
        rows.append(("failed", f"{fig['failed']}: " + "; ".join(fig["errors"])))
    rows.append(("verdict", "ok" if fig["ok"] else "FAILED"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

