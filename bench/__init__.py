"""The mirrord benchmark (``python -m bench``): mirrord sync against skopeo sync.

The test harness (``tests/harness``: real registries, the image generator) is put on
``sys.path`` here, so ``harness`` imports work from a clean checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
