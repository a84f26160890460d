"""An independent numpy (float64) transcription of the DCP equations, for tests only.

It follows the README's equations literally, so a bug in keras_dcp.ops shows up
as a mismatch instead of being copied. The clip bounds are the README's: the
float32 values of 1e-12 and 1 - 1e-7 (``float32(1 - 1e-7) = 1 - 2**-23``), the
only ceiling below 1 that float32 can hold there; with a large ``beta`` the
difference between ``1 - 1e-7`` and ``1 - 2**-23`` in ``log(1 - y_c)`` shows.
"""

import numpy as np

#: The README's clip bounds, as float32 numbers (then computed in float64).
PROB_FLOOR = float(np.float32(1e-12))
PROB_CEIL = float(np.float32(1 - 1e-7))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def reverse_sigmoid_noise(y, beta, gamma):
    y_c = np.clip(y, PROB_FLOOR, PROB_CEIL)
    return beta * (sigmoid(gamma * (np.log(y_c) - np.log(1 - y_c))) - 0.5)


def deception(y, beta, gamma, tau=None, nu=1000.0):
    y = np.asarray(y, dtype=np.float64)
    tau = beta if tau is None else tau
    y_max = y.max(axis=-1, keepdims=True)
    alpha = (y_max < tau).astype(float) if nu is None else sigmoid(nu * (tau - y_max))
    v = np.maximum(y - alpha * reverse_sigmoid_noise(y, beta, gamma), 0)
    return v / v.sum(axis=-1, keepdims=True), alpha
