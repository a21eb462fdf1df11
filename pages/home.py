"""Home: what veer does, the class legend, the way to each page, device and models."""

import streamlit as st

from veer import viz

viz.ensure_navigation()


@st.cache_resource(show_spinner="Looking for a GPU...")
def device_text() -> str:
    from veer.device import describe_compute

    return describe_compute()


st.title("veer")
st.markdown("##### Lift curves off scanned paper well logs")
st.write(
    "veer reads a scan of a paper well log, labels every pixel as background, the solid curve (curve1) "
    "or the dashed/dotted curve (curve2), and turns the labels into depth-indexed curves (CSV, LAS). "
    "It runs two pipelines side by side so you can see the difference: one **joint** three-class model "
    "that decides all classes together, and three **separate** binary masks stitched afterwards, "
    "which can claim a pixel twice or leave it unclaimed."
)

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Pages")
    st.page_link("pages/live_segmentation.py", label="Live segmentation", icon=":material/layers:")
    st.caption("Upload a scan or pick a bundled sample; both pipelines side by side, conflicts, "
               "scores against truth, downloads.")
    st.page_link("pages/results_explorer.py", label="Results explorer", icon=":material/monitoring:")
    st.caption("Training curves, joint vs separate vs the archive's figures, per-sample scores, "
               "confusion matrices, speed.")
    st.page_link("pages/decision_lever.py", label="Decision lever", icon=":material/call_split:")
    st.caption("Semantic or instance? The first fork of any pixel-level task, as a lever you can move.")
with right:
    st.subheader("Class legend")
    st.markdown(viz.class_legend_markdown(), unsafe_allow_html=True)
    st.caption("These colours mean the same thing in every overlay and chart.")
    st.subheader("Device")
    st.write(f"Models run on: **{device_text()}**")

st.subheader("Shipped models")
names = viz.pipelines()
cards = {name: viz.load_card(name) for pipe in names.values() for name in pipe}
if not any(cards.values()):
    st.warning(
        "No trained models are shipped in assets/models yet, so the live page cannot segment. "
        "Train them with `python -m veer train --task joint` (and `--task binary --target ...` for the "
        "separate masks), or restore them with `git checkout -- assets/models`.",
        icon=":material/warning:",
    )
else:
    measured = viz.measured_figures(report=viz.find_report()[0])
    anchors = viz.load_anchors()
    archive = anchors.get("archive", {}).get("joint", {}).get("macro_all", {})
    joint = measured["joint"] or {}
    sep = measured["separate"] or {}
    masks = [v for v in sep.get("mask_f1", []) if v is not None]
    archive_masks = viz.archive_separate_f1(anchors)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Joint F1, mean of 3 classes", viz.fmt(joint.get("f1"), 3),
              help=f"Background included, like the archive's figure: its joint model peaked at "
                   f"F1 {viz.fmt(archive.get('f1'))}.")
    c2.metric("Joint IoU, mean of 3 classes", viz.fmt(joint.get("iou"), 3),
              help=f"The archive's joint model peaked at IoU {viz.fmt(archive.get('iou'))}.")
    c3.metric("Joint F1, curves only", viz.fmt(joint.get("f1_curves"), 3),
              help="Mean over curve1 and curve2: how well the curves themselves are found.")
    c4.metric("Separate masks, mean F1", viz.fmt(sum(masks) / len(masks) if masks else None, 3),
              help="Each binary mask on its own class: "
                   + " / ".join(viz.fmt(v) for v in sep.get("mask_f1", []))
                   + " (background / curve1 / curve2). The archive's three masks: "
                   + " / ".join(viz.fmt(v) for v in archive_masks) + ".")
    st.caption(f"For comparison, the archive's joint model: F1 {viz.fmt(archive.get('f1'))}, "
               f"IoU {viz.fmt(archive.get('iou'))} (mean of 3 classes); its separate masks: F1 "
               + " / ".join(viz.fmt(v) for v in archive_masks) + ".")
    viz.show_table(st, viz.cards_frame(cards))
    missing = [n for n, c in cards.items() if not c]
    if missing:
        st.warning("Missing model files: " + ", ".join(missing) + ". The pipelines that need them "
                   "will say so on the live page.", icon=":material/warning:")
    if measured["source"]:
        st.caption("Figures from the " + " and ".join(measured["source"]) + " in assets/.")
