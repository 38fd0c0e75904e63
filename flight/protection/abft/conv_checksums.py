"""The checksums of a convolution, and the nodes that compute them.

By linearity, a sum of a layer's outputs equals the layer applied to a sum of its inputs. For a
Conv the checksums are spatial blocks summed over channel groups: the mean of every output
column (or of enough adjacent columns for `min_positions` positions), summed over the output
channels of each of 8 groups (channel c in group c mod 8), compared with the convolution of the
input's means over the rows each output row reads, by kernels summed over each group. That
convolution's output is one row high and 8 channels deep: it costs about 1/(rows x channels
per group) of the layer, and its 8 summed kernels are a small read, where kernels for every
channel cost as much to stream as the layer's own weights on a small map (`groups` 0 checks
every channel alone, as this module first did). The input's means take one pass over it: for a
Conv that keeps the height (stride 1, at most one padding row above and below, a ResNet's 3x3
and 1x1 layers) they are its column means less its first and last row, which a two-row
convolution dilated over the height subtracts; otherwise a pooling window as tall as the output
per kernel row, and a matrix product for the model input, which is in the plain layout. A map
with fewer positions than `min_positions` (with `groups` 0 and a large `min_positions`) is
checked across channels instead: the mean of a position's outputs against the same convolution
with the mean kernel.
"""

from __future__ import annotations

import numpy as np

from flight.protection.abft.check_builder import Builder
from flight.protection.abft.checked_model import CheckedLayer
from flight.protection.abft.layer_analysis import Conv, Site


