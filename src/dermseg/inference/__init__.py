"""Inference: the Segmenter, folders, ensembles, post-processing, ONNX export and runtime, overlays."""
