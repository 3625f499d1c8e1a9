"""Attention-based token scores: raw [CLS] attention, attention rollout and attention flow.

Rollout and flow: Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

ABNAR_ZUIDEMA = "Abnar & Zuidema (2020). Quantifying Attention Flow in Transformers. ACL."
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
    has capacity equal to the residual-augmented attention of i on j in layer l. Solved with scipy
    when it is installed, else with the Edmonds-Karp routine below.
    """
    layers = residual_attention(attentions.double()).cpu().numpy()
    n_layers, t, _ = layers.shape
    n_nodes = (n_layers + 1) * t
    capacity = np.zeros((n_nodes, n_nodes))
    for layer in range(n_layers):
        # rows: source tokens at this layer; columns: receiving tokens one layer up
        capacity[layer * t : (layer + 1) * t, (layer + 1) * t : (layer + 2) * t] = layers[layer].T
    sink = n_layers * t + CLS_INDEX
    try:
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import maximum_flow
    except ImportError:  # pragma: no cover - scipy is a declared dependency
        flows = [max_flow_edmonds_karp(capacity, source, sink) for source in range(t)]
    else:
        graph = csr_matrix(np.rint(capacity * _FLOW_SCALE).astype(np.int32))
        flows = [maximum_flow(graph, source, sink).flow_value / _FLOW_SCALE for source in range(t)]
    return torch.tensor(flows, dtype=attentions.dtype)


def max_flow_edmonds_karp(capacity: np.ndarray, source: int, sink: int) -> float:
    """Maximum flow value on a dense capacity matrix (shortest augmenting paths, Edmonds & Karp 1972)."""
    if source == sink:
        raise ValueError("source and sink must differ")
    residual = np.array(capacity, dtype=np.float64)
    n = residual.shape[0]
    total = 0.0
    while True:
        parent = np.full(n, -1)
        parent[source] = source
        queue = deque([source])
        while queue and parent[sink] < 0:
            u = queue.popleft()
            for v in np.nonzero((residual[u] > 1e-12) & (parent < 0))[0]:
                parent[v] = u
                queue.append(v)
        if parent[sink] < 0:
            return total
        path, v = [], sink
        while v != source:
            path.append((parent[v], v))
            v = parent[v]
        push = min(residual[u, w] for u, w in path)
        for u, w in path:
            residual[u, w] -= push
            residual[w, u] += push
        total += push
