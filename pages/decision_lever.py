"""Decision lever: semantic or instance segmentation, made interactive.

Layout and widgets only: the rule lives in veer.decision, the figures in veer.viz.
"""

import streamlit as st

from veer import decision, viz

viz.ensure_navigation()

st.title("Decision lever: semantic or instance?")
st.write(
    "Before choosing a loss or a backbone, a pixel-level task forks: label every pixel with a class "
    "from a set fixed in advance (**semantic**), or find each object and give it its own mask "
    "(**instance**). The fork is a question about the data, not about accuracy. Answer the questions, "
    "move the lever, and watch where the verdict lands."
)

anchors = viz.load_anchors()
marks = anchors.get("archive", {}).get("lever", {}).get("marks", list(decision.LEVER_MARKS))
log_objects = int(anchors.get("archive", {}).get("lever", {}).get("log_objects", 2))

ask, show = st.columns([1, 2.1], gap="large")
with ask:
    st.subheader("The questions")
    known = st.radio("Is the class set known ahead of time?", ["Yes", "No"], horizontal=True,
                     key="q_known") == "Yes"
    small = st.radio("Is it small and fixed (the same few classes on every image)?", ["Yes", "No"],
                     horizontal=True, key="q_small") == "Yes"
    named = st.radio("Are the objects named, or anonymous look-alikes?",
                     ["Named (each a different known thing)", "Anonymous, countable duplicates"],
                     key="q_named").startswith("Named")
    n = st.slider("Distinct objects to tell apart in one image", min_value=min(marks), max_value=max(marks),
                  value=log_objects, step=1, key="lever",
                  help=f"A well log has {log_objects}: the same two named curves on every scan.")
    verdict = decision.decide(n, class_set_known=known, small_and_fixed=small, named=named)
    st.plotly_chart(viz.lever_scale_figure(n, verdict.split_at, marks, lo=min(marks), hi=max(marks)),
                    config={"displayModeBar": False}, key="lever_scale")
    st.caption(f"Marks at {', '.join(str(m) for m in marks)}. A log has {log_objects}. "
               "The shading shows where these answers put the split.")

with show:
    measured = viz.measured_figures(report=viz.find_report()[0])
    archive_joint = anchors.get("archive", {}).get("joint", {}).get("macro_all", {})
    archive_masks = viz.archive_separate_f1(anchors)
    joint = measured["joint"] or {}
    sep = measured["separate"] or {}
    semantic_lines = [
        "every pixel: background, curve1 or curve2",
        f"archive: F1 {viz.fmt(archive_joint.get('f1'))} · IoU {viz.fmt(archive_joint.get('iou'))} (3-class mean)",
        (f"veer joint: F1 {viz.fmt(joint.get('f1'))} · IoU {viz.fmt(joint.get('iou'))}"
         if joint.get("f1") is not None else "veer joint: no trained model shipped yet"),
        "cost: look-alikes of one class merge",
    ]
    mask_f1 = sep.get("mask_f1") or []
    archive_masks_text = " / ".join(viz.fmt(v) for v in archive_masks)
    instance_lines = [
        "here: 3 binary masks, stitched afterwards",
        f"archive masks: F1 {archive_masks_text}",
        (f"veer masks: F1 {' / '.join(viz.fmt(v) for v in mask_f1)}"
         if any(v is not None for v in mask_f1) else "veer masks: none shipped yet"),
        "cost: masks overlap or leave gaps",
    ]
    st.plotly_chart(viz.fork_figure(verdict, semantic_lines=semantic_lines, instance_lines=instance_lines),
                    config={"displayModeBar": False}, key="fork")
    st.markdown(f"#### Verdict: {verdict.branch.upper()} ({verdict.confidence})")
    for reason in verdict.reasons:
        st.markdown(f"- {reason}")
    st.info(
        f"The split point is a rule of thumb, not a learned threshold: with every answer 'yes' the fork tips at "
        f"about {decision.SPLIT_POINT} objects, and each 'no' pulls that point down. The object-count axis "
        "illustrates the rule; it is not a measured series.",
        icon=":material/info:",
    )

st.subheader("What each branch costs")
c1, c2 = st.columns(2)
with c1:
    st.markdown("**Semantic**")
    st.write(decision.COSTS[decision.SEMANTIC])
with c2:
    st.markdown("**Instance**")
    st.write(decision.COSTS[decision.INSTANCE])

st.subheader("The figures behind the fork")
rows = [
    {"pipeline": "Joint 3-class model (semantic)", "who": "archive",
     "F1": viz.fmt(archive_joint.get("f1")), "IoU": viz.fmt(archive_joint.get("iou")),
     "note": "peak; mean over background, curve1, curve2"},
    {"pipeline": "Separate binary masks, stitched", "who": "archive",
     "F1": archive_masks_text, "IoU": "–", "note": "per mask, in published order (mask-to-class not stated)"},
    {"pipeline": "Joint 3-class model (semantic)", "who": "veer (measured)",
     "F1": viz.fmt(joint.get("f1")), "IoU": viz.fmt(joint.get("iou")),
     "note": ("mean over 3 classes; curves only: F1 " + viz.fmt(joint.get("f1_curves"))
              if joint.get("f1") is not None else "no trained model shipped in assets/models")},
    {"pipeline": "Separate binary masks, stitched", "who": "veer (measured)",
     "F1": " / ".join(viz.fmt(v) for v in mask_f1) if mask_f1 else "–",
     "IoU": viz.fmt(sep.get("iou")),
     "note": ("per mask: background / curve1 / curve2"
              + (f"; stitched mean F1 {viz.fmt(sep.get('f1'))}" if sep.get("f1") is not None else "")
              if mask_f1 else "no trained masks shipped in assets/models")},
]
st.dataframe(rows, hide_index=True, width="stretch")
if measured["source"]:
    st.caption("veer's figures come from the " + " and ".join(measured["source"]) + " in assets/.")

st.subheader("See it on pixels")
st.write(
    f"Below, {n} curves of one style are drawn on a small image. Semantic labelling gives them all one "
    "class: the objects merge into a single 'curve' region. Splitting that region into connected "
    "components is the cheapest instance view; it separates traces that stay apart, and fuses them "
    "wherever they touch or cross, which is the job a real instance method is built for."
)
m0, m1, m2, m3 = st.columns(4)
seed = m0.number_input("Drawing seed", min_value=0, max_value=9999, value=0, step=1, key="demo_seed",
                       help="Draw another random set of the same number of traces.")
demo = decision.instance_demo(n, seed=int(seed))
m1.metric("Traces drawn", demo.n_drawn)
m2.metric("Components found", demo.n_found)
m3.metric("Traces fused at crossings", demo.n_merged_objects)
st.plotly_chart(viz.demo_figure(demo), config={"displayModeBar": False}, key="demo")
st.caption(demo.summary)
