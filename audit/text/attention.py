"""Attention-based token scores: raw [CLS] attention, attention rollout and attention flow.

Rollout and flow: Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

CLS_INDEX = 0  # BERT-family classifiers read the sequence from the first token
_FLOW_SCALE = 1 << 24  # scipy's max-flow works on integer capacities


def cls_attention(attentions: torch.Tensor) -> torch.Tensor:
    """Attention from [CLS] in the last layer, averaged over heads. attentions: [L, H, T, T] -> [T]."""
    return attentions[-1].mean(0)[CLS_INDEX]


def residual_attention(attentions: torch.Tensor) -> torch.Tensor:
    """Per layer: heads averaged, identity added for the residual path, rows renormalised. -> [L, T, T]."""
    mean = attentions.mean(1)
    eye = torch.eye(mean.shape[-1], dtype=mean.dtype, device=mean.device)
    aug = mean + eye
    return aug / aug.sum(-1, keepdim=True)


def attention_rollout(attentions: torch.Tensor) -> torch.Tensor:
    """Product of the residual-augmented attention over layers, read at the [CLS] row. -> [T]."""
    layers = residual_attention(attentions.double())
    rollout = layers[0]
    for layer in layers[1:]:
        rollout = layer @ rollout
    return rollout[CLS_INDEX].to(attentions.dtype)


def attention_flow(attentions: torch.Tensor) -> torch.Tensor:
    """Max-flow from each input token to the [CLS] output through the layered attention graph. -> [T].

    Nodes are (layer, token) for layers 0..L; an edge from token j at layer l to token i at layer l+1
    has capacity equal to the residual-augmented attention of i on j in layer l.
    """
    layers = residual_attention(attentions.double()).cpu().numpy()
    n_layers, t, _ = layers.shape
    rows, cols, caps = [], [], []
    for layer in range(n_layers):
        dst, src = np.nonzero(layers[layer] > 0)
        rows.append(layer * t + src)
        cols.append((layer + 1) * t + dst)
        caps.append(np.rint(layers[layer][dst, src] * _FLOW_SCALE))
    n_nodes = (n_layers + 1) * t
    graph = csr_matrix(
        (np.concatenate(caps).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_nodes, n_nodes),
    )
    sink = n_layers * t + CLS_INDEX
    flows = [maximum_flow(graph, source, sink).flow_value / _FLOW_SCALE for source in range(t)]
    return torch.tensor(flows, dtype=attentions.dtype)
