"""microtasks: the domain core of the micro-volunteering engine.

Nothing in this package imports Flask, RQ or the ``web``/``workers`` packages;
it is plain Python over SQLAlchemy sessions and plain data, so it can be used
from the web app, the workers, the CLI and the tests alike.
"""

from __future__ import annotations

import os

# Arrow's default allocator keeps freed pages, so a long Parquet export would hold on to its peak;
# the system allocator gives them back. Read once, when pyarrow loads (pandas loads it early).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.1.0"
