"""DNS solvers: physical models and their expensive-term solvers. Importing registers them."""

from hybrid.solvers import (
    atg,  # noqa: F401
    front,  # noqa: F401
    front_pf,  # noqa: F401
    graingrowth,  # noqa: F401
    laser,  # noqa: F401
    laser_cfd,  # noqa: F401
)
