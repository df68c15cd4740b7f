"""Wiring DNS and NN together (providers, monitor, surrogate steppers, A/B comparison). Importing registers them."""

from hybrid.couplers import providers, surrogate  # noqa: F401
