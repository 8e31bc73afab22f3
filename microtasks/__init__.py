"""microtasks: the domain core of the micro-volunteering engine.

Nothing in this package imports Flask, RQ or the ``web``/``workers`` packages;
it is plain Python over SQLAlchemy sessions and plain data, so it can be used
from the web app, the workers, the CLI and the tests alike.
"""

from __future__ import annotations

__version__ = "0.1.0"
