"""KnockoffNets (Orekondy, Schiele and Fritz, CVPR 2019) and its label-only variant.

The attacker owns unlabeled natural images (the *query set*), asks the victim
about a budget ``B`` of them, and trains a clone on the answers (the
*transfer set*). Pure Keras: training is ``model.compile`` + ``model.fit``, so
the same code runs on the TensorFlow and JAX backends, and under a
``tf.distribute`` strategy.
"""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from keras_dcp.attacks.bandit import (  # noqa: F401  (re-exported: the rewards live with the bandit)
    BANDIT_STEPS,
    GradientBandit,
    RunningStats,
    certainty_reward,
    cluster_query_set,
    diversity_reward,
    loss_reward,
)
from keras_dcp.attacks.base import (
    Attack,
    QueryStore,
    check_distribute_strategy,
    fingerprint,
    make_progbar,
    reference_sgd,
    strategy_scope,
)
from keras_dcp.attacks.blackbox import BlackBox
from keras_dcp.attacks.registry import register_attack
from keras_dcp.augment import AugmentedBatches
from keras_dcp.validation import check_choice, check_int, check_positive

_STRATEGIES = ("random", "adaptive")
_LABELS = ("soft", "hard")
_REWARDS = ("cert", "div", "loss", "all")


def hard_targets(answers):
    """One-hot of each row's argmax: ``t_k = [k = argmax_j y_j]``. ``(n, K) -> (n, K)`` float32."""
    answers = np.asarray(answers)
    return np.eye(answers.shape[1], dtype="float32")[np.argmax(answers, axis=1)]


def soft_targets(answers):
    """The returned distributions as training targets, ``(n, K)`` float32.

    Entries are clipped to ``[0, 1]`` (a defense may round below 0); rows are
    otherwise kept as answered (not renormalised), as in the reference
    ``soft_cross_entropy`` ``-sum_k y_k log q_k``.
    """
    return np.clip(np.asarray(answers, dtype="float32"), 0.0, 1.0)




