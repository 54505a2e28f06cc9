"""Unit-test fixtures shared by several test modules."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

# A random SAM 3-architecture teacher small enough for unit tests (sam3m4.distill.cache.save_random_teacher).
TINY_TEACHER = dict(image_size=56, hidden_size=32, vit_layers=2, vit_window=4, num_queries=8)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops on a shared 2-core box: 2 OpenMP threads wait on each other for whole time slices."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_teacher_kwargs() -> dict:
    return dict(TINY_TEACHER)


# --- headless Chromium (Debian's package, driven by playwright; never `playwright install`) ------------------
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


CJK_FONT_PACKAGE = "fonts-noto-cjk"  # Korean headings of the visual QA page and the report; without it: empty boxes


def _has_cjk_font() -> bool:
    """True when fontconfig knows a font covering Korean (what Chromium falls back to for Hangul)."""
    if shutil.which("fc-list") is None:
        return False
    res = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True)
    return res.returncode == 0 and bool(res.stdout.strip())


def _install_chromium(packages: tuple[str, ...] = ("chromium", CJK_FONT_PACKAGE)) -> str:
    """apt-get install ``packages`` (root or passwordless sudo); '' on success, else why not."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    prefix = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
            return "not root and no passwordless sudo to run apt-get"
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    from filelock import FileLock

    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    with FileLock("/tmp/sam3m4-chromium-install.lock"):  # pytest-xdist workers: one apt-get at a time
        if any(shutil.which(b) for b in BROWSERS) and _has_cjk_font():
            return ""
        for cmd in (install, ["apt-get", "update"], install):
            res = subprocess.run(prefix + cmd, capture_output=True, text=True, env=env, timeout=900)
            if res.returncode == 0 and cmd[1] == "install":
                return ""
    tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
    return f"`apt-get install {' '.join(packages)}` failed: {tail[0]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary (installed with apt-get when missing), or skip saying why there is none."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    found = os.environ.get("SAM3M4_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        why = _install_chromium()
        found = next(filter(None, map(shutil.which, BROWSERS)), None)
        if not found:
            pytest.skip(f"no Chromium for the browser test: {why or 'installed, but not found on PATH'}")
    if not _has_cjk_font():  # a fresh Debian host: Chromium is there, the Korean font is not (the page's tests
        _install_chromium((CJK_FONT_PACKAGE,))  # then fail on the missing glyphs, saying which)
    return found
