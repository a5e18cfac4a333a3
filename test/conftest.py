"""Test-wide settings: offline, deterministic, small thread count."""

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    with warnings.catch_warnings():
        # POT's numpy backend warns about NumPy 2 array-wrap deprecations.
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
