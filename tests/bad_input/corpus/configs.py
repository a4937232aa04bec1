"""Bad config files and ``--set`` overrides (given to ``dermseg train``)."""

from __future__ import annotations

#: What the YAML payload of ``python_tag`` would create, were configs executed.
MARKER = "yaml_payload_ran"

#: name -> (file content, or None for no file, or "folder"; words of the error).
#: The bad keys are ones the TINY_TRAIN overrides leave alone (an override would replace them).
CONFIGS: dict[str, tuple[str | bytes | None, tuple[str, ...]]] = {
    "unknown_key": ("train:\n  epochz: 3\n", ("unknown key train.epochz",)),
    "unknown_section": ("trian:\n  epochs: 3\n", ("unknown key trian",)),
    "wrong_type": ("train:\n  weight_decay: lots\n", ("train.weight_decay: expected a number", "lots")),
    "scalar_for_list": ("postprocess:\n  thresholds: 0.5\n", ("postprocess.thresholds: expected a list",)),
    "out_of_range": ("train:\n  warmup_epochs: 1\n  amp: fast\n", ("train.amp must be auto",)),
    "a_list": ("- data\n- model\n", ("config must be a mapping",)),
    "invalid_yaml": ("train: {epochs: 3\n", ("invalid YAML at line",)),
    "python_tag": (f'!!python/object/apply:os.system ["touch {MARKER}"]\n', ("invalid YAML",)),
    "not_utf8": (b"train:\n  lr: 0.001  # caf\xe9\n", ("cannot read config",)),
    "missing": (None, ("config file not found",)),
    "folder": ("folder", ("is a folder",)),
}


#: name -> (the ``--set`` override, words of the error).
OVERRIDES: dict[str, tuple[str, tuple[str, ...]]] = {
    "unknown_key": ("train.epochz=1", ("unknown key train.epochz",)),
    "wrong_type": ("train.weight_decay=lots", ("train.weight_decay: expected a number",)),
    "no_equals": ("train.lr", ("must look like key=value",)),
    "bad_yaml_value": ("model.decoder_channels=[32, 16", ("cannot parse value",)),
}
