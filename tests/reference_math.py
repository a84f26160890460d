"""An independent numpy (float64) transcription of the DCP equations, for tests only.

It follows the issue's equations literally, so a bug in keras_dcp.ops shows up
as a mismatch instead of being copied.
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def reverse_sigmoid_noise(y, beta, gamma):
    y_c = np.clip(y, 1e-12, 1 - 1e-7)
    return beta * (sigmoid(gamma * (np.log(y_c) - np.log(1 - y_c))) - 0.5)


def deception(y, beta, gamma, tau=None, nu=1000.0):
    y = np.asarray(y, dtype=np.float64)
    tau = beta if tau is None else tau
    y_max = y.max(axis=-1, keepdims=True)
    alpha = (y_max < tau).astype(float) if nu is None else sigmoid(nu * (tau - y_max))
    v = np.maximum(y - alpha * reverse_sigmoid_noise(y, beta, gamma), 0)
    return v / v.sum(axis=-1, keepdims=True), alpha