def check_site(
    b: Builder, site: Site, index: int, min_positions: int, groups: int
) -> list[CheckedLayer]:
    """Add the check of `site`: block checksums over channel groups (each channel alone when
    its channels do not fall into `groups` groups of two or more), else across channels."""
    first = site.convs[0]
    c_out, out_h, out_w = first.affine.weight.shape[0], first.out_h, first.out_w
    prefix = f"abft/{index}"
    block = next((f for f in _divisors(out_w) if out_h * f >= min_positions), None)
    if block is not None:
        n_groups = groups if 0 < groups < c_out and c_out % groups == 0 else c_out
        diff, sums = _spatial_checksums(b, prefix, site, block, n_groups)
        checksums, span = n_groups * (out_w // block), out_h * block * (c_out // n_groups)
        b.compare(prefix, diff, sums, checksums, 4, site.output)
    else:
        diff = _channel_checksums(b, prefix, site)
        checksums, span = out_h * out_w, c_out
        b.compare(prefix, diff, site.output, c_out * out_h * out_w, 4, site.output)
    return [
        CheckedLayer(conv.name, "Conv", site.output, conv.node.input[1], checksums, span, conv.macs)
        for conv in site.convs
    ]


def _input_rows(b: Builder, prefix: str, conv: Conv) -> tuple[str, int]:
    """rows[i] = the mean over output rows h of input row h*s_h + i (zero rows in the
    padding), and the number of such rows."""
    top = conv.pads[0]
    s_h = conv.strides[0]
    d_h = conv.dilations[0]
    # Rows the convolution reads below the input (negative: input rows it never reads).
    below = s_h * (conv.out_h - 1) + d_h * (conv.kernel[0] - 1) - top - (conv.height - 1)
    pad_below = max(below, 0)
    row_count = conv.height + top + pad_below - s_h * (conv.out_h - 1)
    if conv.x in b.graph.inputs:
        # A model input is in the plain layout, where a matrix product over the height is
        # several times faster than a pooling window as tall as the map (the stem's input).
        rows_of = np.zeros((row_count, conv.height))
        for i in range(row_count):
            for h in range(conv.out_h):
                if 0 <= h * s_h + i - top < conv.height:
                    rows_of[i, h * s_h + i - top] = 1.0 / conv.out_h
        rows = b.node("MatMul", [b.constant(prefix, rows_of), conv.x], f"{prefix}/row_means")
    elif s_h == 1 and top < conv.out_h and pad_below < conv.out_h:
        rows = b.node("AveragePool", [conv.x], f"{prefix}/row_means",
                      kernel_shape=[conv.out_h, 1], pads=[top, 0, pad_below, 0],
                      count_include_pad=1)  # fmt: skip
    else:
        ones = np.full((conv.c_in, 1, conv.out_h, 1), 1.0 / conv.out_h)
        rows = b.node("Conv", [conv.x, b.constant(prefix, ones)], f"{prefix}/row_means",
                      kernel_shape=[conv.out_h, 1], pads=[top, 0, pad_below, 0],
                      dilations=[s_h, 1], group=conv.c_in)  # fmt: skip
    return rows, row_count


def _column_means(b: Builder, x: str, height: int) -> str:
    """The mean of every column of `x` over its `height` rows, computed once per tensor (the
    skip operand of a residual Add is usually the input of the block's first Conv)."""
    key = f"{x}/column_means"
    if key not in b.shared:
        b.shared[key] = b.node("AveragePool", [x], f"abft/{x}/column_means",
                               kernel_shape=[height, 1])  # fmt: skip
    return b.shared[key]


def _edge_rows(conv: Conv) -> dict[int, list[int]] | None:
    """For a Conv that keeps the height (stride 1) and reads at most one padding row above
    and below: kernel rows by the input row they miss (0 or the last), else None."""
    top = conv.pads[0]
    d_h, k_h = conv.dilations[0], conv.kernel[0]
    if conv.strides[0] != 1 or conv.out_h != conv.height or conv.height < 2:
        return None
    offsets = [i * d_h - top for i in range(k_h)]
    if any(abs(o) > 1 for o in offsets):
        return None
    # Kernel row i reads input rows o..H-1+o: o = +1 misses row 0, o = -1 the last row.
    return {0: [i for i, o in enumerate(offsets) if o == 1],
            conv.height - 1: [i for i, o in enumerate(offsets) if o == -1]}  # fmt: skip


def _widened(weight: np.ndarray, block: int, s_w: int, d_w: int) -> np.ndarray:
    """The kernel whose convolution equals `weight`'s convolution of the means of `block`
    columns s_w apart: `block` columns wider."""
    k_w = weight.shape[3]
    kernel = np.zeros((*weight.shape[:3], (k_w - 1) * d_w + (block - 1) * s_w + 1))
    for kw in range(k_w):
        for j in range(block):
            kernel[..., kw * d_w + j * s_w] += weight[..., kw] / block
    return kernel


def _predicted(
    b: Builder, prefix: str, conv: Conv, block: int, weight: np.ndarray, bias: np.ndarray,
    groups: int, into: str,
) -> str:  # fmt: skip
    """`into` plus the convolution `weight` (grouped as the Conv, or dense with `groups` 0
    when it holds kernels summed over output channels) of the input's means over each block of
    output positions: the block sums the Conv's output should have."""
    left, right = conv.pads[1], conv.pads[3]
    s_w, d_w = conv.strides[1], conv.dilations[1]
    edges = _edge_rows(conv) if groups == 0 and conv.x not in b.graph.inputs else None
    if edges is not None:
        # The rows a kernel row reads are every row but at most the first or the last: one
        # pass for the column means, and a convolution of those two rows subtracts them.
        wide = _widened(weight, block, s_w, d_w)
        summed = b.constant(prefix, wide.sum(axis=2, keepdims=True))
        main = b.node(
            "Conv",
            [_column_means(b, conv.x, conv.height), summed, b.constant(prefix, bias)],
            f"{prefix}/checksum", kernel_shape=[1, wide.shape[3]], pads=[0, left, 0, right],
            strides=[1, s_w * block],
        )  # fmt: skip
        into = b.node("Add", [main, into], f"{prefix}/diff")
        if not any(edges.values()):
            return into
        edge = np.stack(
            [-wide[:, :, rows].sum(axis=2) / conv.height for rows in edges.values()], axis=2
        )
        missed = b.node(
            "Conv", [conv.x, b.constant(prefix, edge)], f"{prefix}/edge_rows",
            kernel_shape=[2, edge.shape[3]], pads=[0, left, 0, right],
            dilations=[conv.height - 1, 1], strides=[1, s_w * block],
        )  # fmt: skip
        return b.node("Add", [missed, into], f"{prefix}/diff")
    rows, row_count = _input_rows(b, prefix, conv)
    # One output row, whatever rows the convolution leaves unread at the bottom.
    stride_h = max(1, row_count)
    if block == 1:
        source, kernel, geometry = rows, weight, {"pads": [0, left, 0, right]}
        dilations, strides = conv.dilations, [stride_h, s_w]
    elif groups == 0:
        # Kernels summed over output channels are few: the mean over a block's columns goes
        # into them, as kernels `block` columns wider, instead of into a node.
        kernel = _widened(weight, block, s_w, d_w)
        source, geometry = rows, {"pads": [0, left, 0, right]}
        dilations, strides = [conv.dilations[0], 1], [stride_h, s_w * block]
    else:
        ones = np.full((conv.c_in, 1, 1, block), 1.0 / block)
        source = b.node("Conv", [rows, b.constant(prefix, ones)], f"{prefix}/block_means",
                        kernel_shape=[1, block], pads=[0, left, 0, right], dilations=[1, s_w],
                        group=conv.c_in)  # fmt: skip
        kernel, geometry = weight, {}
        dilations, strides = conv.dilations, [stride_h, s_w * block]
    predicted = b.node(
        "Conv",
        [source, b.constant(prefix, kernel), b.constant(prefix, bias)],
        f"{prefix}/checksum",
        kernel_shape=list(kernel.shape[2:]),
        dilations=dilations,
        strides=strides,
        group=max(groups, 1),
        **geometry,
    )
    return b.node("Add", [predicted, into], f"{prefix}/diff")


def _spatial_checksums(
    b: Builder, prefix: str, site: Site, block: int, groups: int
) -> tuple[str, str]:
    """Mean over each block of (all rows x `block` columns) of every output channel, summed
    over the channels of each of `groups` groups (channel c in group c mod groups), minus the
    convolution of the input's means over the block with the group's summed kernels:
    (difference, the output's block sums)."""
    first = site.convs[0]
    c_out, out_h = first.affine.weight.shape[0], first.out_h
    sums = b.node("AveragePool", [site.output], f"{prefix}/block_sums",
                  kernel_shape=[out_h, block], strides=[1, block])  # fmt: skip
    if site.skip is not None:
        # The skip operand's column means (already there when a checked Conv reads it), minus.
        minus = b.constant(prefix, np.full((c_out, 1, 1, block), -1.0 / block))
        columns = _column_means(b, site.skip, out_h)
        skip = b.node("Conv", [columns, minus], f"{prefix}/skip_sums", kernel_shape=[1, block],
                      strides=[1, block], group=c_out)  # fmt: skip
        sums = b.node("Add", [skip, sums], f"{prefix}/conv_sums")
    member = np.eye(c_out)
    if groups < c_out:
        member = np.zeros((groups, c_out))
        member[np.arange(c_out) % groups, np.arange(c_out)] = 1.0
        sums = b.node("Conv", [sums, b.constant(prefix, member[:, :, None, None])],
                      f"{prefix}/group_sums")  # fmt: skip
    diff = sums
    for conv in site.convs:
        weight, bias, conv_groups = conv.affine.weight, conv.affine.bias, conv.groups
        if groups < c_out:
            weight = np.tensordot(member, _ungrouped(weight, conv.groups), axes=1)
            bias, conv_groups = member @ bias, 0
        # Negated, so that the difference is an Add, which the optimiser fuses into the Conv.
        diff = _predicted(b, prefix, conv, block, -weight, -bias, conv_groups, diff)
    return diff, sums


def _channel_checksums(b: Builder, prefix: str, site: Site) -> str:
    """Mean over output channels at every position, minus one-channel convolutions with the
    mean kernels (and the skip operand's channel mean): the difference."""
    predicted = ""
    for conv in site.convs:
        full = _ungrouped(conv.affine.weight, conv.groups)
        kernel = full.mean(axis=0, keepdims=True)
        term = b.node(
            "Conv",
            [conv.x, b.constant(prefix, kernel), b.constant(prefix, [conv.affine.bias.mean()])],
            f"{prefix}/checksum",
            kernel_shape=conv.kernel,
            strides=conv.strides,
            dilations=conv.dilations,
            pads=conv.pads,
        )
        predicted = b.node("Add", [term, predicted], f"{prefix}/predicted") if predicted else term
    if site.skip is not None:
        c_out = site.convs[0].affine.weight.shape[0]
        mean = b.constant(prefix, np.full((1, c_out, 1, 1), 1.0 / c_out))
        term = b.node("Conv", [site.skip, mean], f"{prefix}/skip_sums")
        predicted = b.node("Add", [term, predicted], f"{prefix}/predicted")
    sums = b.reduce("ReduceMean", f"{prefix}/channel", site.output, [1], 1)
    return b.node("Sub", [sums, predicted], f"{prefix}/diff")


def _ungrouped(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weights [C_out, C_in/g, kh, kw] as dense ones [C_out, C_in, ...]."""
    c_out, c_in_group = weight.shape[:2]
    full = np.zeros((c_out, c_in_group * groups, *weight.shape[2:]))
    per_group = c_out // groups
    for c in range(c_out):
        start = (c // per_group) * c_in_group
        full[c, start : start + c_in_group] = weight[c]
    return full


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
