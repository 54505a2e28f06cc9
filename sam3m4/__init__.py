"""sam3m4: distill SAM 3 into a mobile student, quantize, export and gate releases."""

import os

# Before torch loads its OpenMP runtime: idle OpenMP threads sleep instead of spinning. On a busy 2-core host
# spinning threads steal each other's time slices (a 2-thread matmul loop took 97 s spinning against 1.1 s
# sleeping, with other processes running). It changes the waiting only, never the arithmetic.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
