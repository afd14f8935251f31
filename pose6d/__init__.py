"""pose6d: camera, CAD, rendering and dataset code for 3D pose labelling (ImageNet3D convention)."""
