"""Attention in blocks of queries, for bf16 models on CPUs without AMX.

PyTorch's CPU flash-attention kernel runs bf16 attention with fp32 arithmetic unless the CPU has AMX
tiles. On an AVX512-BF16 CPU it took 0.74 s of a 1.6 s SD 2.1 UNet call at 512x512, nearly all of it
in the five 4096-token self-attentions, at fp32 speed. Computing softmax(QK^T)V with oneDNN's bf16
matrix products instead, one block of queries at a time so that a block's scores stay in cache,
brought that UNet call to 1.2 s.

This is diffusers' classic attention (baddbmm, softmax, bmm) done in query blocks, so it shares that
path's precision: the scores are rounded to bf16 before the softmax, which computes in fp32. In fp32,
and for short key sequences (cross-attention on 77 text tokens) or masked attention, PyTorch's SDPA
is as fast or faster and is kept.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# Below this many keys SDPA is as fast (measured: 1024 queries x 1024 keys, 14 ms either way).
MIN_KEYS = 2048
# One block of scores (batch x heads x queries x keys). 8 to 24 MiB ran equally fast on a 32 MiB L3;
# 32 MiB fell back to SDPA's speed. 8 MiB leaves room on laptop CPUs with smaller caches.
BLOCK_BYTES = 8 * 2**20


def blocked_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V for (batch, heads, tokens, head_dim) tensors, in blocks of queries."""
    batch, heads, queries, head_dim = query.shape
    keys = key.shape[-2]
    q = query.reshape(batch * heads, queries, head_dim)
    # Contiguous once here: given the strided views, the bf16 matrix products copied them in every block.
    k_t = key.reshape(batch * heads, keys, head_dim).transpose(1, 2).contiguous()
    v = value.reshape(batch * heads, keys, head_dim).contiguous()
    out = torch.empty_like(q)
    rows = max(1, BLOCK_BYTES // (batch * heads * keys * query.element_size()))
    scores = torch.empty(batch * heads, min(rows, queries), keys, dtype=query.dtype, device=query.device)
    for start in range(0, queries, rows):
        stop = min(start + rows, queries)
        block = scores[:, : stop - start].baddbmm_(q[:, start:stop], k_t, beta=0, alpha=head_dim**-0.5)
        torch.bmm(block.softmax(dim=-1), v, out=out[:, start:stop])
    return out.view(batch, heads, queries, head_dim)


class BlockedAttnProcessor:
    """A diffusers attention processor: the steps of AttnProcessor2_0, with long unmasked attention
    computed by blocked_attention and everything else by PyTorch's SDPA."""

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        if input_ndim == 4:  # an image's feature map (the VAE's mid-block): attend over its pixels
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)

        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, sequence_length, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if attention_mask is None and key.shape[-2] >= MIN_KEYS:
            hidden_states = blocked_attention(query, key, value)
        else:
            hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)  # output projection
        hidden_states = attn.to_out[1](hidden_states)  # dropout (identity in eval)

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        out: torch.Tensor = hidden_states / attn.rescale_output_factor
        return out
