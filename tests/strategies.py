"""Hypothesis strategies shared by the property tests: shapes (with broadcasting pairs
and size-1 axes), bounded float64 arrays, and non-contiguous (transposed) layouts."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minift

small_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)


@st.composite
def arrays(draw, shape, low=-3.0, high=3.0):
    """A float64 array of `shape`, sometimes laid out non-contiguously: the same values
    stored transposed and viewed back, which is what a `.T` of a tensor gives an op."""
    shape = tuple(shape)
    data = draw(hnp.arrays(np.float64, shape,
                           elements=st.floats(low, high, allow_nan=False, allow_infinity=False)))
    if len(shape) >= 2 and draw(st.booleans()):
        data = np.ascontiguousarray(data.T).T      # same values, Fortran-order strides
    return data


@st.composite
def leaves(draw, shape, low=-3.0, high=3.0):
    """A float64 leaf tensor that requires grad."""
    return minift.tensor(draw(arrays(shape, low, high)), requires_grad=True)


def away_from(x, points, margin=1e-3):
    """Move values within `margin` of any of `points` (kinks of relu, max ties...)
    so central differences don't straddle a kink."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + 2 * margin
    return x
