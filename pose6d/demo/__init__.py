"""The demo dataset's generators: procedural CAD models (procedural_cad), photo-like images
(photo) and the dataset with initial poses and ground truth (dataset)."""
