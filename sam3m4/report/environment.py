"""Moved to :mod:`sam3m4.env` (environment facts are a low layer: training, quantize and the gates use them).

Kept as a re-export so code written against the old path still imports; new code imports :mod:`sam3m4.env`.
"""

from sam3m4.env import (PACKAGES, accelerator, cpu_name, environment_line, git_commit, host_summary,  # noqa: F401
                        human_bytes, metadata, package_version)
