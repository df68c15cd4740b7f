"""One module per learned term: each declares its :class:`hybrid.couplers.learned.LearnedTerm` and registers it."""

from hybrid.couplers.terms import elastic, front_correction, patch_temperature  # noqa: F401
