"""veer's Streamlit dashboard: ``streamlit run app.py``.

The app is a thin shell: it sets the page up and hands over to
``st.navigation``; each page in ``pages/`` holds layout and widgets only and
calls plain functions in ``veer/`` for everything else.
"""

import streamlit as st

from veer.viz import app_navigation

st.set_page_config(page_title="veer: curves off scanned well logs", page_icon="〰️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/live_segmentation.py", title="Live segmentation", icon=":material/layers:"),
    st.Page("pages/results_explorer.py", title="Results explorer", icon=":material/monitoring:"),
    st.Page("pages/decision_lever.py", title="Decision lever", icon=":material/call_split:"),
]

with app_navigation():
    st.navigation(PAGES).run()
