"""The ``dermseg`` command line: a thin layer over the library.

Library errors (:class:`~dermseg.errors.DermsegError`) become one line on stderr
and exit code 2; ``--debug`` shows the traceback instead. Each command group lives
in its own module and registers itself on :data:`app` when imported here.
"""

from dermseg.cli import (  # noqa: F401  (imported to register their commands)
    data_commands,
    download_commands,
    infer_commands,
    report_commands,
    reproduce_commands,
    serve_commands,
    train_commands,
)
from dermseg.cli.app import app, main, run

__all__ = ["app", "main", "run"]
