"""The valid dataset every case starts from and a tiny checkpoint, each made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import write_tiny_checkpoint


@pytest.fixture(scope="session")
def base_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Official layout: training ISIC_0000000..2 and validation ISIC_0000003, 64 px, all masks."""
    from dermseg.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("bad_input_base") / "data"
    write_dataset(root, 3, size=64, seed=0, split="training")
    write_dataset(root, 1, size=64, seed=0, split="validation", start_id=3)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained TINY_TRAIN model as a dermseg checkpoint (prediction needs no training).

    Without the background crop every 64 px image reaches the network at the same size: on
    CPU each new input size costs ~0.5 s of kernel set-up, which would dominate these tests.
    """
    path = tmp_path_factory.mktemp("bad_input_ckpt") / "tiny.safetensors"
    return write_tiny_checkpoint(path, ["data.crop_background=false"])


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: the models here are tiny, and OpenMP threads spinning against
    other processes on a small shared machine make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
