"""sam3m4: distill SAM 3 into a mobile student, quantize, export and gate releases.

Offline by default: importing sam3m4 sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (before any
sam3m4 module imports transformers or huggingface_hub), so no command contacts the Hugging Face hub, not even
the DNS lookup huggingface_hub makes to check a cached file. Values the user exported are overridden too.
``SAM3M4_ALLOW_NETWORK=1`` in the environment opts in: the two variables are then left as the user set them.
"""

import os
import sys

# Before torch loads its OpenMP runtime: idle OpenMP threads sleep instead of spinning. On a busy 2-core host
# spinning threads steal each other's time slices (a 2-thread matmul loop took 97 s spinning against 1.1 s
# sleeping, with other processes running). It changes the waiting only, never the arithmetic.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# MPS fallback (Apple GPUs, device: mps): an operator the MPS backend lacks runs on the CPU with a warning instead of
# stopping the run (PyTorch's PYTORCH_ENABLE_MPS_FALLBACK; read when torch starts, ignored on other devices).
# Distillation on MPS runs in fp32 (amp: auto, sam3m4.distill.runtime.amp_dtype); see docs/real-run.md for what
# is and is not verified on a Mac.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

__version__ = "0.1.0"

NETWORK_ENV = "SAM3M4_ALLOW_NETWORK"
"""Set to ``1`` to let sam3m4 (and the transformers / huggingface_hub calls it makes) use the network."""


def network_allowed() -> bool:
    """True when the user opted in with ``SAM3M4_ALLOW_NETWORK=1``."""
    return os.environ.get(NETWORK_ENV) == "1"


def _go_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub.constants")  # imported before sam3m4: it read the variable already
    if hub is not None:
        hub.HF_HUB_OFFLINE = True


if not network_allowed():
    _go_offline()
