"""The recipe under ``torchrun --nproc_per_node=2`` on CPU (gloo): sharded cache pass, identical parameters on
both ranks after training, falling loss, rank-0-only checkpoints and logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from sam3m4.distill import cache as feature_cache

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import json, os, sys, torch
    from sam3m4.distill import recipe
    out = sys.argv[1]
    run = recipe.setup(recipe.load_config(None, sys.argv[2:]))
    recipe.train(run)
    # parameters (BatchNorm running statistics are per-rank buffers; DDP broadcasts rank 0's at each forward)
    torch.save({k: v.detach().clone() for k, v in run.student.named_parameters()}, f"{out}/rank{run.rank}.pt")
    json.dump({"losses": run.losses, "world": run.world}, open(f"{out}/rank{run.rank}.json", "w"))
""")


def test_two_ranks_on_cpu_stay_in_sync_and_learn(tmp_path):
    teacher = feature_cache.save_random_teacher(tmp_path / "teacher", image_size=56, hidden_size=32, vit_layers=2, vit_window=4,
                                    num_queries=8)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    overrides = [f"data_root={ROOT / 'fixtures' / 'synth'}", f"teacher={teacher}", f"cache_dir={tmp_path / 'cache'}",
                 f"checkpoint_dir={tmp_path / 'ckpt'}", f"log_dir={tmp_path / 'logs'}", "image_size=64", "threads=1",
                 "progress=false", "phase=2", "train_limit=16", "batch_size=8", "epochs=12", "lr=3e-3", "grad_clip=0",
                 "warmup_steps=2", "w_gt=0.5", "cache_topk=4", "log_every=1", "vis_pairs=1", "eval_batch_size=16",
                 "cache_batch_size=8", "cache_shard_size=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(script),
           str(tmp_path), *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a.keys() == b.keys() and len(a) > 100
    for k in a:
        assert torch.equal(a[k], b[k]), f"rank 0 and rank 1 differ in {k}"
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert logs[0]["world"] == 2 and logs[0]["losses"] == logs[1]["losses"]  # the logged loss is the rank mean
    losses = logs[0]["losses"]
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0], losses

    shards = sorted(p.name for p in (tmp_path / "cache").rglob("shard-u*.safetensors"))  # one per work unit
    index = json.loads(next((tmp_path / "cache").rglob(feature_cache.INDEX_FILE)).read_text())
    assert len(shards) >= 2 and sorted(index["shards"]) == shards  # rank 0's index names both ranks' shards
    assert (tmp_path / "ckpt" / "phase2_epoch12_step12.pt").is_file()
    assert (tmp_path / "logs" / "phase2.csv").is_file()
