"""``python -m dermseg`` runs the command line (also under ``torchrun -m dermseg``)."""

from dermseg.cli import run

run()
