"""Fitting a pose to a photo: auto-fit's render-and-compare family and pins.

score (how well a pose explains the photo), search (the moves), place (the photo window and the
placement), fit (the render-and-compare fit: hypotheses, flips, quarter turns), interior
(interior edges), turns (the azimuth all round), cad (the CAD choice), batch (over a dataset),
cache (fits kept for prefill), evidence (a photo's edges and foreground), silhouette (fast
silhouettes) and pins (the pose from model points dragged onto the photo). Auto-fit needs
OpenCV (evidence); cache and pins's public entry point do not import it.
"""
