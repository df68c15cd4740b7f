"""Wiring DNS and NN together: learned terms and their monitor, surrogate steppers, data and training pipelines,
A/B comparison. Importing registers the learned terms, the surrogate steppers and the dataset/training kinds."""

from hybrid.couplers import dataset, patch_dataset, surrogate, term_dataset, terms, trajectories  # noqa: F401
