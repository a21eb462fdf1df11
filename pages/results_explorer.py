"""Results explorer: training curves, joint vs separate vs archive, per-sample scores, speed, batch runs.

Layout and widgets only: readers and figures are in veer.viz, evaluation in veer.evaluate, batch outputs
in veer.batch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from veer import viz

viz.ensure_navigation()
from veer import batch
from veer.errors import VeerError

BENCH_FILE = viz.ASSETS / "bench.json"


@st.cache_resource
def eval_store() -> viz.ResultCache:
    """Evaluation reports run from this page, shared by every session of this server."""
    return viz.ResultCache(sizeof=lambda _: 1)


def eval_key(which: str, n: int, seed: int) -> tuple:
    """Cache key of an evaluation: its data and the weights it would use."""
    weights = tuple(viz.models_signature(m) for m in ("joint", "separate"))
    return (which, n, seed, weights) if which == "fresh" else (which, weights)


def run_evaluation(which: str, n: int, seed: int, bar) -> dict:
    """Evaluate both pipelines on the bundled samples or a fresh set (cached by its inputs)."""
    from veer.evaluate import evaluate_folder, generate_eval_set

    key = eval_key(which, n, seed)
    hit = eval_store().get(key)
    if hit is not None:
        return hit

    def progress(done: int, total: int, text: str) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=text[:90])

    if which == "fresh":
        folder = Path(tempfile.gettempdir()) / f"veer_eval_{seed}_{n}"
        bar.progress(0.0, text=f"generating {n} fresh logs...")
        generate_eval_set(folder, n, seed, progress=progress)
    else:
        folder = viz.SAMPLES_DIR
    report = evaluate_folder(folder, progress=progress, models_dir=viz.MODELS_DIR)
    eval_store().put(key, report)
    return report


st.title("Results explorer")
st.write("How the shipped models were trained, how the joint model compares with the separate masks and "
         "with the archive's figures, per-sample scores, and how fast it all runs.")

names = viz.pipelines()
anchors = viz.load_anchors()

# --------------------------------------------------------------------------- training curves
st.header("Training curves")
histories = {n: viz.load_history(n) for pipe in names.values() for n in pipe}
available = [n for n, rows in histories.items() if rows]
if not available:
    st.info("No training histories in assets/models yet (they are written next to the weights by "
            "`python -m veer train`).", icon=":material/info:")
else:
    model = st.selectbox("Model", available, key="history_model")
    card = viz.load_card(model) or {}
    st.plotly_chart(viz.history_figure(histories[model]), key="history")
    facts = [f"{card.get('task', '?')} model"]
    training = card.get("training") or {}
    steps, seconds = viz.training_totals(card)
    if steps:
        facts.append(f"{steps:,} steps" + (" (continued from earlier weights)" if training.get("init") else ""))
    if seconds:
        facts.append(f"{seconds / 60:.0f} min")
    hardware = training.get("hardware")
    if isinstance(hardware, dict):
        facts.append(", ".join(str(hardware[k]) for k in ("device", "cpu", "gpu") if hardware.get(k)))
    elif hardware:
        facts.append(str(hardware))
    st.caption(" · ".join(facts) + ". Validation scores are on fixed synthetic tiles never used for training.")
    st.download_button("History (CSV)", viz.frame_csv(viz.history_frame(histories[model])),
                       file_name=f"{model}.history.csv", mime="text/csv", on_click="ignore", key="dl_history")

# --------------------------------------------------------------------------- evaluation data
st.header("Joint vs separate vs archive")
shipped, shipped_path = viz.find_report()
stale = None if shipped else viz.stale_report()
if stale is not None:
    st.info(f"{viz.shown_path(stale)} was made with other weights than those in use, so it is not shown. "
            f"Remake it with `python -m veer evaluate --data DIR --n 30 --truth-curves --out {viz.shown_path(stale)}`.",
            icon=":material/info:")
choices = (["Shipped evaluation report"] if shipped else []) + ["Model cards (validation tiles)", "Bundled samples",
                                                                "Fresh evaluation set"]
which = st.radio("Measured on", choices, horizontal=True, key="eval_source")
report = None
if which == "Shipped evaluation report":
    report = shipped
    seeds = shipped.get("data", {}).get("seeds")
    st.caption(f"{viz.shown_path(shipped_path)}: {shipped.get('data', {}).get('description', '')}"
               + (f" (generated from seeds {seeds[0]:,}-{seeds[1]:,})" if seeds else "")
               + f" · device: {shipped.get('device', '?')}")
elif which in ("Bundled samples", "Fresh evaluation set"):
    fresh = which == "Fresh evaluation set"
    kind = "fresh" if fresh else "bundled"
    n, seed = 0, 0
    if fresh:
        c1, c2 = st.columns(2)
        n = c1.number_input("Logs to generate", 1, 20, 2, key="fresh_n")
        seed = c2.number_input("First seed", 0, 2**31 - 1, 20_000_000, key="fresh_seed",
                               help="Evaluation seeds start far away from any training seed.")
    report = eval_store().get(eval_key(kind, int(n), int(seed)))
    if report is None:
        if not fresh:
            from veer.synth import find_samples

            paths = find_samples(viz.SAMPLES_DIR)
            sizes = [viz.image_size(p) for p in paths]
            mpx = sum(w * h for w, h in (s for s in sizes if s)) / 1e6
            if not paths:
                st.info("No bundled samples in assets/samples.", icon=":material/info:")
            else:
                st.write(f"{len(paths)} bundled logs, {mpx:.1f} Mpx in all.")
        st.write("Runs both pipelines on every log and scores them: on a CPU this takes a few seconds per "
                 "megapixel per pipeline; the result is kept until the weights change.")
        if st.button("Run the evaluation", type="primary", key=f"run_{kind}"):
            bar = st.progress(0.0, text="starting...")
            try:
                report = run_evaluation(kind, int(n), int(seed), bar)
            except ImportError as exc:
                st.error(f"The evaluation needs a part of veer that is not installed: {exc}")
            except VeerError as exc:
                st.error(str(exc), icon=":material/error:")
            bar.empty()
    if report is not None:
        st.caption(report.get("data", {}).get("description", "") + f" · device: {report.get('device', '?')}")

if which == "Model cards (validation tiles)" or report is None:
    ours = {"veer joint": viz.per_class_from_cards("joint"), "veer separate (each mask alone)":
            viz.per_class_from_cards("separate")}
    measured_on = "the model cards' validation tiles"
else:
    ours = {"veer joint": viz.per_class_from_report(report, "joint"),
            "veer separate (stitched)": viz.per_class_from_report(report, "separate")}
    measured_on = "the chosen evaluation logs"
sources = {**{k: v for k, v in ours.items() if v}, "archive joint": viz.archive_joint_per_class(anchors)}
frame = viz.comparison_frame(sources)
if not any(ours.values()):
    st.info("No measured figures yet (no model cards, no evaluation run): only the archive's are shown.",
            icon=":material/info:")
metric = st.radio("Score", ["f1", "iou"], format_func={"f1": "F1", "iou": "IoU"}.get, horizontal=True,
                  key="cmp_metric")
st.plotly_chart(viz.comparison_figure(frame, metric), key="comparison")
masks = viz.archive_separate_f1(anchors)
st.caption(f"veer's figures: {measured_on}. Archive: the joint model's approximate per-class figures. "
           f"The archive's separate masks scored F1 {' / '.join(viz.fmt(v) for v in masks)}, but the source "
           "does not say which mask is which class, so they are not placed on the class axis.")
means = viz.means_frame(sources, archive_masks=viz.archive_separate_f1(anchors))
viz.show_table(st, means)
d1, d2 = st.columns(2)
d1.download_button("Per-class comparison (CSV)", viz.frame_csv(frame), file_name="veer_per_class.csv",
                   mime="text/csv", on_click="ignore", key="dl_cmp")
d2.download_button("Averages (CSV)", viz.frame_csv(means), file_name="veer_means.csv", mime="text/csv",
                   on_click="ignore", key="dl_means")

if report is not None:
    spread = viz.intervals_frame(report)
    if not spread.empty:
        st.subheader("How much the figures hang on the logs drawn")
        viz.show_table(st, spread)
        st.caption(viz.INTERVALS_CAPTION)
    st.header("Per sample")
    per_sample = viz.samples_frame(report)
    viz.show_table(st, per_sample)
    st.download_button("Per-sample scores (CSV)", viz.frame_csv(per_sample), file_name="veer_per_sample.csv",
                       mime="text/csv", on_click="ignore", key="dl_samples")
    st.header("Confusion matrices")
    cols = st.columns(len(report.get("pipelines", {})) or 1)
    for col, (mode, pipe) in zip(cols, report.get("pipelines", {}).items()):
        if pipe.get("confusion_matrix"):
            col.plotly_chart(viz.confusion_figure(pipe["confusion_matrix"], viz.PIPELINE_LABELS.get(mode, mode)),
                             key=f"cm_{mode}")
    st.caption("Rows: the truth; columns: the prediction; each row sums to 100 %. Pixels where the two "
               "curves overlap are not scored.")
    curves = viz.curve_quality_frame(report)
    if not curves.empty:
        st.header("Digitised curves")
        viz.show_table(st, curves)
        st.caption(viz.CURVES_CAPTION)
        st.download_button("Curve scores (CSV)", viz.frame_csv(curves), file_name="veer_curves.csv",
                           mime="text/csv", on_click="ignore", key="dl_curves")
        kinds = viz.row_kinds_frame(report)
        if not kinds.empty:
            st.subheader("Where the rows are lost")
            st.plotly_chart(viz.row_kinds_figure(kinds), key="row_kinds")
            st.caption(viz.ROW_KINDS_CAPTION)

# --------------------------------------------------------------------------- benchmark
st.header("Speed")
bench = viz.read_json(BENCH_FILE)
if not bench:
    st.info("No benchmark figures shipped (assets/bench.json is absent). Measure them with "
            "`python -m veer bench --save`.", icon=":material/info:")
else:
    table = viz.bench_frame(bench)
    if not table.empty:
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button("Benchmark (CSV)", viz.frame_csv(table), file_name="veer_bench.csv", mime="text/csv",
                           on_click="ignore", key="dl_bench")
    fig = viz.bench_figure(bench, anchors)
    if fig is not None:
        st.plotly_chart(fig, key="bench")
    with st.expander("Raw benchmark record"):
        st.json(bench)

# --------------------------------------------------------------------------- batch runs
st.header("Batch runs")
st.write("Open the output folder of a `python -m veer batch` run to see its summary, its failures and, "
         "scan by scan, the mask and the digitised curves it wrote.")
batch_dir = st.text_input("Batch output folder", key="batch_dir", placeholder="e.g. results/",
                          help="The --out folder of 'python -m veer batch', as this server sees it.")
if not batch_dir.strip():
    st.info("No batch folder given. Make one with `python -m veer batch SCANS... --out results/` "
            "(files, folders or glob patterns), then give that folder here.", icon=":material/info:")
else:
    try:
        summary = batch.open_batch(batch_dir)
    except VeerError as exc:
        summary = None
        st.error(str(exc), icon=":material/error:")
    if summary is not None:
        figs = batch.batch_figures(summary)
        k1, k2, k3, k4, k5 = st.columns(5)
        k1.metric("Scans done", f"{figs['done']:,} of {figs['scans']:,}",
                  help=f"{figs['skipped']:,} of them finished by an earlier run" if figs["skipped"] else None)
        k2.metric("Scans failed", f"{figs['failed']:,}")
        k3.metric("Megapixels", f"{figs['megapixels']:,.1f}")
        k4.metric("Median seconds per scan", viz.fmt(figs["median_seconds"]))
        k5.metric("Mean coverage, curve 1 / curve 2",
                  f"{viz.fmt(figs['coverage_curve1'])} / {viz.fmt(figs['coverage_curve2'])}",
                  help="Share of (row, track) places where the curve was found, averaged over the scans done.")
        st.caption(f"Device: {', '.join(figs['devices']) or 'not recorded'}.")
        st.dataframe(summary, hide_index=True, width="stretch", key="batch_summary")  # raw: archives are long
        st.download_button("Batch summary (CSV)", viz.frame_csv(summary), file_name="veer_batch_summary.csv",
                           mime="text/csv", on_click="ignore", key="dl_batch_summary")
        failures = batch.batch_failures(summary)
        if len(failures):
            st.subheader(f"Failures ({len(failures):,})")
            viz.show_table(st, failures, key="batch_failures")
        stems = batch.browsable_scans(summary)
        if not stems:
            st.info("No finished scan in this batch to show.", icon=":material/info:")
        else:
            st.subheader("One scan")
            stem = st.selectbox("Scan", stems, key="batch_scan")
            try:
                view = batch.open_scan(batch_dir, summary, stem)
            except VeerError as exc:
                view = None
                st.error(str(exc), icon=":material/error:")
            if view is not None:
                st.plotly_chart(viz.mask_figure(view.labels, view.conflict, title=f"{stem}: mask"), key="batch_mask",
                                config={"scrollZoom": True, "displaylogo": False})
                h, w = view.labels.shape
                note = f"{w:,} x {h:,} px"
                if view.row.get("device"):
                    note += f" · {view.row['device']}"
                if view.row.get("las_note"):
                    note += f" · {view.row['las_note']}"
                st.caption(note)
                if view.curves is None:
                    st.info(f"No curves CSV for {stem} in this folder.", icon=":material/info:")
                else:
                    st.dataframe(view.curves, hide_index=True, width="stretch", key="batch_curves")
                labels = {"mask": ("Mask (PNG)", "image/png"), "conflict": ("Conflict map (PNG)", "image/png"),
                          "curves_csv": ("Curves (CSV)", "text/csv"),
                          "las": ("Curves by depth (LAS 2.0)", "text/plain")}
                cols = st.columns(len(view.outputs) or 1)
                for col, (kind, path) in zip(cols, view.outputs.items()):
                    label, mime = labels[kind]
                    col.download_button(label, view.files[kind], file_name=path.name, mime=mime,
                                        on_click="ignore", key=f"dl_batch_{kind}")
