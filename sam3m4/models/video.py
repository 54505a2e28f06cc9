"""The student's video module: a small latent memory that carries detections across frames.

EdgeTAM / EfficientTAM-style: instead of SAM 2's bank of past frame feature maps, a Perceiver-style set
of L latent tokens summarises the past (frame features weighted by where the tracked objects were), and
the previous frame's object queries seed this frame's queries, so query q keeps following one object
(its masklet is query q over time). The state is one fixed-size tensor, so the step exports as its own
ExecuTorch method:

    tracker = StudentTracker(build_student("tiny"))
    prompt = tracker.student.encode_text(ids, mask)                 # once per phrase
    state = tracker.init_state(batch=1)                             # (B, L + Q, D)
    for frame in frames:                                            # (B, 3, S, S) in [-1, 1]
        masks, scores, state = tracker.track(frame, prompt.tokens, prompt.mask, state)

``masks`` (B, Q, S/4, S/4) logits and ``scores`` (B, Q) = sigmoid(query) * sigmoid(presence), as for images.
Every memory path starts at zero (zero-initialised output projections), so an untrained tracker returns
exactly the image student's per-frame outputs and video training starts from the Phase 2 model.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from sam3m4.metrics.latency import latency_stats
from sam3m4.models.export_wrappers import example_inputs
from sam3m4.models.layers import Attention, FeedForward, LayerNorm, init_weights, sine_pos_2d
from sam3m4.models.student import Student
from sam3m4.models.text_encoder import PromptEmbedding


class LatentMemory(nn.Module):
    """L latent tokens: ``read`` conditions a frame's stride-16 tokens on them, ``write`` updates them."""

    def __init__(self, dim: int, heads: int, num_latents: int = 8, mlp_ratio: float = 2.0):
        super().__init__()
        self.num_latents = num_latents
        self.initial = nn.Parameter(torch.zeros(num_latents, dim))  # the state before the first frame
        self.read_norm = LayerNorm(dim)
        self.read_attn = Attention(dim, heads)
        self.mask_embed = nn.Linear(1, dim)  # object-probability channel added to the written tokens
        self.write_norm = LayerNorm(dim)
        self.write_attn = Attention(dim, heads)
        self.mlp_norm = LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        init_weights(self)
        nn.init.normal_(self.initial, std=0.02)
        nn.init.zeros_(self.read_attn.out_proj.weight)  # untrained: frames pass through unchanged
        nn.init.zeros_(self.read_attn.out_proj.bias)

    def read(self, tokens: torch.Tensor, pos: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D), pos (N, D), latents (B, L, D) -> tokens (B, N, D) with the memory added."""
        return tokens + self.read_attn(self.read_norm(tokens) + pos, latents, latents)

    def write(self, tokens: torch.Tensor, pos: torch.Tensor, objects: torch.Tensor,
              latents: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D), pos (N, D), objects (B, N, 1) in [0, 1], latents (B, L, D) -> new latents."""
        kv = tokens + self.mask_embed(objects)  # (B, N, D)
        latents = latents + self.write_attn(self.write_norm(latents), kv + pos, kv)
        return latents + self.mlp(self.mlp_norm(latents))


class StudentTracker(nn.Module):
    """An image :class:`Student` + :class:`LatentMemory` + a query carry; see the module docstring."""

    def __init__(self, student: Student, num_latents: int = 8, heads: int = 2):
        super().__init__()
        self.student = student
        d = student.dim
        self.memory = LatentMemory(d, heads, num_latents)
        self.carry = nn.Linear(d, d)  # previous queries -> this frame's query offsets
        nn.init.zeros_(self.carry.weight)
        nn.init.zeros_(self.carry.bias)
        self.num_latents, self.num_queries, self.dim = num_latents, student.num_queries, d

    @property
    def state_shape(self) -> tuple[int, int]:
        """(L + Q, D): latents, then the previous frame's query states."""
        return self.num_latents + self.num_queries, self.dim

    def init_state(self, batch: int = 1) -> torch.Tensor:
        """(B, L + Q, D): the learned initial latents and zero query states."""
        latents = self.memory.initial[None].expand(batch, -1, -1)
        return torch.cat([latents, latents.new_zeros(batch, self.num_queries, self.dim)], dim=1)

    def step(self, pixel_values: torch.Tensor, prompt: PromptEmbedding, state: torch.Tensor):
        """One frame: (B, 3, S, S), a prompt, state (B, L + Q, D) -> (:class:`StudentOutput`, new state)."""
        p4, p8, p16 = self.student.encode_image(pixel_values)
        b, d, h, w = p16.shape
        latents, prev = state[:, : self.num_latents], state[:, self.num_latents:]
        pos = sine_pos_2d(h, w, d, p16.device, p16.dtype)  # (N, D), constant under export
        tokens = self.memory.read(p16.flatten(2).transpose(1, 2), pos, latents)  # (B, N, D)
        p16 = tokens.transpose(1, 2).reshape(b, d, h, w)
        out = self.student.decode((p4, p8, p16), prompt, query_init=self.carry(prev))
        # where the tracked objects are: each query's mask weighted by its score, max over queries
        objects = (out.mask_logits.sigmoid() * out.scores[:, :, None, None]).amax(1, keepdim=True)  # (B, 1, m, m)
        objects = F.adaptive_avg_pool2d(objects, (h, w)).flatten(2).transpose(1, 2)  # (B, N, 1)
        latents = self.memory.write(tokens, pos, objects, latents)
        return out, torch.cat([latents, out.query_embeddings], dim=1)

    def track(self, pixel_values: torch.Tensor, prompt_tokens: torch.Tensor, prompt_mask: torch.Tensor,
              state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exported step: (B, 3, S, S), a cached prompt (B, T, D) + (B, T), state (B, L + Q, D) ->
        mask logits (B, Q, S/4, S/4), scores (B, Q), new state (B, L + Q, D)."""
        out, state = self.step(pixel_values, PromptEmbedding(prompt_tokens, prompt_mask), state)
        return out.mask_logits, out.scores, state

    forward = track


@torch.no_grad()
def benchmark_track(tracker: StudentTracker, steps: int = 50, warmup: int = 10, seed: int = 0) -> dict:
    """Host streaming latency of ``track`` at batch 1 (eager): ``warmup`` untimed steps, then ``steps`` timed
    ones, each fed the previous state. Returns p50/p90/trimmed-mean (middle 80%) ms, FPS = 1000 / p50, and
    what ran (runtime, torch threads); the caller records it with the host's description."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    tracker = tracker.eval()
    g = torch.Generator().manual_seed(seed)
    s = tracker.student.image_size
    frames = torch.rand(8, 1, 3, s, s, generator=g) * 2 - 1  # (8, 1, 3, S, S), cycled
    prompt = tracker.student.encode_text(*example_inputs(tracker.student, "encode_text"))
    state = tracker.init_state(1)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        _, _, state = tracker.track(frames[i % len(frames)], prompt.tokens, prompt.mask, state)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    stats = latency_stats(times)
    return {**stats, "fps": 1000.0 / stats["p50_ms"], "steps": steps, "warmup": warmup,
            "runtime": f"torch {torch.__version__} eager fp32", "threads": torch.get_num_threads(), "image_size": s}
