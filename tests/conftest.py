import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# The tests' tensors are tiny: one thread is as fast as two, and immune to oversubscription
# when the machine is busy (two threads on one free core run ten times slower).
torch.set_num_threads(1)

settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
