"""Streamlit UI of Vitrine: small modules, one job each; everything else goes through core."""
