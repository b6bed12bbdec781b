"""The `device` setting: resolved, or refused with a reason; never a silent fall-back."""

from __future__ import annotations

import pytest
import torch

from cart_pipeline.core.device import resolve_device, stage_device
from cart_pipeline.core.errors import InputError


def test_cpu_and_auto_resolve_on_this_machine():
    assert resolve_device("cpu") == resolve_device(None) == torch.device("cpu")
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else "mps"
        if torch.backends.mps.is_available()
        else "cpu"
    )
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_refused_with_the_reason(name):
    with pytest.raises(InputError, match="no CUDA GPU.*device=cpu"):
        resolve_device(name)


def test_an_unknown_device_is_refused():
    with pytest.raises(InputError, match="not one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device("tpu")


def test_a_stage_setting_wins_over_the_shared_one():
    assert stage_device({"device": "cpu"}, "tpu") == torch.device("cpu")
    assert stage_device({}, "cpu") == torch.device("cpu")
