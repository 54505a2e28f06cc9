"""Acceptance fixtures: expensive inputs built once per session, cached on disk, guarded by a file lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "data" / "test_cache"


@pytest.fixture(scope="session")
def synth_data() -> Path:
    """A small synthetic SA-Co dataset (both formats) shared by all workers: data/test_cache/synth-s7."""
    from sam3m4.data.synth import generate

    out = CACHE / "synth-s7"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "manifest.json").is_file():
            generate(out, n_images=40, n_videos=4, seed=7, image_size=128, n_frames=16, progress=False)
    return out
