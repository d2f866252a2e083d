"""Test setup: one torch thread (2-core machines spin-wait otherwise)."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(1)