@register_attack("knockoff")
class KnockoffNets(Attack):
    """KnockoffNets: query natural images, train a clone on the answers.

    Transfer set ``D = {(x_i, y_i = F_V(x_i))}_{i < B}`` from the query set,
    then the clone ``F_A`` minimises

    .. math::

        \\mathcal{L} = -\\frac{1}{|D|} \\sum_i \\sum_k t_{ik} \\log F_A(x_i)_k,
        \\qquad t_i = y_i \\;(\\text{soft}) \\text{ or } \\mathrm{onehot}(\\arg\\max y_i) \\;(\\text{hard})

    with SGD (lr 0.1, momentum 0.9, nesterov, coupled weight decay 5e-4,
    cosine schedule over all steps, batch 64), the reference defaults.

    Sampling strategies:

    * ``"random"``: ``B`` images uniformly without replacement.
    * ``"adaptive"``: the paper's gradient bandit over *arms* (the query set's
      coarse labels given as ``query_labels``, else k-means clusters). Policy
      ``pi_t = softmax(H_t)``; draw an arm ``a ~ pi_t``, an unused image of it,
      query, reward ``r_t``; then with ``rbar_t`` the mean reward so far,

      .. math::

          H_{t+1}(a) = H_t(a) + \\alpha (r_t - \\bar r_t)(1 - \\pi_t(a)), \\quad
          H_{t+1}(a') = H_t(a') - \\alpha (r_t - \\bar r_t)\\pi_t(a') \\;(a' \\ne a).

      Rewards: ``"cert"`` top-1 minus top-2 probability; ``"div"``
      ``sum_k max(0, y_k - mean_recent_k)``; ``"loss"`` the clone's
      cross-entropy on the answer (the clone trains online, one SGD step per
      round of ``adaptive_batch_size`` queries); ``"all"`` the sum of the three,
      each standardised by its running mean and std.

    Example:

    >>> clone = KnockoffNets(make_clone, epochs=30).extract(victim, query_images, budget=10_000)  # doctest: +SKIP

    Args:
        make_clone: ``() -> keras.Model`` (uncompiled, softmax outputs).
        strategy: ``"random"`` or ``"adaptive"`` (query sampling).
        labels: ``"soft"`` (cross-entropy with the returned distribution) or
            ``"hard"`` (with its argmax), chosen explicitly.
        epochs: passes over the transfer set.
        batch_size: clone training batch (64).
        learning_rate: initial SGD rate (0.1).
        seed: seeds sampling, initialisation and shuffling.
        verbose: 0 silent, 1 progress bars (querying and ``fit``).
        momentum, nesterov, weight_decay: SGD settings (0.9, True, 5e-4).
        lr_schedule: ``"cosine"`` (default) or ``"constant"``.
        reward: adaptive reward, ``"cert"``, ``"div"``, ``"loss"`` or ``"all"``.
        num_arms: clusters when no ``query_labels`` (default ``min(50, n // 100)``, >= 2).
        bandit_step: the bandit's step rule: ``"constant"`` (``alpha`` =
            ``bandit_learning_rate``, the default) or ``"inverse_count"``
            (``1 / N(arm)``, IBM ART's); see
            :class:`~keras_dcp.attacks.bandit.GradientBandit`.
        bandit_learning_rate: ``alpha`` of the constant step.
        adaptive_batch_size: queries per bandit round (8 in the reference).
        diversity_window: answers averaged by the ``"div"`` reward.
        query_batch_size: images per victim call for ``"random"`` (and per
            checkpoint chunk).
        augment: train with pad-4 (zero) random crops and horizontal flips
            (the reference transform; off by default, as in IBM ART).
        distribute_strategy: a ``tf.distribute.Strategy``; the clone is built
            and compiled in its scope (TensorFlow backend).
        checkpoint_dir: directory for paid-for queries and training state; a
            rerun with the same directory resumes: answered queries are reused,
            not asked again, and training continues from the last epoch.
        jit_compile: passed to ``compile`` (``"auto"``: XLA on accelerators).
        steps_per_execution: training steps per compiled call (``compile``
            argument); 8-32 cuts per-step dispatch overhead on a GPU.

    Attributes (after :meth:`extract`):
        history: ``fit`` history (``loss``, ``agreement`` per epoch...).
        queries_used: victim answers in the transfer set (reused ones included).
        query_indices: ``(B,)`` positions of the queried images in the query set.
        answers: ``(B, K)`` the victim's answers, in query order.
        arm_probabilities, arm_counts, rewards: adaptive bandit diagnostics.
    """

    needs_query_images = True
    clone_training_arguments = ("epochs", "batch_size", "learning_rate")

    def __init__(
        self,
        make_clone,
        strategy="random",
        labels="soft",
        epochs=10,
        batch_size=64,
        learning_rate=0.1,
        seed=0,
        verbose=1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        lr_schedule="cosine",
        reward="all",
        num_arms=None,
        bandit_learning_rate=0.05,
        adaptive_batch_size=8,
        diversity_window=100,
        query_batch_size=1024,
        augment=False,
        distribute_strategy=None,
        checkpoint_dir=None,
        jit_compile="auto",
        steps_per_execution=1,
        bandit_step="constant",
    ):
        super().__init__(make_clone, seed=seed, verbose=verbose)
        if not isinstance(strategy, str):
            hint = " (a tf.distribute strategy goes in `distribute_strategy=`)" if hasattr(strategy, "scope") else ""
            raise ValueError(f"`strategy` must be one of {_STRATEGIES}; got {strategy!r}{hint}.")
        check_choice("strategy", strategy, _STRATEGIES)
        check_choice("labels", labels, _LABELS)
        check_choice("reward", reward, _REWARDS)
        check_choice("bandit_step", bandit_step, BANDIT_STEPS)
        for name, value in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("adaptive_batch_size", adaptive_batch_size),
            ("diversity_window", diversity_window),
            ("query_batch_size", query_batch_size),
            ("steps_per_execution", steps_per_execution),
        ):
            check_int(name, value, minimum=1)
        check_positive("learning_rate", learning_rate)
        check_positive("bandit_learning_rate", bandit_learning_rate)
        check_int("num_arms", num_arms, minimum=2, allow_none=True)
        self.strategy = strategy
        self.labels = labels
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)
        self.lr_schedule = lr_schedule
        self.reward = reward
        self.num_arms = num_arms
        self.bandit_learning_rate = float(bandit_learning_rate)
        self.bandit_step = bandit_step
        self.adaptive_batch_size = int(adaptive_batch_size)
        self.diversity_window = int(diversity_window)
        self.query_batch_size = int(query_batch_size)
        self.augment = bool(augment)
        self.distribute_strategy = check_distribute_strategy(distribute_strategy)
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.jit_compile = jit_compile
        self.steps_per_execution = int(steps_per_execution)
        self.query_indices = None
        self.answers = None
        self.arm_probabilities = None
        self.arm_counts = None
        self.rewards = None

    # -- public ---------------------------------------------------------------

    def extract(
        self,
        victim: BlackBox,
        query_images: np.ndarray,
        budget: int | None = None,
        query_labels: np.ndarray | None = None,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: list | None = None,
    ) -> keras.Model:
        """Query ``victim`` on (part of) ``query_images`` and train a clone.

        Args:
            victim: a :class:`~keras_dcp.attacks.BlackBox`.
            query_images: float32 ``(n, H, W, C)`` in the victim's input range.
            budget: queries to spend (``B <= n``); default: all the victim
                allows, at most ``n``.
            query_labels: optional ``(n,)`` int coarse labels of the query set,
                the arms of the adaptive strategy.
            validation_data: optional ``(x_val, y_val)`` with int labels,
                evaluated after each epoch (reported as ``val_accuracy``).
            callbacks: extra Keras callbacks for ``fit``.

        Returns:
            The trained clone, a compiled ``keras.Model``.
        """
        victim = self._check_victim(victim)
        query_images = self._check_images(query_images, victim)
        budget = self._resolve_budget(victim, budget, available=len(query_images))
        if query_labels is not None:
            query_labels = np.asarray(query_labels).reshape(-1)
            if query_labels.shape[0] != len(query_images):
                raise ValueError(
                    f"`query_labels` has {query_labels.shape[0]} entries for {len(query_images)} query images."
                )
        keras.utils.set_random_seed(self.seed)
        store = self._open_store(query_images, budget, query_labels)

        with strategy_scope(self.distribute_strategy):
            clone = self._new_clone(query_images[:1])
        if self.strategy == "random":
            indices, answers = self._sample_random(victim, query_images, budget, store)
        else:
            indices, answers = self._sample_adaptive(victim, query_images, budget, query_labels, clone, store)
        self.query_indices, self.answers = indices, answers
        self.queries_used = int(len(indices))

        self._learn(clone, query_images[indices], answers, validation_data, callbacks, store)
        return clone

    @property
    def trains_in_parallel(self) -> bool:
        """Whether the runner may train this clone together with others (:mod:`keras_dcp.attacks.vectorized`).

        True for random sampling without a checkpoint or a distribution
        strategy: the transfer set then does not depend on the clone, so it can
        be collected first (:meth:`transfer_set`) and the clone trained later.
        """
        return self.strategy == "random" and self.checkpoint_dir is None and self.distribute_strategy is None

    def transfer_set(self, victim: BlackBox, query_images: np.ndarray, budget: int | None = None):
        """The random-strategy transfer set, paid for through ``victim``: ``(indices (B,), answers (B, K))``.

        Exactly the queries :meth:`extract` asks with ``strategy="random"``
        (the first ``B`` images of the permutation seeded by ``seed``, in
        batches of ``query_batch_size``); sets ``query_indices``, ``answers``
        and ``queries_used``. Turn the answers into training targets with
        :meth:`training_targets`.
        """
        if self.strategy != "random":
            raise ValueError("transfer_set() is the random strategy's; the adaptive one needs the clone.")
        victim = self._check_victim(victim)
        query_images = self._check_images(query_images, victim)
        budget = self._resolve_budget(victim, budget, available=len(query_images))
        indices, answers = self._sample_random(victim, query_images, budget, None)
        self.query_indices, self.answers = indices, answers
        self.queries_used = int(len(indices))
        return indices, answers

    def training_targets(self, answers: np.ndarray) -> np.ndarray:
        """The clone's targets for ``answers``: :func:`soft_targets` or :func:`hard_targets` per ``labels``."""
        return soft_targets(answers) if self.labels == "soft" else hard_targets(answers)

    # -- sampling -------------------------------------------------------------

    @staticmethod
    def _check_images(images, victim):
        if not isinstance(images, np.ndarray) or images.ndim != 4:
            raise ValueError(
                f"`query_images` must be a numpy array (n, H, W, C); got {getattr(images, 'shape', type(images))}."
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"`query_images` must be float32 in {victim.input_range}; got dtype {images.dtype}.")
        return images.astype("float32", copy=False)

    def _open_store(self, query_images, budget, query_labels):
        if self.checkpoint_dir is None:
            return None
        store = QueryStore(self.checkpoint_dir)
        store.check_meta(
            {
                "attack": type(self).__name__,
                "strategy": self.strategy,
                "reward": self.reward if self.strategy == "adaptive" else None,
                "bandit_step": self.bandit_step if self.strategy == "adaptive" else None,
                "seed": self.seed,
                "budget": int(budget),
                "query_images": fingerprint(query_images),
                "query_labels": None if query_labels is None else fingerprint(query_labels),
            }
        )
        return store

    def _sample_random(self, victim, query_images, budget, store):
        """``B`` images uniformly without replacement: the first ``B`` of a seeded permutation."""
        order = np.random.default_rng(self.seed).permutation(len(query_images))[:budget]
        done = store.load("indices", "answers") if store is not None else {}
        answered = int(len(done.get("indices", ())))
        if answered and not np.array_equal(done["indices"], order[:answered]):
            raise ValueError(f"Checkpoint {self.checkpoint_dir!r} holds other queries than this run would ask.")
        indices = [done["indices"]] if answered else []
        answers = [done["answers"]] if answered else []
        progbar = make_progbar(budget, self.verbose)
        if progbar is not None:
            progbar.update(answered)
        for start in range(answered, budget, self.query_batch_size):
            batch = order[start : min(start + self.query_batch_size, budget)]
            y = victim.query(query_images[batch], tag="knockoff-random")
            if store is not None:
                store.append(indices=batch, answers=y)
            indices.append(batch)
            answers.append(y)
            if progbar is not None:
                progbar.update(start + len(batch))
        return np.concatenate(indices).astype("int64"), np.concatenate(answers).astype("float32")

    def _sample_adaptive(self, victim, query_images, budget, query_labels, clone, store):
        """The gradient-bandit transfer set (see the class docstring)."""
        n = len(query_images)
        if query_labels is None:
            num_arms = self.num_arms or int(min(50, max(2, n // 100)))
            arms_of_image = cluster_query_set(query_images, num_arms, seed=self.seed)
        else:
            _, arms_of_image = np.unique(query_labels, return_inverse=True)
        num_arms = int(arms_of_image.max()) + 1
        rng = np.random.default_rng(self.seed)
        # Each arm's images in a seeded random order; an arm pops from its end.
        pools = [list(rng.permutation(np.flatnonzero(arms_of_image == a))) for a in range(num_arms)]
        bandit = GradientBandit(num_arms, step=self.bandit_step, learning_rate=self.bandit_learning_rate)
        term_stats = {name: RunningStats() for name in ("cert", "div", "loss")}
        needs_clone = self.reward in ("loss", "all")
        if needs_clone:
            with strategy_scope(self.distribute_strategy):
                clone.compile(
                    optimizer=reference_sgd(
                        self.learning_rate, momentum=self.momentum, nesterov=self.nesterov,
                        weight_decay=self.weight_decay, schedule="constant",
                    ),
                    loss=keras.losses.CategoricalCrossentropy(),
                    jit_compile=self.jit_compile,
                )

        indices, answers, arms, rewards = [], [], [], []
        if store is not None:
            done = store.load("indices", "answers", "arms", "rewards")
            state = store.read_state()
            if done:
                indices, answers = [done["indices"]], [done["answers"]]
                arms, rewards = [done["arms"]], [done["rewards"]]
                used = set(done["indices"].tolist())
                pools = [[i for i in pool if i not in used] for pool in pools]
            if state:
                bandit.restore(state)
                term_stats = {k: RunningStats(*v) for k, v in state["term_stats"].items()}
                rng.bit_generator.state = state["rng"]
            online_weights = store.path("online.weights.h5")
            if needs_clone and os.path.exists(online_weights):
                clone.load_weights(online_weights)
        answered = int(sum(len(i) for i in indices))
        recent = np.concatenate(answers)[-self.diversity_window :] if answered else np.zeros((0, 1))
        progbar = make_progbar(budget, self.verbose)
        if progbar is not None:
            progbar.update(answered)
        rounds = 0
        while answered < budget:
            size = min(self.adaptive_batch_size, budget - answered)
            batch_idx, batch_arms, batch_pi = [], [], []
            for _ in range(size):
                policy = bandit.policy([len(pool) > 0 for pool in pools])
                arm = int(rng.choice(num_arms, p=policy))
                batch_idx.append(int(pools[arm].pop()))
                batch_arms.append(arm)
                batch_pi.append(policy)
            batch_idx = np.asarray(batch_idx, dtype="int64")
            x = query_images[batch_idx]
            y = victim.query(x, tag="knockoff-adaptive")
            clone_probs = keras.ops.convert_to_numpy(clone.predict_on_batch(x)) if needs_clone else None
            batch_rewards = self._rewards(y, clone_probs, recent, term_stats)
            for arm, policy, r in zip(batch_arms, batch_pi, batch_rewards):
                bandit.update(arm, r, policy)
            recent = np.concatenate([recent.reshape(-1, y.shape[1]), y])[-self.diversity_window :]
            if needs_clone:
                targets = soft_targets(y) if self.labels == "soft" else hard_targets(y)
                clone.train_on_batch(x, targets)
            indices.append(batch_idx)
            answers.append(y)
            arms.append(np.asarray(batch_arms, dtype="int64"))
            rewards.append(np.asarray(batch_rewards, dtype="float32"))
            answered += size
            rounds += 1
            if store is not None:
                store.append(indices=batch_idx, answers=y, arms=arms[-1], rewards=rewards[-1])
                store.write_state(
                    {
                        **bandit.state(),
                        "term_stats": {k: v.to_list() for k, v in term_stats.items()},
                        "rng": rng.bit_generator.state,
                    }
                )
                if needs_clone and (rounds % 50 == 0 or answered >= budget):
                    clone.save_weights(store.path("online.weights.h5"))
            if progbar is not None:
                progbar.update(answered)
        arms_all = np.concatenate(arms) if arms else np.zeros((0,), "int64")
        self.arm_probabilities = bandit.policy()
        self.arm_counts = np.bincount(arms_all, minlength=num_arms)
        self.rewards = np.concatenate(rewards) if rewards else np.zeros((0,), "float32")
        return np.concatenate(indices).astype("int64"), np.concatenate(answers).astype("float32")

    def _rewards(self, answers, clone_probs, recent, term_stats):
        """Per-sample reward of a round, ``(n, K) -> list of n floats``."""
        cert = certainty_reward(answers)
        window = recent.reshape(-1, answers.shape[1])
        div = []
        for row in answers:
            div.append(diversity_reward(row, window))
            window = np.concatenate([window, row[None]])[-self.diversity_window :]
        div = np.asarray(div)
        if self.reward == "cert":
            return cert.tolist()
        if self.reward == "div":
            return div.tolist()
        loss = loss_reward(answers, clone_probs)
        if self.reward == "loss":
            return loss.tolist()
        out = []
        for c, d, l in zip(cert, div, loss):
            for name, value in (("cert", c), ("div", d), ("loss", l)):
                term_stats[name].update(float(value))
            out.append(sum(term_stats[k].standardize(float(v)) for k, v in (("cert", c), ("div", d), ("loss", l))))
        return out

    # -- training -------------------------------------------------------------

    def _learn(self, clone, x, answers, validation_data, callbacks, store):
        """Train ``clone`` on the transfer set ``(x, answers)``: the hook adaptive variants override.

        KnockoffNets trains on the answers themselves (``labels="soft"``) or
        on their argmax (``"hard"``).
        """
        self._train(clone, x, self.training_targets(answers), validation_data, callbacks, store)

    def _train(self, clone, x, targets, validation_data, callbacks, store, loss=None, metrics=None):
        steps_per_epoch = math.ceil(len(x) / self.batch_size)
        with strategy_scope(self.distribute_strategy):
            clone.compile(
                optimizer=reference_sgd(
                    self.learning_rate,
                    total_steps=self.epochs * steps_per_epoch,
                    momentum=self.momentum,
                    nesterov=self.nesterov,
                    weight_decay=self.weight_decay,
                    schedule=self.lr_schedule,
                ),
                loss=loss or keras.losses.CategoricalCrossentropy(),
                metrics=metrics if metrics is not None else [keras.metrics.CategoricalAccuracy(name="agreement")],
                jit_compile=self.jit_compile,
                steps_per_execution=self.steps_per_execution,
            )
        final_weights = store.path("clone.weights.h5") if store is not None else None
        if final_weights is not None and os.path.exists(final_weights):
            clone.optimizer.build(clone.trainable_variables)
            clone.load_weights(final_weights)
            self.history = store.read_state().get("history", {})
            return
        callbacks = list(callbacks or [])
        if store is not None:
            # First, so an epoch is saved before any user callback can stop the run.
            callbacks.insert(0, keras.callbacks.BackupAndRestore(store.path("train"), delete_checkpoint=False))
        if validation_data is not None:
            x_val, y_val = validation_data
            y_val = np.asarray(y_val)
            if y_val.ndim == 1:
                y_val = np.eye(targets.shape[1], dtype="float32")[y_val]
            validation_data = (np.asarray(x_val, "float32"), y_val)
        if self.augment:
            data = AugmentedBatches(x, targets, self.batch_size, self.seed)
            fit_args = dict(x=data)
        else:
            fit_args = dict(x=x, y=targets, batch_size=self.batch_size, shuffle=True)
        history = clone.fit(
            **fit_args,
            epochs=self.epochs,
            verbose=self.verbose,
            validation_data=validation_data,
            callbacks=callbacks,
        )
        self.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        if store is not None:
            clone.save_weights(final_weights)
            state = store.read_state()
            state["history"] = self.history
            store.write_state(state)


@register_attack("knockoff-label")
class KnockoffNetsLabelOnly(KnockoffNets):
    """The label-only attacker: KnockoffNets trained on argmax labels only.

    .. math::

        \\mathcal{L} = -\\frac{1}{B}\\sum_i \\log F_A(x_i)_{\\arg\\max_k y_{ik}}

    It never looks at the returned probabilities, only at the top-1 class, so
    it works against a ``BlackBox(output="label")`` and is blind to any
    defense that keeps the top-1 label (DCP with ``preserve_top1``, rounding,
    top-k): the natural bypass that every evaluation must include.

    Args:
        make_clone: ``() -> keras.Model`` (uncompiled, softmax outputs).
        **kwargs: :class:`KnockoffNets` arguments except ``labels``.
    """

    label_only = True

    def __init__(self, make_clone, **kwargs):
        if "labels" in kwargs and kwargs["labels"] != "hard":
            raise ValueError("KnockoffNetsLabelOnly always trains on hard labels; drop `labels`.")
        kwargs["labels"] = "hard"
        super().__init__(make_clone, **kwargs)
