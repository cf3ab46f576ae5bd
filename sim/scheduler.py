"""Request schedulers: which queued request's next command a channel issues this cycle.

Both schedulers see one queue (reads, or writes while draining) in arrival order, and for each
request its next command (``RD``/``WR`` on a row hit, ``ACT`` on a closed bank, ``PRE`` on a
conflict) and the cycle at which that command becomes timing-legal. Neither closes a row that
an activated request (ACT issued, column command not yet) still needs: such a ``PRE`` is not a
candidate.

``frfcfs`` (classic, Rixner et al. ISCA 2000)
    Ready column commands (row hits) first, oldest first; otherwise the oldest ready ACT or
    PRE. A request stays in its queue until its column command issues.
``frfcfs-ramulator`` (Ramulator 2.1 ``FRFCFS`` with its ``GenericDDR`` / ``HBM12``
    controllers) Timing-ready first, then oldest, whatever the command. A request leaves its
    queue when its ACT issues and waits in the channel's active buffer (so up to queue depth +
    banks requests are in the controller). On HBM (separate row and column command buses) the
    column bus is scheduled first from the active buffer, then from row hits in the queue, and
    the row bus from ACTs and PREs in the queue.

Requests whose ACT has issued (the "active buffer") are served before either queue by the
controller, and refresh comes before the queues (see controller.py). Both policies are
implemented in the controller kernel (``controller.cpp``: ``pick``, ``ready_at``).
"""

from __future__ import annotations

import numpy as np

SCHEDULERS = ("frfcfs", "frfcfs-ramulator")
CLASSIC, RAMULATOR = 0, 1
# command-bus slots a scheduling pass may fill: either (one command bus), or on HBM's separate
# buses the column (RD/WR) or row (ACT/PRE/PREA/REF) bus only
SLOT_ANY, SLOT_COL, SLOT_ROW = 0, 1, 2
INF = 1 << 62


def ready_at(cmd: int, ch: int, fr: int, fg: int, fb: int, nxt: np.ndarray, rank: np.ndarray,
             off_rk: int, off_bg: int, off_bk: int, nFAW: int, dual: int) -> int:
    """Earliest cycle ``cmd`` may issue (the kernel's check); ``fg``/``fb`` < 0 for rank-wide
    commands."""
    from .controller import _p, kernel

    return int(kernel().psa_ready_at(int(cmd), int(ch), int(fr), int(fg), int(fb),
                                     _p(nxt, "nxt"), _p(rank, "rank"), int(off_rk), int(off_bg),
                                     int(off_bk), int(nFAW), int(dual)))
