"""The malformed-input corpus: each case breaks one thing in a copy of a small valid dataset.

The base dataset (official layout) holds three 64 px training images ``ISIC_0000000`` to
``ISIC_0000002`` and one validation image ``ISIC_0000003``, each with its five masks. A case's
``build(root)`` gets a fresh copy of it, breaks (or changes) one thing, and returns the offending
path. ``expect`` says, per command, what must happen:

* :class:`Ok`: exit code 0 and the right result (see :mod:`tests.bad_input.harness` for what
  is checked for every command, and ``verify`` for what a case adds);
* :class:`Err`: exit code 2, no traceback, no partial output, and one line
  ``dermseg: error: <path>: <problem>`` that names the offending file and holds ``words``.

Commands: ``check``, ``prepare``, ``predict`` (the image folder), ``evaluate_pred`` (the case's
mask folder scored as predictions against the clean truth), ``evaluate_gt`` (the case's mask
folder as truth, against clean predictions) and ``train`` (only a few cases: it is slow).

What is right where the issue is silent (``note``) follows two rules: ``check``, ``prepare`` and
``train`` read a dataset the way :mod:`dermseg.data.imageio` does (any image mode converted to
RGB, EXIF orientation applied, masks read through their palette), and refuse what would silently
lose data; ``evaluate`` scores exactly as the official ISIC scorer does (single-channel ``L`` or
``1`` masks only, binarised at ``> 128``), so that its numbers stay the leaderboard's.

By the kind of file broken: :mod:`.images`, :mod:`.masks` and :mod:`.folders` (the dataset cases,
together :data:`CASES`), :mod:`.checkpoints` (``CHECKPOINTS``, for predict, evaluate and export)
and :mod:`.configs` (``CONFIGS`` and ``OVERRIDES``, for train); :mod:`.base` holds what they share.
"""

from __future__ import annotations

from tests.bad_input.corpus import folders, images, masks
from tests.bad_input.corpus.base import Case

#: The malformed datasets, run through the commands by :mod:`tests.bad_input.harness`.
CASES: tuple[Case, ...] = (*images.CASES, *masks.CASES, *folders.CASES)


def case_named(name: str) -> Case:
    """The corpus case called ``name``."""
    return next(c for c in CASES if c.name == name)
