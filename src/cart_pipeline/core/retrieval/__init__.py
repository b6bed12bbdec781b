"""Retrieval systems: CART inference (cart.py) and the dual-tower baseline (dual_tower.py)."""
