"""Data-free model stealing with a generator and zeroth-order gradients: MAZE and DFME.

MAZE (Kariyappa, Prakash and Qureshi, CVPR 2021) and DFME (Truong et al.,
CVPR 2021) train a generator ``G`` to produce images on which the clone ``C``
and the victim ``V`` disagree, and the clone to agree with the victim on them.
The victim is a black box, so the generator's gradient through it is
*estimated* from extra queries (forward differences along random directions).
Every query, the gradient-estimation ones included, goes through the
(defended) :class:`~keras_dcp.attacks.BlackBox` (the reference code sends the
estimation queries to the clean model; that would overstate the attack).

This module uses TensorFlow directly (``tf.function`` steps, ``GradientTape``)
and runs under a ``tf.distribute`` strategy; the rest of
:mod:`keras_dcp.attacks` is backend-agnostic Keras.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from keras_dcp.attacks.base import (
    SGDL2,
    Attack,
    QueryStore,
    check_distribute_strategy,
    strategy_scope,
)

#: Probabilities are clamped to at least this before any log: a defended
#: answer can hold exact zeros (top-k, rounding, DCP's max(., 0)).
PROBABILITY_FLOOR = 1e-8


def make_generator(latent_dim, image_shape, width=64, final_affine=True):
    """The MAZE / DFME generator, ``z (n, latent_dim) -> pre-tanh images (n, H, W, C)``.

    ``Linear(latent, 2w * H/4 * W/4) -> BN -> [up x2 -> conv3x3(2w) -> BN ->
    LeakyReLU(0.2)] -> [up x2 -> conv3x3(w) -> BN -> LeakyReLU(0.2)] ->
    conv3x3(C) -> BN``: MAZE's ``conv3_gen`` (``final_affine=True``) and DFME's
    ``GeneratorA`` (``final_affine=False``). The attacks apply ``tanh`` (and
    the map to the victim's input range) themselves, because the gradient is
    estimated in this pre-tanh space.

    Args:
        latent_dim: size of ``z`` (100 in MAZE, 256 in DFME).
        image_shape: ``(H, W, C)``, with ``H`` and ``W`` divisible by 4.
        width: ``w``, channels of the last hidden block (64).
        final_affine: learn scale and shift in the last batch norm.

    Returns:
        An uncompiled ``keras.Model``.
    """
    height, width_px, channels = (int(d) for d in image_shape)
    if height % 4 or width_px % 4:
        raise ValueError(f"The generator needs H and W divisible by 4; got image shape {tuple(image_shape)}.")
    bn = dict(momentum=0.9, epsilon=1e-5)
    z = keras.Input(shape=(latent_dim,), name="z")
    h = keras.layers.Dense(2 * width * (height // 4) * (width_px // 4))(z)
    h = keras.layers.Reshape((height // 4, width_px // 4, 2 * width))(h)
    h = keras.layers.BatchNormalization(**bn)(h)
    for channels_out in (2 * width, width):
        h = keras.layers.UpSampling2D(2)(h)
        h = keras.layers.Conv2D(channels_out, 3, padding="same")(h)
        h = keras.layers.BatchNormalization(**bn)(h)
        h = keras.layers.LeakyReLU(negative_slope=0.2)(h)
    h = keras.layers.Conv2D(channels, 3, padding="same")(h)
    h = keras.layers.BatchNormalization(center=final_affine, scale=final_affine, **bn)(h)
    return keras.Model(z, h, name="generator")


def unit_directions(rng, batch, num_directions, shape):
    """``u`` of shape ``(batch, m, *shape)``, uniform on the unit sphere of ``R^d`` (``d = prod(shape)``).

    Gaussian samples divided by their norm (the references' method).
    """
    dim = int(np.prod(shape))
    u = rng.standard_normal((batch, num_directions, dim)).astype("float32")
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    return u.reshape(batch, num_directions, *shape)


def zeroth_order_gradient(objective, x, num_directions, smoothing, rng):
    """Forward-difference estimate of each row's gradient ``grad_x f(x_i)``.

    .. math::

        \\hat g_i = \\frac{d}{m} \\sum_{j=1}^{m}
            \\frac{f(x_i + \\mu u_{ij}) - f(x_i)}{\\mu}\\, u_{ij},
        \\qquad u_{ij} \\sim \\mathcal U(S^{d-1})

    with ``d`` the size of one row. ``E[d (u . g) u] = g`` for unit ``u``, so
    ``g_hat`` is unbiased up to ``O(mu)``; its cosine with the true gradient
    is about ``sqrt(m / (m + d))``.

    Args:
        objective: ``points (n (m + 1), *shape) -> (n (m + 1),)`` per-point
            values; called once, with the ``n`` base points first and then each
            row's ``m`` perturbed points (row-major: point ``i`` then its ``m``).
            This is where the (metered) victim is queried.
        x: base points ``(n, *shape)``.
        num_directions: ``m``.
        smoothing: ``mu``.
        rng: a ``numpy.random.Generator``.

    Returns:
        ``(g_hat (n, *shape), f(x) (n,), answers)`` where ``answers`` is what
        ``objective`` returned as its second value (or None).
    """
    x = np.asarray(x, dtype="float32")
    n, shape = x.shape[0], x.shape[1:]
    dim = int(np.prod(shape))
    u = unit_directions(rng, n, num_directions, shape)
    perturbed = (x[:, None] + smoothing * u).reshape(n * num_directions, *shape)
    result = objective(np.concatenate([x, perturbed], axis=0))
    values, extra = result if isinstance(result, tuple) else (result, None)
    values = np.asarray(values, dtype="float64")
    base = values[:n]
    moved = values[n:].reshape(n, num_directions)
    slopes = (moved - base[:, None]) / smoothing
    gradient = (dim / num_directions) * np.einsum("nm,nm...->n...", slopes, u.astype("float64"))
    return gradient.astype("float32"), base, extra


def to_images(x_pre, input_range):
    """``x = low + (high - low) (tanh(x_pre) + 1) / 2``: pre-tanh space to the victim's range."""
    low, high = input_range
    return (low + (high - low) * (np.tanh(x_pre) + 1.0) * 0.5).astype("float32")


def centered_log(p, floor=PROBABILITY_FLOOR, xp=np):
    """Logits recovered from probabilities: ``l = log(max(p, floor)) - mean_k log(max(p, floor))``.

    Softmax forgets a per-row constant, so these are the logits up to that
    constant (exactly, where no entry was clamped). ``(n, K) -> (n, K)``.
    """
    log_p = xp.log(xp.maximum(p, floor))
    return log_p - xp.mean(log_p, axis=-1, keepdims=True)


def kl_per_sample(teacher, student, floor=PROBABILITY_FLOOR, xp=np):
    """``KL(t || s) = sum_k t_k (log t_k - log s_k)`` per row, logs of clamped values. ``(n, K) -> (n,)``."""
    return xp.sum(teacher * (xp.log(xp.maximum(teacher, floor)) - xp.log(xp.maximum(student, floor))), axis=-1)


def l1_logits_per_sample(teacher, student, floor=PROBABILITY_FLOOR, xp=np):
    """``mean_k |l(s)_k - l(t)_k|`` with ``l`` = :func:`centered_log`, per row. ``(n, K) -> (n,)``."""
    diff = centered_log(student, floor, xp) - centered_log(teacher, floor, xp)
    return xp.mean(xp.abs(diff), axis=-1)


class _TFOps:
    """The numpy-like names the loss helpers need, over TensorFlow."""

    log = staticmethod(tf.math.log)
    maximum = staticmethod(tf.maximum)
    abs = staticmethod(tf.abs)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def mean(x, axis=None, keepdims=False):
        return tf.reduce_mean(x, axis=axis, keepdims=keepdims)


class _Runner:
    """Runs a step on one device, or split over a ``tf.distribute`` strategy's replicas.

    Array arguments are split into contiguous per-replica shards; per-sample
    outputs come back concatenated in order, scalar losses summed.
    """

    def __init__(self, strategy):
        self.strategy = strategy

    def __call__(self, fn, *arrays, reduce="concat"):
        if self.strategy is None:
            out = fn(*(tf.convert_to_tensor(a) for a in arrays))
            return out
        replicas = self.strategy.num_replicas_in_sync
        values = [
            self.strategy.experimental_distribute_values_from_function(
                lambda ctx, a=a: tf.convert_to_tensor(np.array_split(a, replicas)[ctx.replica_id_in_sync_group])
            )
            for a in arrays
        ]
        out = self.strategy.run(fn, args=tuple(values))
        if reduce == "sum":
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None)
        return tf.concat(self.strategy.experimental_local_results(out), axis=0)


class _ReplayBuffer:
    """MAZE's experience replay: every stored ``(x, y)`` (the oldest overwritten past ``capacity``)."""

    def __init__(self, capacity=None):
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


class ZerothOrderAttack(Attack):
    """Shared machinery of :class:`MAZE` and :class:`DFME` (see their docstrings).

    One *iteration* is ``gen_iters`` generator steps (each one query of
    ``batch (1 + m)`` images for the gradient estimate) and the clone steps;
    ``extract`` runs ``floor(budget / cost)`` iterations, ``cost`` the exact
    queries of one iteration, so the victim answers exactly
    ``iterations * cost`` images.
    """

    #: subclasses set these
    _loss_name = "kl"

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
        for name, value in (
            ("batch_size", batch_size),
            ("latent_dim", latent_dim),
            ("num_directions", num_directions),
            ("gen_iters", gen_iters),
            ("clone_iters", clone_iters),
            ("checkpoint_every", checkpoint_every),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")
        for name, value in (
            ("smoothing", smoothing),
            ("clone_learning_rate", clone_learning_rate),
            ("generator_learning_rate", generator_learning_rate),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` must be a positive number; got {value!r}.")
        if make_generator is not None and not callable(make_generator):
            raise ValueError(f"`make_generator` must be a callable returning a keras.Model; got {make_generator!r}.")
        self.make_generator = make_generator
        self.batch_size = int(batch_size)
        self.latent_dim = int(latent_dim)
        self.num_directions = int(num_directions)
        self.smoothing = float(smoothing)
        self.gen_iters = int(gen_iters)
        self.clone_iters = int(clone_iters)
        self.clone_learning_rate = float(clone_learning_rate)
        self.generator_learning_rate = float(generator_learning_rate)
        self.distribute_strategy = check_distribute_strategy(distribute_strategy)
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.checkpoint_every = int(checkpoint_every)
        self.generator = None
        self.iterations = 0

    # -- what subclasses define ------------------------------------------------

    def cost_per_iteration(self):
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

    def _iteration(self, ctx):
        raise NotImplementedError

    # -- extract ---------------------------------------------------------------

    def extract(self, victim, query_images=None, budget=None):
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
        strategy = self.distribute_strategy
        with strategy_scope(strategy):
            clone = self._new_clone(np.zeros((1, *victim.input_shape), "float32"))
            if self.make_generator is None:
                generator = self._default_generator(victim.input_shape)
            else:
                generator = self.make_generator()
            clone_optimizer, generator_optimizer = self._make_optimizers(iterations)
            clone_optimizer.build(clone.trainable_variables)
            generator_optimizer.build(generator.trainable_variables)
        self.generator = generator
        ctx = _Context(self, victim, clone, generator, clone_optimizer, generator_optimizer, iterations)
        ctx.restore()
        progbar = None
        if self.verbose:
            progbar = keras.utils.Progbar(iterations, unit_name="iteration", stateful_metrics=["queries"])
        if progbar is not None:
            progbar.update(ctx.iteration)
        while ctx.iteration < iterations:
            try:
                metrics = self._iteration(ctx)
            except BaseException:
                ctx.save(interrupted=True)
                raise
            ctx.iteration += 1
            for name, value in metrics.items():
                self.history.setdefault(name, []).append(float(value))
            if ctx.store is not None and (ctx.iteration % self.checkpoint_every == 0 or ctx.iteration == iterations):
                ctx.save()
            if progbar is not None:
                progbar.update(ctx.iteration, [(k, float(v)) for k, v in metrics.items()] + [("queries", ctx.paid)])
        self.iterations = ctx.iteration
        self.queries_used = ctx.paid
        with strategy_scope(strategy):
            clone.compile(optimizer=clone_optimizer, loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
        return clone


class _Context:
    """Everything one ``extract`` run shares: models, compiled steps, RNG, query accounting, checkpoint."""

    def __init__(self, attack, victim, clone, generator, clone_optimizer, generator_optimizer, iterations):
        self.attack = attack
        self.victim = victim
        self.clone = clone
        self.generator = generator
        self.clone_optimizer = clone_optimizer
        self.generator_optimizer = generator_optimizer
        self.iterations = iterations
        self.iteration = 0
        self.paid = 0
        self.rng = np.random.default_rng(attack.seed)
        self.run = _Runner(attack.distribute_strategy)
        self.replay = _ReplayBuffer(getattr(attack, "replay_size", None))
        self.pending = []  # answered (x, y) batches the clone has not trained on yet
        self._replay_since_save = []
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
        inv_batch = 1.0 / attack.batch_size
        loss = attack._per_sample_loss

        @tf.function
        def predict_clone(x):
            return clone(x, training=False)

        @tf.function
        def generate(z):
            return generator(z, training=True)

        @tf.function
        def clone_step(x, teacher):
            with tf.GradientTape() as tape:
                student = clone(x, training=True)
                value = tf.reduce_sum(loss(teacher, student, _TFOps)) * inv_batch
            grads = tape.gradient(value, clone.trainable_variables)
            clone_optimizer.apply_gradients(zip(grads, clone.trainable_variables))
            return value

        @tf.function
        def generator_step(z, gradient):
            # d(-mean_i f_i)/d theta = -sum_i <g_i, d x_pre_i / d theta> / n, with g_i estimated.
            with tf.GradientTape() as tape:
                x_pre = generator(z, training=True)
                surrogate = -tf.reduce_sum(x_pre * gradient) * inv_batch
            grads = tape.gradient(surrogate, generator.trainable_variables)
            generator_optimizer.apply_gradients(zip(grads, generator.trainable_variables))
            return surrogate

        self._predict_clone = predict_clone
        self._generate = generate
        self._clone_step = clone_step
        self._generator_step = generator_step

    # -- steps -----------------------------------------------------------------

    def latent(self):
        return self.rng.standard_normal((self.attack.batch_size, self.attack.latent_dim)).astype("float32")

    def generate(self, z):
        """Pre-tanh images ``(n, H, W, C)`` for latents ``z``."""
        return self.run(self._generate, z).numpy()

    def predict_clone(self, x):
        return self.run(self._predict_clone, x).numpy()

    def query(self, x, tag):
        y = self.victim.query(x, tag=tag)
        self.paid += len(x)
        return y

    def clone_step(self, x, y):
        return float(self.run(self._clone_step, x, y, reduce="sum"))

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
        self.run(self._generator_step, z, gradient, reduce="sum")
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

    def _tf_checkpoint(self):
        return tf.train.Checkpoint(
            clone=self.clone,
            generator=self.generator,
            clone_optimizer=self.clone_optimizer,
            generator_optimizer=self.generator_optimizer,
        )

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
        prefix = self._tf_checkpoint().write(self.store.path("model", "ckpt"))
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
                "checkpoint": os.path.basename(prefix),
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
        self._tf_checkpoint().read(self.store.path("model", state["checkpoint"])).assert_existing_objects_matched()
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


class MAZE(ZerothOrderAttack):
    """MAZE: data-free model stealing with zeroth-order gradient estimation.

    Per iteration, with batch ``n``, ``m`` directions and smoothing ``mu``:

    1. ``gen_iters`` generator steps: ``x = tanh(G(z))``; the generator
       maximises the disagreement ``f(x) = KL(V(x) || C(x))``, its gradient in
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
        if isinstance(replay_iters, bool) or not isinstance(replay_iters, (int, np.integer)) or replay_iters < 0:
            raise ValueError(f"`replay_iters` must be an int >= 0; got {replay_iters!r}.")
        if replay_size is not None and (not isinstance(replay_size, (int, np.integer)) or replay_size < batch_size):
            raise ValueError(f"`replay_size` must be None or an int >= batch_size; got {replay_size!r}.")
        self.replay_iters = int(replay_iters)
        self.replay_size = replay_size

    def cost_per_iteration(self):
        return self.batch_size * ((self.clone_iters - 1) + (1 + self.num_directions) * self.gen_iters)

    def _steps_per_iteration(self):
        return self.clone_iters + self.replay_iters

    def _per_sample_loss(self, teacher, student, xp=np):
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

    def _iteration(self, ctx):
        ctx.begin_iteration()
        for _ in range(self.gen_iters):
            x, y, generator_loss = ctx.generator_step()
        ctx.pending.append((x, y))  # clone step 0 reuses the last estimate's base images and answers
        for c in range(self.clone_iters):
            if c:
                x, y = ctx.fresh_batch()
            clone_loss = ctx.train_pending()[-1]
        ctx.add_replay(x, y)  # the reference keeps the last clone batch of each iteration
        replay_losses = [
            ctx.clone_step(bx, by) for bx, by in ctx.replay.batches(ctx.rng, self.batch_size, self.replay_iters)
        ]
        metrics = {"clone_loss": clone_loss, "generator_disagreement": generator_loss}
        if replay_losses:
            metrics["replay_loss"] = float(np.mean(replay_losses))
        return metrics


class DFME(ZerothOrderAttack):
    """DFME: data-free model extraction (Truong et al., CVPR 2021).

    Per iteration, with batch ``n`` and ``m`` directions:

    1. ``gen_iters`` generator steps maximising
       ``f(x) = mean_k |l(C(x))_k - l(V(x))_k|``, the l1 distance of logits
       recovered from probabilities, ``l(p) = log p - mean_k log p`` with ``p``
       clamped to at least ``1e-8`` (:func:`centered_log`); gradient estimated
       in pre-tanh space with ``m`` forward differences, ``eps = 1e-3``
       (``n (m + 1)`` queries: the base images are queried too).
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
        return l1_logits_per_sample(teacher, student, xp=xp)

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

    def _iteration(self, ctx):
        ctx.begin_iteration()
        for _ in range(self.gen_iters):
            _, _, generator_loss = ctx.generator_step()
        losses = []
        for _ in range(self.clone_iters):
            ctx.fresh_batch()
            losses.extend(ctx.train_pending())
        return {"clone_loss": losses[-1], "generator_disagreement": generator_loss}
