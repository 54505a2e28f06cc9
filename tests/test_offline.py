"""sam3m4 never touches the network unless the user opts in (``SAM3M4_ALLOW_NETWORK=1``).

The commands run in a subprocess whose ``sitecustomize`` replaces ``socket.getaddrinfo``,
``socket.gethostbyname`` and ``socket.socket.connect`` with functions that record the attempt in a file and
raise, and whose environment has no ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``: any DNS lookup or
connection (huggingface_hub makes one to build request headers, even for ``local_files_only``) is caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "fixtures" / "synth"

BLOCKER = '''
import os, socket

def _blocked(what):
    def refuse(*args, **kwargs):
        with open(os.environ["NET_ATTEMPTS"], "a") as log:
            log.write(f"{what} {args[1:2] if what == 'connect' else args[:1]}\\n")
        raise OSError(f"network blocked by the test: {what}")
    return refuse

socket.getaddrinfo = _blocked("getaddrinfo")
socket.gethostbyname = _blocked("gethostbyname")
socket.socket.connect = _blocked("connect")
socket.socket.connect_ex = _blocked("connect_ex")
'''


@pytest.fixture
def blocked(tmp_path):
    """(run(argv, **env) -> CompletedProcess, attempts file): Python with the network blocked and recorded."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    attempts = tmp_path / "net_attempts.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SAM3M4_ALLOW_NETWORK")}
    env.update(PYTHONPATH=f"{site}{os.pathsep}{ROOT}", NET_ATTEMPTS=str(attempts), HF_HOME=str(tmp_path / "hf"))

    def run(argv, **extra):
        return subprocess.run([sys.executable, *argv], cwd=tmp_path, env={**env, **extra}, capture_output=True,
                              text=True, timeout=300)

    return run, attempts


def test_eval_of_an_uncached_hub_teacher_is_one_line_without_any_lookup(blocked):
    run, attempts = blocked
    out = run(["-m", "sam3m4", "eval", "--model", "teacher", "--ckpt", "facebook/sam3", "--data", str(SYNTH)])
    assert not attempts.exists(), attempts.read_text()
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("sam3m4")]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("sam3m4: error: facebook/sam3: not in the local Hugging Face cache")
    assert "on a machine with network" in lines[0] and "local folder" in lines[0]


def test_the_blocker_sees_the_lookup_when_the_user_opts_in(blocked):
    """The control: with SAM3M4_ALLOW_NETWORK=1 the same command tries the hub (and the blocker records it), so
    the test above would catch a lookup."""
    run, attempts = blocked
    out = run(["-m", "sam3m4", "eval", "--model", "teacher", "--ckpt", "facebook/sam3", "--data", str(SYNTH)],
              SAM3M4_ALLOW_NETWORK="1")
    assert out.returncode == 2, out.stderr
    assert attempts.exists() and "huggingface.co" in attempts.read_text()


@pytest.mark.parametrize("hub_first", [False, True], ids=["sam3m4-first", "huggingface_hub-first"])
def test_import_overrides_an_exported_offline_0(blocked, hub_first):
    run, _ = blocked
    code = ("import os\n" + ("import huggingface_hub.constants\n" if hub_first else "") +
            "import sam3m4, huggingface_hub.constants as c\n"
            "print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'], c.is_offline_mode())")
    out = run(["-c", code], HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "True"]
    opted_in = run(["-c", code], HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", SAM3M4_ALLOW_NETWORK="1")
    assert opted_in.stdout.split() == ["0", "0", "False"], opted_in.stderr


def test_download_without_the_opt_in_is_refused_in_one_line(monkeypatch):
    from sam3m4.errors import Sam3m4Error
    from sam3m4.teacher import load_teacher

    monkeypatch.delenv("SAM3M4_ALLOW_NETWORK", raising=False)
    with pytest.raises(Sam3m4Error, match="downloading needs SAM3M4_ALLOW_NETWORK=1"):
        load_teacher("facebook/sam3", allow_download=True)
