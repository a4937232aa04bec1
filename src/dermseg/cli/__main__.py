"""``python -m dermseg.cli`` (used under torchrun)."""

from dermseg.cli import run

run()
