"""What MAZE and DFME share: the attack loop, the replay buffer, query accounting and checkpoints.

MAZE (Kariyappa, Prakash and Qureshi, CVPR 2021) and DFME (Truong et al.,
CVPR 2021) train a generator ``G`` to produce images on which the clone ``C``
and the victim ``V`` disagree, and the clone to agree with the victim on them.
The victim is a black box, so the generator's gradient through it is
*estimated* from extra queries (:mod:`keras_dcp.attacks.gradient_estimation`).
Every query, the gradient-estimation ones included, goes through the
(defended) :class:`~keras_dcp.attacks.BlackBox` (the reference code sends the
estimation queries to the clean model; that would overstate the attack).

Both training steps are plain Keras (``compile`` + ``train_on_batch``), so the
attacks run on every Keras backend (TensorFlow, JAX, PyTorch) and under a
``tf.distribute`` strategy:

* clone step: minimise ``mean_i f(V(x_i), C(x_i))`` with the attack's
  per-sample disagreement ``f`` as the Keras loss, computed on the clone's raw
  logits when it ends in a ``Softmax`` layer (every zoo model does; the
  *student* model, :func:`~keras_dcp.attacks.disagreement.logits_model`,
  shares its variables), else on its probabilities (``student_outputs``);
* generator step: with ``g_i`` the estimated gradient of ``f`` at
  ``x_pre_i = G(z_i)``, minimise the surrogate ``-(1/n) sum_i <g_i, G(z_i)>``,
  whose gradient in ``G``'s weights is ``-(1/n) sum_i J_i^T g_i`` (gradient
  ascent on the estimated disagreement).
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_dcp.attacks.base import Attack, QueryStore, check_distribute_strategy, strategy_scope
from keras_dcp.attacks.disagreement import logits_model
from keras_dcp.attacks.generator import to_images
from keras_dcp.attacks.gradient_estimation import zeroth_order_gradient
from keras_dcp.validation import check_int, check_positive


class ReplayBuffer:
    """MAZE's experience replay: every stored ``(x, y)`` (the oldest overwritten past ``capacity``)."""

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self.x = self.y = None
        self.size = 0
        self._next = 0  # write position once the buffer is full (ring mode)

    def _reserve(self, rows):
        """Grow the arrays (doubling, capped at ``capacity``) to hold ``rows`` rows."""
        current = 0 if self.x is None else len(self.x)
        if rows <= current:
            return
        new = max(rows, 2 * current)
        if self.capacity is not None:
            new = min(new, self.capacity)
        grown_x = np.empty((new, *self._shape_x), "float32")
        grown_y = np.empty((new, *self._shape_y), "float32")
        if self.size:
            grown_x[: self.size], grown_y[: self.size] = self.x[: self.size], self.y[: self.size]
        self.x, self.y = grown_x, grown_y

    def add(self, x, y):
        self._shape_x, self._shape_y = x.shape[1:], y.shape[1:]
        for row_x, row_y in zip(x, y):
            if self.capacity is None or self.size < self.capacity:
                self._reserve(self.size + 1)
                self.x[self.size], self.y[self.size] = row_x, row_y
                self.size += 1
            else:
                self.x[self._next], self.y[self._next] = row_x, row_y
                self._next = (self._next + 1) % self.capacity

    def batches(self, rng, batch_size, count):
        """Up to ``count`` full batches of a fresh random order of the buffer (as the reference)."""
        order = rng.permutation(self.size)
        for k in range(min(count, self.size // batch_size)):
            ids = order[k * batch_size : (k + 1) * batch_size]
            yield self.x[ids], self.y[ids]


def ascent_surrogate(gradient, x_pre):
    """Per-sample ``-<g_i, x_pre_i>``: its mean's gradient in the generator's weights ascends ``f``."""
    product = keras.ops.reshape(gradient * x_pre, (keras.ops.shape(x_pre)[0], -1))
    return -keras.ops.sum(product, axis=-1)


class ZerothOrderAttack(Attack):
    """Shared machinery of :class:`~keras_dcp.attacks.MAZE` and :class:`~keras_dcp.attacks.DFME`.

    One *iteration* is ``gen_iters`` generator steps (each one query of
    ``batch (1 + m)`` images for the gradient estimate) and the clone steps;
    ``extract`` runs ``floor(budget / cost)`` iterations, ``cost`` the exact
    queries of one iteration, so the victim answers exactly
    ``iterations * cost`` images.
    """

    needs_query_images = False

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
        clone_learning_rate=0.1,
        generator_learning_rate=1e-4,
        seed=0,
        verbose=1,
        distribute_strategy=None,
        checkpoint_dir=None,
        checkpoint_every=50,
    ):
        super().__init__(make_clone, seed=seed, verbose=verbose)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.num_directions = check_int("num_directions", num_directions, minimum=1)
        self.gen_iters = check_int("gen_iters", gen_iters, minimum=1)
        self.clone_iters = check_int("clone_iters", clone_iters, minimum=1)
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
        self.smoothing = check_positive("smoothing", smoothing)
        self.clone_learning_rate = check_positive("clone_learning_rate", clone_learning_rate)
        self.generator_learning_rate = check_positive("generator_learning_rate", generator_learning_rate)
        if make_generator is not None and not callable(make_generator):
            raise ValueError(f"`make_generator` must be a callable returning a keras.Model; got {make_generator!r}.")
        self.make_generator = make_generator
        self.distribute_strategy = check_distribute_strategy(distribute_strategy)
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.generator = None
        self.iterations = 0
        #: What the losses see of the clone: "logits" (its Softmax layer's input) or "probabilities".
        self.student_outputs = "probabilities"

    # -- what subclasses define ------------------------------------------------

    def cost_per_iteration(self) -> int:
        """Victim queries of one iteration."""
        raise NotImplementedError

    def _steps_per_iteration(self):
        """Clone optimizer steps per iteration (for the schedule length)."""
        return self.clone_iters

    def _per_sample_loss(self, teacher, student, xp=np):
        """The disagreement ``f`` per row that the generator maximises and the clone minimises."""
        raise NotImplementedError

    def _make_optimizers(self, iterations):
        raise NotImplementedError

    def _default_generator(self, image_shape):
        raise NotImplementedError

    def _iteration(self, run):
        raise NotImplementedError

    # -- extract ---------------------------------------------------------------

    def extract(self, victim, query_images=None, budget: int | None = None) -> keras.Model:
        """Steal ``victim`` with generated queries only; returns the clone.

        Args:
            victim: a :class:`~keras_dcp.attacks.BlackBox` with a known
                ``input_shape`` (H and W divisible by 4 for the default
                generator).
            query_images: must be None (data-free attack).
            budget: total queries; default what the victim has left. The
                attack spends ``floor(budget / cost) * cost`` of them.

        Returns:
            The trained clone (a ``keras.Model``).
        """
        victim = self._check_victim(victim)
        if query_images is not None:
            raise ValueError(f"{type(self).__name__} is data-free: it takes no query images.")
        if victim.input_shape is None or None in victim.input_shape:
            raise ValueError("The victim's input_shape is unknown; create the BlackBox with input_shape=(H, W, C).")
        budget = self._resolve_budget(victim, budget)
        cost = self.cost_per_iteration()
        iterations = budget // cost
        if iterations < 1:
            raise ValueError(
                f"A budget of {budget} queries buys no iteration of {type(self).__name__} "
                f"(one costs batch_size * ... = {cost})."
            )
        keras.utils.set_random_seed(self.seed)
        self.history = {}
        with strategy_scope(self.distribute_strategy):
            clone = self._new_clone(np.zeros((1, *victim.input_shape), "float32"))
            student = logits_model(clone)
            if self.make_generator is None:
                generator = self._default_generator(victim.input_shape)
            else:
                generator = self.make_generator()
            clone_optimizer, generator_optimizer = self._make_optimizers(iterations)
        self.generator = generator
        self.student_outputs = "probabilities" if student is None else "logits"
        run = ZerothOrderRun(self, victim, student or clone, generator, clone_optimizer, generator_optimizer,
                             iterations)
        run.restore()
        progbar = None
        if self.verbose:
            progbar = keras.utils.Progbar(iterations, unit_name="iteration", stateful_metrics=["queries"])
            progbar.update(run.iteration)
        while run.iteration < iterations:
            try:
                metrics = self._iteration(run)
            except BaseException:
                run.save(interrupted=True)
                raise
            run.iteration += 1
            for name, value in metrics.items():
                self.history.setdefault(name, []).append(float(value))
            if run.store is not None and (run.iteration % self.checkpoint_every == 0 or run.iteration == iterations):
                run.save()
            if progbar is not None:
                progbar.update(run.iteration, [(k, float(v)) for k, v in metrics.items()] + [("queries", run.paid)])
        self.iterations = run.iteration
        self.queries_used = run.paid
        return clone


class ZerothOrderRun:
    """Everything one ``extract`` run shares: models, training steps, RNG, query accounting, checkpoint.

    ``clone`` here is the model the losses see: the clone's logits model
    (sharing its variables) or the clone itself (``attack.student_outputs``).
    """

    def __init__(self, attack, victim, clone, generator, clone_optimizer, generator_optimizer, iterations):
        self.attack = attack
        self.victim = victim
        self.clone = clone
        self.generator = generator
        self.iterations = iterations
        self.iteration = 0
        self.paid = 0
        self.rng = np.random.default_rng(attack.seed)
        self.replay = ReplayBuffer(getattr(attack, "replay_size", None))
        self.pending = []  # answered (x, y) batches the clone has not trained on yet
        self._replay_since_save = []
        self._paid_at_iteration_start = 0
        self.store = None
        if attack.checkpoint_dir is not None:
            self.store = QueryStore(attack.checkpoint_dir)
            self.store.check_meta(
                {
                    "attack": type(attack).__name__,
                    "seed": attack.seed,
                    "iterations": int(iterations),
                    "cost_per_iteration": int(attack.cost_per_iteration()),
                    "input_shape": list(victim.input_shape),
                }
            )

        def clone_loss(teacher, student):
            return attack._per_sample_loss(teacher, student, xp=keras.ops)

        with strategy_scope(attack.distribute_strategy):
            clone.compile(optimizer=clone_optimizer, loss=clone_loss)
            generator.compile(optimizer=generator_optimizer, loss=ascent_surrogate)
            clone_optimizer.build(clone.trainable_variables)
            generator_optimizer.build(generator.trainable_variables)

    # -- steps -----------------------------------------------------------------

    def latent(self):
        return self.rng.standard_normal((self.attack.batch_size, self.attack.latent_dim)).astype("float32")

    def generate(self, z):
        """Pre-tanh images ``(n, H, W, C)`` for latents ``z`` (batch norm in training mode, as the references)."""
        return np.asarray(keras.ops.convert_to_numpy(self.generator(z, training=True)), "float32")

    def predict_clone(self, x):
        if self.attack.distribute_strategy is not None:
            # Keras' predict_on_batch under a tf.distribute strategy returns one replica's rows only.
            return np.asarray(keras.ops.convert_to_numpy(self.clone(x, training=False)), "float32")
        return np.asarray(keras.ops.convert_to_numpy(self.clone.predict_on_batch(x)), "float32")

    def query(self, x, tag):
        y = self.victim.query(x, tag=tag)
        self.paid += len(x)
        return y

    def clone_step(self, x, y):
        """One optimizer step of the clone on ``(x, y)``; returns the mean disagreement before it."""
        return float(np.asarray(self.clone.train_on_batch(x, y)))

    def train_pending(self):
        """One clone step on each answered batch not trained on yet (in order)."""
        losses = []
        while self.pending:
            x, y = self.pending[0]
            losses.append(self.clone_step(x, y))
            self.pending.pop(0)
        return losses

    def generator_step(self, tag="gradient-estimate"):
        """One generator update from a zeroth-order estimate; returns ``(x, y, mean f)`` of the base points.

        Queries ``batch (1 + m)`` images: the base images and ``m`` perturbed
        copies of each, in the generator's pre-tanh space.
        """
        attack = self.attack
        z = self.latent()
        x_pre = self.generate(z)
        answered = {}

        def objective(points):
            images = to_images(points, self.victim.input_range)
            teacher = self.query(images, tag)
            student = self.predict_clone(images)
            answered["x"], answered["y"] = images[: len(z)], teacher[: len(z)]
            return attack._per_sample_loss(teacher.astype("float64"), student.astype("float64"))

        gradient, base, _ = zeroth_order_gradient(objective, x_pre, attack.num_directions, attack.smoothing, self.rng)
        self.generator.train_on_batch(z, gradient)
        return answered["x"], answered["y"], float(np.mean(base))

    def fresh_batch(self, tag="clone-train"):
        """Generate ``batch`` images, query them, and queue them for training."""
        images = to_images(self.generate(self.latent()), self.victim.input_range)
        answers = self.query(images, tag)
        self.pending.append((images, answers))
        return images, answers

    def add_replay(self, x, y):
        self.replay.add(x, y)
        self._replay_since_save.append((x, y))

    # -- checkpoint ------------------------------------------------------------

    def _weights_paths(self):
        return self.store.path("model", "clone.weights.h5"), self.store.path("model", "generator.weights.h5")

    def save(self, interrupted=False):
        """Write models, optimizers, RNG, replay additions and unfinished batches.

        After an interruption mid-iteration the iteration counts as done (its
        queries were paid), and its answered-but-untrained batches are stored
        so the resumed run trains on them first instead of asking again.
        """
        if self.store is None:
            return
        iteration = self.iteration
        if interrupted and self.paid > self._paid_at_iteration_start:
            iteration += 1
        for x, y in self._replay_since_save:
            self.store.append(x=x, y=y, iteration=np.full((len(x),), iteration, "int64"))
        self._replay_since_save = []
        os.makedirs(self.store.path("model"), exist_ok=True)
        clone_path, generator_path = self._weights_paths()
        # Compiled models save their optimizer's state (momentum, step count) with the weights.
        self.clone.save_weights(clone_path)
        self.generator.save_weights(generator_path)
        pending_path = self.store.path("pending.npz")
        if self.pending:
            np.savez(
                pending_path,
                x=np.concatenate([p[0] for p in self.pending]),
                y=np.concatenate([p[1] for p in self.pending]),
            )
        elif os.path.exists(pending_path):
            os.remove(pending_path)
        self.store.write_state(
            {
                "iteration": int(iteration),
                "paid": int(self.paid),
                "rng": self.rng.bit_generator.state,
                "history": self.attack.history,
                "pending_batches": len(self.pending),
            }
        )

    def restore(self):
        self._paid_at_iteration_start = 0
        if self.store is None:
            return
        state = self.store.read_state()
        if not state:
            return
        clone_path, generator_path = self._weights_paths()
        self.clone.load_weights(clone_path)
        self.generator.load_weights(generator_path)
        self.iteration = int(state["iteration"])
        self.paid = int(state["paid"])
        self.rng.bit_generator.state = state["rng"]
        self.attack.history = {k: list(v) for k, v in state.get("history", {}).items()}
        for chunk in self.store.chunks():
            keep = chunk["iteration"] <= self.iteration
            if keep.any():
                self.replay.add(chunk["x"][keep], chunk["y"][keep])
        pending_path = self.store.path("pending.npz")
        if state.get("pending_batches") and os.path.exists(pending_path):
            with np.load(pending_path) as data:
                batch = self.attack.batch_size
                self.pending = [
                    (data["x"][i : i + batch], data["y"][i : i + batch]) for i in range(0, len(data["x"]), batch)
                ]
            self.train_pending()

    def begin_iteration(self):
        self._paid_at_iteration_start = self.paid


__all__ = ["ReplayBuffer", "ZerothOrderAttack", "ZerothOrderRun", "ascent_surrogate"]
