"""Validation under several processes: every rank sums the same metrics, in the same order.

The validation patches are shared out by rank; a rank that gets none still
takes part in the all-reduce, so its list of names (and the length of its
tensor) must be the one the other ranks build from the registry's
trainable metrics. A trainable plugin metric shows the difference.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from perceptlab.metrics.registry import Metric, register_metric, unregister_metric
from perceptlab.train.config import config_from_dict
from perceptlab.train.data import PatchSet
from perceptlab.train.distributed import DistContext
from perceptlab.train.loop import _Run
from perceptlab.train.losses import ReconstructionLoss
from perceptlab.train.progress import NullReporter
from perceptlab.train.stop import StopFlag

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _l1(x, y, *, validate: bool = True):
    return (x - y).abs().mean(dim=(1, 2, 3))


class _Halve(torch.nn.Module):
    """A stand-in model: the reconstruction is half the input."""

    def forward(self, x):
        return 0.5 * x


@pytest.fixture(params=[4, 32], ids=["patch-too-small-for-msssim", "patch-32"])
def patch(request):
    return request.param


@pytest.mark.parametrize("min_side", [1, 16])
def test_a_rank_without_validation_patches_sums_the_names_of_the_others(tmp_path, patch, min_side):
    plugin = register_metric(Metric(name="l1", display_name="L1", fn=_l1, trainable=True, min_side=min_side))
    try:
        cfg = config_from_dict({"out_dir": str(tmp_path / "run"), "batch_size": 2})
        rows = cfg.features.n_mels
        image = np.random.default_rng(0).random((rows, patch), dtype=np.float32)  # one patch: rank 1 gets none
        data = SimpleNamespace(val=PatchSet([image], patch=patch, hop=patch))
        loss_fn = ReconstructionLoss({"mse": 1.0})
        results = []
        for rank in (0, 1):
            run = _Run(cfg, DistContext(world=2, rank=rank), torch.device("cpu"), NullReporter(), StopFlag())
            results.append(run._evaluate(_Halve(), data, loss_fn, False, torch.bfloat16))
    finally:
        unregister_metric(plugin.name)
    (loss0, metrics0), (loss1, metrics1) = results
    assert list(metrics1) == list(metrics0)
    expected = ["mse", "nlpd"] + (["msssim"] if patch >= 7 else []) + (["l1"] if patch >= min_side else [])
    assert list(metrics0) == expected
    assert loss0 == pytest.approx(float(np.mean((0.5 * image - image) ** 2)), rel=1e-5)
    assert loss1 == 0.0 and all(v == 0.0 for v in metrics1.values())  # nothing summed here: the others' count
