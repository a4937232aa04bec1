"""Training: the loop, its set-up from config, validation, distributed helpers, plots."""
