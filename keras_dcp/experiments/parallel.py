"""``run_experiment(..., parallel_clones=N)``: the runs of a sweep whose clones can train together, trained together.

A KnockoffNets run with random sampling has a transfer set that does not
depend on its clone, so the runner can pay for every run's queries first
(through the same metered :class:`~keras_dcp.attacks.BlackBox` and
:class:`~keras_dcp.experiments.DefenseMeter` as one at a time, so
``queries_used``, ``l1_distance`` and ``perturbed_fraction`` are recorded as
they always are, each run paying for its own queries) and train the clones
afterwards, ``N`` at a time, with :func:`keras_dcp.attacks.vectorized.train_clones`
(JAX backend). Runs are grouped by what a joint training needs to share: the
clone-training recipe (epochs, batch size, optimizer, augmentation) and the
budget; the architecture is the one ``make_clone`` of the experiment.
Everything else (MAZE, DFME, the adaptive strategy, checkpointed runs) runs
one at a time as before.

Each clone is then scored on the test set in one vmapped forward pass per
batch, against the defended and undefended victim's top-1 answers computed
once per defense: the same ``attacker_accuracy``, ``agreement`` and
``agreement_undefended`` as :func:`keras_dcp.attacks.evaluate_clone`.
``seconds`` of such a run is its querying time plus its share (``1 / k`` for a
group of ``k``) of the group's training and evaluation time.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable

import keras
import numpy as np

from keras_dcp.attacks.knockoff import KnockoffNets
from keras_dcp.attacks.vectorized import CloneTraining, train_clones
from keras_dcp.validation import check_int

#: Printed (one line, stderr) when ``parallel_clones`` cannot be honoured.
FALLBACK_NOTICE = (
    "keras-dcp: parallel_clones needs the JAX backend (KERAS_BACKEND=jax); the backend is {backend}, "
    "so the clones train one at a time."
)


def check_parallel_clones(parallel_clones: int | None) -> int | None:
    """None (one clone at a time, Keras ``fit``) or an int ``N >= 1``."""
    return check_int("parallel_clones", parallel_clones, minimum=1, allow_none=True)


def resolve_parallel_clones(parallel_clones: int | None) -> int | None:
    """``parallel_clones``, or None with :data:`FALLBACK_NOTICE` printed where it cannot run.

    It needs the JAX backend; with a ``keras.distribution`` set (``--distribute
    data-parallel``) the clones also train one at a time (that pairing is not tested).
    """
    parallel_clones = check_parallel_clones(parallel_clones)
    if parallel_clones is None:
        return None
    backend = keras.backend.backend()
    if backend != "jax":
        print(FALLBACK_NOTICE.format(backend=backend), file=sys.stderr)
        return None
    if keras.distribution.distribution() is not None:
        print("keras-dcp: parallel_clones does not combine with a keras.distribution; "
              "the clones train one at a time.", file=sys.stderr)
        return None
    return parallel_clones


@dataclasses.dataclass
class _Pending:
    run: dict
    seed: int
    training: CloneTraining
    indices: np.ndarray
    targets: np.ndarray
    defended_top1: np.ndarray
    seconds: float


class CloneBatch:
    """The runs waiting to be trained together, and how to train and score them.

    Args:
        size: ``N``, most clones trained at once.
        make_clone: ``() -> keras.Model``, the experiment's clone architecture.
        x_queries: float32 query images shared by every run.
        precision: ``"float32"`` or ``"mixed_bfloat16"``.
        eval_batch_size: images per forward pass when scoring clones.
        verbose: 1 shows the training progress bar (images per second).
    """

    def __init__(self, size: int, make_clone: Callable[[], keras.Model], x_queries: np.ndarray,
                 precision: str = "float32", eval_batch_size: int = 256, verbose: int = 1):
        self.size = check_int("parallel_clones", size, minimum=1)
        self.make_clone = make_clone
        self.x_queries = x_queries
        self.precision = precision
        self.eval_batch_size = int(eval_batch_size)
        self.verbose = int(verbose)
        self.pending: list[_Pending] = []
        self.groups: list[dict[str, Any]] = []

    @staticmethod
    def accepts(attack) -> bool:
        """Whether ``attack``'s clone can be trained later, with others (random-sampling KnockoffNets)."""
        return isinstance(attack, KnockoffNets) and attack.trains_in_parallel

    def add(self, run: dict, attack: KnockoffNets, black_box, meter, budget: int, defended_top1: np.ndarray) -> None:
        """Pay for ``attack``'s transfer set now (as it would itself) and queue its clone; ``run`` is filled later."""
        started = time.perf_counter()
        indices, answers = attack.transfer_set(black_box, self.x_queries, budget=budget)
        meter.recording = False
        run.update(
            queries_used=int(black_box.queries_used),
            l1_distance=float(meter.l1_distance),
            perturbed_fraction=float(meter.perturbed_fraction),
        )
        self.pending.append(
            _Pending(run, attack.seed, CloneTraining.of(attack), indices, attack.training_targets(answers),
                     np.asarray(defended_top1), time.perf_counter() - started)
        )

    def train_and_evaluate(self, x_test: np.ndarray, y_test: np.ndarray, undefended_top1: np.ndarray,
                           progress=None) -> None:
        """Train the queued clones in groups of at most ``N`` that share recipe and budget; fill their runs."""
        groups: dict = {}
        for item in self.pending:
            groups.setdefault((item.training, len(item.indices)), []).append(item)
        for (training, _), items in groups.items():
            for start in range(0, len(items), self.size):
                self._train_group(items[start : start + self.size], training, x_test, y_test, undefended_top1,
                                  progress)
        self.pending = []

    def _train_group(self, items, training, x_test, y_test, undefended_top1, progress):
        if progress is not None:
            progress.set_description(f"{len(items)} clone(s) together")
        trained = train_clones(
            self.make_clone, [item.seed for item in items], self.x_queries,
            np.stack([item.indices for item in items]), np.stack([item.targets for item in items]),
            training=training, precision=self.precision, verbose=self.verbose,
        )
        started = time.perf_counter()
        top1 = np.argmax(trained.predict(x_test, batch_size=self.eval_batch_size), axis=-1)
        evaluation_seconds = time.perf_counter() - started
        share = (trained.seconds + evaluation_seconds) / len(items)
        for item, clone_top1 in zip(items, top1):
            item.run.update(
                attacker_accuracy=float(np.mean(clone_top1 == y_test)),
                agreement=float(np.mean(clone_top1 == item.defended_top1)),
                agreement_undefended=float(np.mean(clone_top1 == undefended_top1)),
                seconds=float(item.seconds + share),
            )
            if progress is not None:
                progress.update(1)
                progress.set_postfix(clone=f"{item.run['attacker_accuracy']:.3f}")
        self.groups.append(
            {
                "clones": len(items),
                "images": int(trained.images),
                "seconds": float(trained.seconds),
                "compile_seconds": float(trained.compile_seconds),
                "images_per_second": float(trained.images_per_second),
                "evaluation_seconds": float(evaluation_seconds),
            }
        )


__all__ = ["FALLBACK_NOTICE", "CloneBatch", "check_parallel_clones", "resolve_parallel_clones"]
