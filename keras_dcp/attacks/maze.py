"""MAZE: data-free model stealing with zeroth-order gradient estimation (Kariyappa et al., CVPR 2021)."""

from __future__ import annotations

import keras
import numpy as np

from keras_dcp.attacks.base import SGDL2
from keras_dcp.attacks.disagreement import kl_per_sample, kl_to_logits_per_sample
from keras_dcp.attacks.generator import make_generator
from keras_dcp.attacks.registry import register_attack
from keras_dcp.attacks.zeroth_order import ZerothOrderAttack
from keras_dcp.validation import check_int


@register_attack("maze")
class MAZE(ZerothOrderAttack):
    """MAZE: data-free model stealing with zeroth-order gradient estimation.

    Per iteration, with batch ``n``, ``m`` directions and smoothing ``mu``:

    1. ``gen_iters`` generator steps: ``x = tanh(G(z))``; the generator
       maximises the disagreement ``f(x) = KL(V(x) || C(x))`` (the clone's
       side from its logits, ``log softmax(s)``, as the reference's
       ``kl_div_logits``; from ``log max(C(x), 1e-8)`` for a clone without a
       final ``Softmax`` layer), its gradient in
       pre-tanh space estimated by :func:`zeroth_order_gradient`
       (``n (1 + m)`` queries).
    2. ``clone_iters`` clone steps minimising ``mean_i KL(V(x_i) || C(x_i))``;
       the first reuses the base images (and answers) of the last generator
       step, the others query ``n`` fresh images each.
    3. Experience replay: the last clone batch joins a buffer of all past
       ones, then ``replay_iters`` clone steps on batches drawn from it.

    Queries per iteration (exact, as in the reference):
    ``n ((clone_iters - 1) + (1 + m) gen_iters)``.

    Defaults are the paper's CIFAR-10 ones: ``n = 128``, latent 100, ``m =
    10``, ``mu = 1e-3``, 1 generator / 5 clone / 10 replay steps, clone SGD
    lr 0.1 and generator SGD lr 1e-4 (momentum 0.9, weight decay 5e-4, cosine
    over the iterations).

    Example:

    >>> clone = MAZE(make_clone).extract(victim, budget=5_000_000)  # doctest: +SKIP

    Args:
        make_clone: ``() -> keras.Model`` (uncompiled, softmax outputs).
        make_generator: ``() -> keras.Model`` mapping ``z (n, latent_dim)`` to
            pre-tanh images; default :func:`make_generator`.
        batch_size, latent_dim, num_directions, smoothing: ``n``, latent size,
            ``m``, ``mu``.
        gen_iters, clone_iters, replay_iters: steps per iteration.
        replay_size: most images kept for replay (None: all, as the reference).
        clone_learning_rate, generator_learning_rate: initial SGD rates.
        seed, verbose: as in :class:`~keras_dcp.attacks.Attack`.
        distribute_strategy: a ``tf.distribute.Strategy``; batches are split
            over its replicas.
        checkpoint_dir, checkpoint_every: where and how often (iterations) to
            save; a rerun with the same directory resumes. An interruption
            (exception, Ctrl-C) saves at once; after a hard kill at most
            ``checkpoint_every`` iterations of queries are lost.
    """

    def __init__(
        self,
        make_clone,
        make_generator=None,
        batch_size=128,
        latent_dim=100,
        num_directions=10,
        smoothing=1e-3,
        gen_iters=1,
        clone_iters=5,
        replay_iters=10,
        replay_size=None,
        clone_learning_rate=0.1,
        generator_learning_rate=1e-4,
        seed=0,
        verbose=1,
        distribute_strategy=None,
        checkpoint_dir=None,
        checkpoint_every=50,
    ):
        super().__init__(
            make_clone,
            make_generator=make_generator,
            batch_size=batch_size,
            latent_dim=latent_dim,
            num_directions=num_directions,
            smoothing=smoothing,
            gen_iters=gen_iters,
            clone_iters=clone_iters,
            clone_learning_rate=clone_learning_rate,
            generator_learning_rate=generator_learning_rate,
            seed=seed,
            verbose=verbose,
            distribute_strategy=distribute_strategy,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
        )
        self.replay_iters = check_int("replay_iters", replay_iters, minimum=0)
        self.replay_size = check_int("replay_size", replay_size, minimum=self.batch_size, allow_none=True)

    def cost_per_iteration(self):
        return self.batch_size * ((self.clone_iters - 1) + (1 + self.num_directions) * self.gen_iters)

    def _steps_per_iteration(self):
        return self.clone_iters + self.replay_iters

    def _per_sample_loss(self, teacher, student, xp=np):
        if self.student_outputs == "logits":
            return kl_to_logits_per_sample(teacher, student, xp=xp)
        return kl_per_sample(teacher, student, xp=xp)

    def _default_generator(self, image_shape):
        return make_generator(self.latent_dim, image_shape, final_affine=True)

    def _make_optimizers(self, iterations):
        steps = iterations * self._steps_per_iteration()
        clone_rate = keras.optimizers.schedules.CosineDecay(self.clone_learning_rate, steps)
        generator_rate = keras.optimizers.schedules.CosineDecay(self.generator_learning_rate, iterations * self.gen_iters)
        return (
            SGDL2(l2=5e-4, learning_rate=clone_rate, momentum=0.9),
            SGDL2(l2=5e-4, learning_rate=generator_rate, momentum=0.9),
        )

    def _iteration(self, run):
        run.begin_iteration()
        for _ in range(self.gen_iters):
            x, y, generator_loss = run.generator_step()
        run.pending.append((x, y))  # clone step 0 reuses the last estimate's base images and answers
        for c in range(self.clone_iters):
            if c:
                x, y = run.fresh_batch()
            clone_loss = run.train_pending()[-1]
        run.add_replay(x, y)  # the reference keeps the last clone batch of each iteration
        replay_losses = [
            run.clone_step(bx, by) for bx, by in run.replay.batches(run.rng, self.batch_size, self.replay_iters)
        ]
        metrics = {"clone_loss": clone_loss, "generator_disagreement": generator_loss}
        if replay_losses:
            metrics["replay_loss"] = float(np.mean(replay_losses))
        return metrics


__all__ = ["MAZE"]
