"""Draw docs/figures/dcp_perturbation.png from keras_dcp.ops (the functions every layer calls).

    PYTHONPATH=. python docs/tools/draw_perturbation.py        # from the repository root

Three panels: (a) the per-entry map g(y) = y - r(y) with the reverse-sigmoid
noise r; (b) the detector alpha(max y) for the default nu and a smooth one;
(c) one unsure 10-class answer before and after DCP at the defaults.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from keras_dcp import ops

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(os.path.dirname(HERE), "figures", "dcp_perturbation.png")
BETA, GAMMA = 0.7, 0.2  # the defaults (tau = beta)


def main(path: str = OUTPUT) -> str:
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.6))

    y = np.linspace(0.0, 1.0, 2001, dtype="float32")[:, None]
    for beta, gamma in ((BETA, GAMMA), (0.9, GAMMA), (BETA, 0.5)):
        g = y - np.asarray(ops.reverse_sigmoid_noise(y, beta, gamma))
        left.plot(y[:, 0], g[:, 0], label=f"beta={beta}, gamma={gamma}")
    left.plot([0, 1], [0, 1], "k:", linewidth=1, label="identity")
    left.set(xlabel="y (one probability)", ylabel="g(y) = y - r(y)", title="(a) the reverse-sigmoid map")
    left.legend(fontsize=8)

    top = np.linspace(0.5, 1.0, 501, dtype="float32")
    for nu in (1000.0, 20.0):
        # The detector reads only max y: rows (top, 1 - top) have max y = top for top >= 1/2.
        alpha = np.asarray(ops.detector(np.stack([top, 1 - top], 1), tau=BETA, nu=nu)).reshape(-1)
        middle.plot(top, alpha, label=f"nu={nu:g}")
    middle.axvline(BETA, color="k", linestyle="--", linewidth=1, label=f"tau={BETA}")
    middle.set(xlabel="max y", ylabel="alpha(y)", title="(b) the detector")
    middle.legend(fontsize=8)

    answer = np.array([[0.46, 0.21, 0.12, 0.07, 0.05, 0.03, 0.025, 0.015, 0.01, 0.01]], "float32")
    answer /= answer.sum()
    defended = np.asarray(ops.deception(answer, beta=BETA, gamma=GAMMA))
    classes = np.arange(answer.shape[1])
    right.bar(classes - 0.2, answer[0], width=0.4, label="y (victim)")
    right.bar(classes + 0.2, defended[0], width=0.4, label="y' (DCP)")
    l1 = float(np.abs(defended - answer).sum())
    right.set(xlabel="class", ylabel="probability", xticks=classes,
              title=f"(c) an unsure answer, l1 = {l1:.2f}")
    right.legend(fontsize=8)

    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


if __name__ == "__main__":
    print(main())
