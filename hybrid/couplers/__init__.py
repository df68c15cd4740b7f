"""Wiring DNS and NN together (providers, monitor, surrogate steppers, A/B comparison). Importing registers them."""

from hybrid.couplers import surrogate, terms  # noqa: F401
