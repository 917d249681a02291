"""models.losses"""
from __future__ import annotations


# --- the two losses ----------------------------------------------------------------------
def mutual_information(p1, p2, eps: float = 1e-12):
    """IIC mutual information between two batches of class distributions (torch tensors).

    ``p1[n]`` and ``p2[n]`` are the softmax outputs for two views of image ``n``. The joint
    distribution is the batch mean of their outer products, symmetrized; the result is
    ``I = sum P log(P / (P_c P_c'))``: ``log k`` for a balanced one-to-one joint, 0 when
    the two outputs are independent.
    """
    import torch

    joint = p1.transpose(0, 1) @ p2 / p1.shape[0]
    joint = (joint + joint.transpose(0, 1)) / 2
    joint = joint.clamp_min(eps)
    rows = joint.sum(dim=1, keepdim=True)
    cols = joint.sum(dim=0, keepdim=True)
    return torch.sum(joint * (joint.log() - rows.log() - cols.log()))


def inverse_cross_entropy(p, q, eps: float = 1e-7):
    """``CE^-1(p, q) = -sum_c p(c) ln(1 - q(c))`` over the last axis (torch tensors).

    Zero when ``p`` and ``q`` have disjoint support; large when both put their mass on the
    same cluster. Broadcasts, so ``p[:, None]`` against ``q[None]`` gives every pair.
    """
    return -(p * (1 - q).clamp_min(eps).log()).sum(dim=-1)
