"""Running a test's worker function in several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_threads(worker: Callable[[Any], None], args: Iterable[Any]) -> None:
    """Start ``worker(arg)`` in a thread per item of ``args``, then wait for all of them. Workers report
    their own outcomes (a list of errors, results); this only runs them."""
    threads = [threading.Thread(target=worker, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
