"""Colour and texture statistics of an ImageNet CNN's inner layers as an image embedding.

Why: an ImageNet network's last layer is trained to name objects, so it pools away much of what
the stages this tool labels are made of: spots, discolouration, wrinkling and drying. The
inner layers still hold it. The mean and standard deviation over the image of each channel of
an inner block (the feature statistics that style transfer matches) describe the colour and
texture without the object's shape or position.

Measured with :func:`serieslabeler.simulation.proposals.proposal_ceiling` (leave one subject
out) on EfficientNet-Lite0: the last blocks of its 112- and 192-channel stages (``_blocks`` 10
and 14) bring the boundary corrections per series down from 2.09 to 1.45 on the bundled bananas
and from 1.82 to 1.67 on a synthetic 60-leaf time-lapse none of this was tuned on.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TEXTURE_BLOCKS = (10, 14)
TEXTURE_CHANNELS = (112, 192)  # the output channels of EfficientNet-Lite0's blocks 10 and 14


def texture_dim(channels=TEXTURE_CHANNELS) -> int:
    return 2 * sum(channels)


def block_statistics(network: "torch.nn.Module", blocks=TEXTURE_BLOCKS) -> "torch.nn.Module":
    """A module taking an EfficientNet(-Lite) ``network``'s normalized input batches to the
    per-channel mean and standard deviation of the outputs of ``blocks`` (indices into
    ``network._blocks``), concatenated block by block, ``(N, 2 x channels)``. The blocks after
    the last one are never run."""
    import torch

    class BlockStatistics(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            net = self.network
            x = net._swish(net._bn0(net._conv_stem(x)))
            parts = []
            for index, block in enumerate(net._blocks[: max(blocks) + 1]):
                x = block(x)
                if index in blocks:
                    parts += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
            return torch.cat(parts, dim=1)

    return BlockStatistics()
