#!/usr/bin/env python3
"""What MAD costs as its authors run it: the reference algorithm at batch 1 in PyTorch (not a test).

Re-implements, step for step, what the Prediction Poisoning reference
(tribhuvanesh/prediction-poisoning, ``defenses/victim/bb_mad.py``, run with
``batch_size=1`` and ``objmax=True`` as in the authors' scripts) does per query,
so its cost can be set against the in-graph closed form of ``keras_dcp.MAD``:

1. the victim's posterior ``y`` (no grad);
2. the surrogate's Jacobian ``G`` (``K x D``): one forward pass with grad, then
   ``K`` calls of ``torch.autograd.grad`` of ``-log p_k`` w.r.t. the last
   layer's weight (``retain_graph=True``);
3. the oracle: a Python loop over the ``K`` one-hot vertices evaluating
   ``|| G^T v/||G^T v|| - G^T y/||G^T y|| ||^2`` (or, ``--argmax``, over the
   ``2^(K-1)`` MAD-argmax vertices in numpy, as the reference does for ``K <= 10``);
4. the closed-form line search ``a = min(1, eps / ||y* - y||_1)``.

Models: CIFAR ResNet-20s (He et al. 2016; 3 stages of 3 basic blocks, 16/32/64
filters, projection shortcuts), fresh random weights, eval mode. Needs PyTorch
(not a keras-dcp dependency); timings are wall clock on this machine:

    python benchmarks/mad_reference_torch.py --queries 50 --json mad_reference.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def jacobian_nll(x, surrogate, num_classes):
    """``G`` (K x D): gradients of ``-log p_k`` w.r.t. the last layer's weight, K backward calls."""
    nll = -F.log_softmax(surrogate(x), dim=1).mean(dim=0)
    weight = surrogate.fc.weight
    return torch.stack([torch.autograd.grad(nll[k], weight, retain_graph=True)[0].flatten()
                        for k in range(num_classes)])


def angular(v, y, g):
    u = g.t() @ v
    w = g.t() @ y
    return ((u / u.norm()) - (w / w.norm())).norm() ** 2


def oracle_extreme(g, y):
    best_k, best = -1, -1.0
    for k in range(len(y)):
        v = torch.zeros_like(y)
        v[k] = 1.0
        value = angular(v, y, g)
        if value > best:
            best_k, best = k, value
    target = torch.zeros_like(y)
    target[best_k] = 1.0
    return target


def oracle_argmax(g, y):
    top, g_np, y_np = int(y.argmax()), g.detach().numpy(), y.detach().numpy()
    vertices = np.asarray(list(itertools.product([0, 1], repeat=len(y))), dtype=np.float32)
    best, target = -1.0, None
    for v in vertices[vertices[:, top] > 0]:
        v[top] += 1e-5
        v = v / v.sum()
        u, w = g_np.T @ v, g_np.T @ y_np
        value = np.linalg.norm(u / np.linalg.norm(u) - w / np.linalg.norm(w)) ** 2
        if value > best:
            best, target = value, v
    return torch.tensor(target)


def mad_reference(x, victim, surrogate, eps, argmax=False):
    """The reference's answer for a batch, one query at a time."""
    with torch.no_grad():
        y = F.softmax(victim(x), dim=1)
    answers = []
    for i in range(x.shape[0]):
        with torch.enable_grad():
            g = jacobian_nll(x[i:i + 1], surrogate, y.shape[1])
        target = (oracle_argmax if argmax else oracle_extreme)(g, y[i])
        alpha = (eps / ((y[i] - target).norm(p=1) + 1e-7)).clamp(0.0, 1.0)
        answers.append((1 - alpha) * y[i] + alpha * target)
    return torch.stack(answers)


def time_per_call(fn, calls, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50, help="timed batch-1 queries per setting (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--eps", type=float, default=0.5)
    parser.add_argument("--threads", type=int, help="torch threads (default: PyTorch's)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    victim, surrogate = ResNet20().eval(), ResNet20().eval()
    x = torch.rand(1, 3, 32, 32)

    def undefended():
        with torch.no_grad():
            return F.softmax(victim(x), dim=1)

    settings = {
        "none (victim forward)": undefended,
        "MAD reference": lambda: mad_reference(x, victim, surrogate, args.eps),
        "MAD-argmax reference": lambda: mad_reference(x, victim, surrogate, args.eps, argmax=True),
        "surrogate forward+backward only": lambda: jacobian_nll(x, surrogate, 10),
    }
    rounds = {name: [] for name in settings}
    for r in range(args.rounds):
        names = list(settings)
        for name in names[r % len(names):] + names[:r % len(names)]:
            rounds[name].append(statistics.median(time_per_call(settings[name], max(1, args.queries // args.rounds))))
    none = rounds["none (victim forward)"]
    results = {
        "machine": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "batch": 1, "eps": args.eps, "date": time.strftime("%Y-%m-%d %H:%M"),
        "settings": {
            name: {"median_ms": statistics.median(values) * 1e3,
                   "round_medians_ms": [v * 1e3 for v in values],
                   "ratio_to_none": statistics.median(a / b for a, b in zip(values, none))}
            for name, values in rounds.items()
        },
    }
    for name, row in results["settings"].items():
        print(f"{name:34s} {row['median_ms']:9.3f} ms/query   x none {row['ratio_to_none']:7.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
