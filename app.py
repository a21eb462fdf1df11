"""veer's Streamlit dashboard: ``streamlit run app.py``."""

import streamlit as st

st.set_page_config(page_title="veer: curves off scanned well logs", layout="wide")
st.title("veer")
st.write("Lift curves off scanned paper well logs. The dashboard pages arrive with the dashboard issue.")
