"""The pose labelling ML backend for Label Studio: prefilled poses, mesh overlays, live
refinement and sync of finished labels back to the dataset."""
