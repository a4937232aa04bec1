"""Bad config files and ``--set`` overrides (given to ``dermseg train``)."""

from __future__ import annotations

#: What the YAML payload of ``python_tag`` would create, were configs executed.
MARKER = "yaml_payload_ran"

#: A billion laughs: nine aliases to nine aliases ... to nine strings, nine levels deep (9**9
#: strings, gigabytes once expanded or formatted) in a few hundred bytes.
LAUGHS = (
    "train:\n  lr: [&a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"
    + "".join(f", &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9))
    + "]\n"
)

#: name -> (file content, or None for no file, or "folder", "fifo" or "device" (a link to
#: /dev/zero); words of the error).
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
    "fifo": ("fifo", ("is a FIFO",)),
    "device": ("device", ("is a device",)),
    "larger_than_1_mib": ("# padding\n" * 110_000, ("larger than 1 MiB",)),
    "billion_laughs": (LAUGHS, ("anchors and aliases",)),
    "nested_too_deep": ("train:\n  lr: " + "[" * 10_000 + "]" * 10_000 + "\n", ("nested more than",)),
    "duplicate_key": ("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", ("line 4", "duplicate key 'lr'")),
    "duplicate_section": ("train:\n  lr: 0.1\ntrain:\n  epochs: 2\n", ("duplicate key 'train'",)),
    "huge_value": ("train:\n  weight_decay: " + "9" * 200_000 + "x\n", ("train.weight_decay: expected",)),
}


#: name -> (the ``--set`` override, words of the error).
OVERRIDES: dict[str, tuple[str, tuple[str, ...]]] = {
    "unknown_key": ("train.epochz=1", ("unknown key train.epochz",)),
    "wrong_type": ("train.weight_decay=lots", ("expected a number", "lots")),
    "no_equals": ("train.lr", ("must look like key=value",)),
    "bad_yaml_value": ("model.decoder_channels=[32, 16", ("cannot parse value",)),
    "billion_laughs": (f"train.lr={LAUGHS.partition('lr: ')[2]}", ("anchors and aliases",)),
    "duplicate_key": ("loss.terms={bce: 1.0, bce: 2.0}", ("duplicate key 'bce'",)),
    "empty_key_part": ("train..lr=0.1", ("must look like key=value",)),
}


#: Field (every field of ``dermseg.config.Config``) -> a value it refuses, as ``--set`` gives it;
#: a test fails for a field missing here, so that no new field goes unchecked.
BAD_VALUES: dict[str, str] = {
    "seed": "-1",
    "deterministic": "maybe",
    "data.root": "''",
    "data.labels": "ph3",
    "data.val_fraction": "1",
    "data.split_seed": "4294967296",
    "data.size": "16",
    "data.crop_size": "0",
    "data.crop_background": "maybe",
    "data.workers": "-1",
    "data.limit": "0",
    "data.cache": "''",
    "data.balance": "1.5",
    "data.validation": "always",
    "data.folds": "0",
    "data.fold": "-1",
    "data.field": "lesions",
    "data.field_margin": "2.5",
    "data.max_aspect_ratio": "0.5",
    "data.weak_labels": "''",
    "data.weak_format": "xlsx",
    "data.weak_images": "' '",
    "data.synthetic_mix": "1",
    "data.synthetic_rare_only": "maybe",
    "data.synthetic_size": "16",
    "augment.hflip": "maybe",
    "augment.vflip": "1",
    "augment.rotate90": "maybe",
    "augment.color_jitter": "2",
    "augment.lesion_crop": "-0.5",
    "augment.rotate": "181",
    "augment.scale": "1",
    "model.arch": "''",
    "model.encoding": "softmax",
    "model.encoder_name": "' '",
    "model.encoder_weights": "[1]",
    "model.aspp_rates": "[]",
    "model.decoder_channels": "[32, 0]",
    "model.presence_head": "maybe",
    "loss.terms": "{foo: 1.0}",
    "loss.focal_gamma": "-1",
    "loss.class_weights": "median",
    "loss.presence_weight": ".inf",
    "loss.weak_mil": "mean",
    "loss.weak_topk": "0",
    "loss.weak_mil_weight": "-1",
    "train.epochs": "0",
    "train.batch_size": "0",
    "train.lr": "0",
    "train.encoder_lr_mult": "-1",
    "train.weight_decay": ".nan",
    "train.warmup_epochs": ".nan",
    "train.grad_clip": "-1",
    "train.amp": "fp8",
    "train.channels_last": "maybe",
    "train.compile": "maybe",
    "train.max_minutes": "-1",
    "train.eval_every": "0",
    "train.max_steps_per_epoch": "0",
    "train.tune_thresholds": "maybe",
    "train.checkpoint_every": "0",
    "predict.tta": "maybe",
    "postprocess.thresholds": "[0.5, 0.5, 0.5, 0.5, 1.5]",
    "postprocess.opening": "[0, 0, 0, 0, 4]",
    "postprocess.min_area": "[0, 0, 0, 0, -1]",
    "postprocess.presence": "[0, 0, 0, 0, .nan]",
}
