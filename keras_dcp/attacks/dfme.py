"""DFME: data-free model extraction (Truong et al., CVPR 2021)."""

from __future__ import annotations

import keras
import numpy as np

from keras_dcp.attacks.base import SGDL2
from keras_dcp.attacks.disagreement import VICTIM_FLOOR, l1_logits_per_sample, l1_to_logits_per_sample
from keras_dcp.attacks.generator import make_generator
from keras_dcp.attacks.registry import register_attack
from keras_dcp.attacks.zeroth_order import ZerothOrderAttack


@register_attack("dfme")
class DFME(ZerothOrderAttack):
    """DFME: data-free model extraction (Truong et al., CVPR 2021).

    Per iteration, with batch ``n`` and ``m`` directions:

    1. ``gen_iters`` generator steps maximising
       ``f(x) = mean_k |s(x)_k - l(V(x))_k|``: the l1 distance between the
       clone's raw logits ``s`` and the victim's logits recovered from its
       probabilities, ``l(p) = log p - mean_k log p`` with ``p`` clamped to at
       least ``1e-30`` (:func:`~keras_dcp.attacks.disagreement.centered_log`,
       :data:`~keras_dcp.attacks.disagreement.VICTIM_FLOOR`), as the reference
       (``no_logits=1``, ``logit_correction='mean'``). A clone without a final
       ``Softmax`` layer falls back to ``s = l(C(x))``, its own recovered logits.
       Gradient estimated in pre-tanh space with ``m`` forward differences,
       ``eps = 1e-3`` (``n (m + 1)`` queries: the base images are queried too).
    2. ``clone_iters`` (the paper's ``d_iter``) clone steps minimising
       ``mean_i f(x_i)`` on ``n`` freshly generated and queried images each.

    Queries per iteration (exact, as in the reference):
    ``n (gen_iters (m + 1) + clone_iters)``.

    Defaults are the paper's CIFAR-10 ones: ``n = 256``, latent 256, ``m = 1``,
    ``eps = 1e-3``, 1 generator / 5 clone steps; clone SGD lr 0.1 (momentum
    0.9, weight decay 5e-4), generator Adam lr 1e-4, both multiplied by 0.3 at
    10%, 30% and 50% of the run.

    Args:
        make_clone: ``() -> keras.Model`` (uncompiled, softmax outputs).
        make_generator: ``() -> keras.Model``, ``z -> pre-tanh images``;
            default :func:`make_generator` with a non-affine last batch norm.
        batch_size, latent_dim, num_directions, smoothing: ``n``, latent size,
            ``m``, ``eps``.
        gen_iters, clone_iters: ``g_iter``, ``d_iter``.
        clone_learning_rate, generator_learning_rate: initial rates.
        seed, verbose, distribute_strategy, checkpoint_dir, checkpoint_every:
            as in :class:`MAZE`.
    """

    def __init__(
        self,
        make_clone,
        make_generator=None,
        batch_size=256,
        latent_dim=256,
        num_directions=1,
        smoothing=1e-3,
        gen_iters=1,
        clone_iters=5,
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

    def cost_per_iteration(self):
        return self.batch_size * (self.gen_iters * (self.num_directions + 1) + self.clone_iters)

    def _per_sample_loss(self, teacher, student, xp=np):
        if self.student_outputs == "logits":
            return l1_to_logits_per_sample(teacher, student, floor=VICTIM_FLOOR, xp=xp)
        return l1_logits_per_sample(teacher, student, floor=VICTIM_FLOOR, xp=xp)

    def _default_generator(self, image_shape):
        return make_generator(self.latent_dim, image_shape, final_affine=False)

    def _make_optimizers(self, iterations):
        def multistep(rate, steps_per_iteration):
            total = iterations * steps_per_iteration
            boundaries = sorted({max(1, int(f * total)) for f in (0.1, 0.3, 0.5)})
            values = [rate * 0.3**k for k in range(len(boundaries) + 1)]
            return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)

        return (
            SGDL2(l2=5e-4, learning_rate=multistep(self.clone_learning_rate, self.clone_iters), momentum=0.9),
            keras.optimizers.Adam(learning_rate=multistep(self.generator_learning_rate, self.gen_iters)),
        )

    def _iteration(self, run):
        run.begin_iteration()
        for _ in range(self.gen_iters):
            _, _, generator_loss = run.generator_step()
        losses = []
        for _ in range(self.clone_iters):
            run.fresh_batch()
            losses.extend(run.train_pending())
        return {"clone_loss": losses[-1], "generator_disagreement": generator_loss}


__all__ = ["DFME"]
