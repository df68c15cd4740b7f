"""Wiring DNS and NN together (providers, monitor, surrogate steppers). Importing registers them."""
