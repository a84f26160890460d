"""Checkpoint and resume: an interrupted attack never pays for the same answer twice."""

import json
import os

import keras
import numpy as np
import pytest

from keras_dcp import attacks
from keras_dcp.attacks import _testing
from keras_dcp.attacks.generator import make_generator


class Interrupt(Exception):
    """Stands in for Ctrl-C / a preemption inside a long run."""


@pytest.fixture(scope="module")
def data():
    return _testing.digits(16)


@pytest.fixture(scope="module")
def victim_model():
    return _testing.digits_victim(16)


def interrupting_victim(model, fail_on_call, budget=None):
    """A BlackBox over ``model`` whose ``fail_on_call``-th call raises (before answering)."""
    calls = [0]

    def answer(x):
        calls[0] += 1
        if calls[0] == fail_on_call:
            raise Interrupt(f"call {calls[0]}")
        return model.predict(x, verbose=0)

    return attacks.BlackBox(answer, budget=budget, input_shape=(16, 16, 3), num_classes=10)


def make_clone():
    return _testing.make_mlp((16, 16, 3), 10, hidden=16)


def test_knockoff_resume_reuses_answered_queries(tmp_path, data, victim_model):
    query_images = data["query"][0]
    kwargs = dict(epochs=3, verbose=0, query_batch_size=50, checkpoint_dir=tmp_path / "ckpt")
    first_victim = interrupting_victim(victim_model, fail_on_call=3)
    with pytest.raises(Interrupt):
        attacks.KnockoffNets(make_clone, **kwargs).extract(first_victim, query_images, budget=300)
    assert first_victim.queries_used == 100

    second_victim = attacks.BlackBox(victim_model)
    attack = attacks.KnockoffNets(make_clone, **kwargs)
    attack.extract(second_victim, query_images, budget=300)
    assert second_victim.queries_used == 200  # only what the first run had not been answered
    assert attack.queries_used == 300

    reference = attacks.KnockoffNets(make_clone, epochs=1, verbose=0, query_batch_size=50)
    reference.extract(attacks.BlackBox(victim_model), query_images, budget=300)
    np.testing.assert_array_equal(attack.query_indices, reference.query_indices)
    np.testing.assert_allclose(attack.answers, reference.answers, atol=1e-6)

    # a finished run resumes to the same clone without a single query
    third_victim = attacks.BlackBox(victim_model)
    again = attacks.KnockoffNets(make_clone, **kwargs)
    clone = again.extract(third_victim, query_images, budget=300)
    assert third_victim.queries_used == 0
    assert again.history == attack.history
    assert clone.predict(query_images[:3], verbose=0).shape == (3, 10)


def test_knockoff_training_resumes_from_the_last_epoch(tmp_path, data, victim_model):
    class StopAfterEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Interrupt("training interrupted")

    kwargs = dict(epochs=4, verbose=0, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(Interrupt):
        attacks.KnockoffNets(make_clone, **kwargs).extract(
            attacks.BlackBox(victim_model), data["query"][0], budget=200, callbacks=[StopAfterEpoch()]
        )
    victim = attacks.BlackBox(victim_model)
    attack = attacks.KnockoffNets(make_clone, **kwargs)
    attack.extract(victim, data["query"][0], budget=200)
    assert victim.queries_used == 0
    assert len(attack.history["loss"]) == 2  # epochs 3 and 4 only: 1 and 2 were restored


def test_adaptive_resume_keeps_the_bandit_state(tmp_path, data, victim_model):
    kwargs = dict(
        strategy="adaptive", reward="cert", epochs=1, verbose=0, adaptive_batch_size=10, checkpoint_dir=tmp_path
    )
    first_victim = interrupting_victim(victim_model, fail_on_call=7)
    with pytest.raises(Interrupt):
        attacks.KnockoffNets(make_clone, **kwargs).extract(
            first_victim, data["query"][0], budget=150, query_labels=data["query"][1]
        )
    assert first_victim.queries_used == 60
    state = json.loads((tmp_path / "state.json").read_text())
    assert len(state["preferences"]) == 10

    victim = attacks.BlackBox(victim_model)
    attack = attacks.KnockoffNets(make_clone, **kwargs)
    attack.extract(victim, data["query"][0], budget=150, query_labels=data["query"][1])
    assert victim.queries_used == 90
    assert attack.queries_used == 150 == attack.arm_counts.sum()
    assert len(np.unique(attack.query_indices)) == 150


def test_resume_refuses_another_run(tmp_path, data, victim_model):
    attacks.KnockoffNets(make_clone, epochs=1, verbose=0, checkpoint_dir=tmp_path).extract(
        attacks.BlackBox(victim_model), data["query"][0], budget=50
    )
    with pytest.raises(ValueError, match="another run"):
        attacks.KnockoffNets(make_clone, epochs=1, verbose=0, checkpoint_dir=tmp_path).extract(
            attacks.BlackBox(victim_model), data["query"][0], budget=60
        )


# Calls per iteration: MAZE 1 estimate + 2 fresh clone batches, DFME 1 + 3. Failing call 5 (MAZE) or
# 6 (DFME) cuts iteration 2 after its gradient estimate was paid for.
@pytest.mark.parametrize("attack_cls, fail_on_call", [(attacks.MAZE, 5), (attacks.DFME, 6)])
def test_zeroth_order_resume_is_exact(tmp_path, victim_model, attack_cls, fail_on_call):
    """Interrupted inside iteration 2, then resumed: the two runs together pay for each answer once."""

    def make_attack():
        return attack_cls(
            make_clone,
            make_generator=lambda: make_generator(8, (16, 16, 3), width=4),
            batch_size=4,
            latent_dim=8,
            num_directions=2,
            clone_iters=3,
            verbose=0,
            checkpoint_dir=tmp_path,
            checkpoint_every=100,
        )

    cost = make_attack().cost_per_iteration()
    budget = 6 * cost
    first_victim = interrupting_victim(victim_model, fail_on_call=fail_on_call)
    with pytest.raises(Interrupt):
        make_attack().extract(first_victim, budget=budget)
    paid_before = first_victim.queries_used
    assert cost < paid_before < 2 * cost  # iteration 2 was cut short
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["iteration"] == 2 and state["paid"] == paid_before
    assert state["pending_batches"] == 0  # the failed call answered nothing

    victim = attacks.BlackBox(victim_model)
    attack = make_attack()
    attack.extract(victim, budget=budget)
    assert attack.iterations == 6
    # the cut iteration counts as done; each later one costs exactly `cost`
    assert victim.queries_used == 4 * cost
    assert attack.queries_used == paid_before + victim.queries_used
    assert os.path.exists(tmp_path / "state.json")
    if attack_cls is attacks.MAZE:
        # the replay buffer came back: every iteration contributed one batch
        assert attack.history["replay_loss"]

    # finished: resuming again asks nothing
    idle = attacks.BlackBox(victim_model)
    make_attack().extract(idle, budget=budget)
    assert idle.queries_used == 0


def test_interrupt_during_training_keeps_the_untrained_answers(tmp_path, victim_model, monkeypatch):
    """Ctrl-C lands mid clone step: the answered batch is saved and trained on after resuming."""
    from keras_dcp.attacks import zeroth_order

    def make_attack():
        return attacks.MAZE(
            make_clone,
            make_generator=lambda: make_generator(8, (16, 16, 3), width=4),
            batch_size=4,
            latent_dim=8,
            num_directions=2,
            clone_iters=3,
            verbose=0,
            checkpoint_dir=tmp_path,
        )

    original_step = zeroth_order.ZerothOrderRun.clone_step
    calls = [0]

    def interrupted_step(self, x, y):
        calls[0] += 1
        if calls[0] == 2:  # iteration 1: step 0 (base images) ran, step 1 (a fresh batch) is cut
            raise Interrupt("Ctrl-C")
        return original_step(self, x, y)

    cost = make_attack().cost_per_iteration()
    first_victim = attacks.BlackBox(victim_model, record_arrays=True)
    monkeypatch.setattr(zeroth_order.ZerothOrderRun, "clone_step", interrupted_step)
    with pytest.raises(Interrupt):
        make_attack().extract(first_victim, budget=4 * cost)
    monkeypatch.setattr(zeroth_order.ZerothOrderRun, "clone_step", original_step)
    assert first_victim.queries_used == 4 * (1 + 2) + 4  # one estimate and one fresh batch
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["iteration"] == 1 and state["pending_batches"] == 1
    saved = np.load(tmp_path / "pending.npz")
    np.testing.assert_array_equal(saved["x"], first_victim.log.inputs()[-4:])  # the last answered batch
    np.testing.assert_array_equal(saved["y"], first_victim.log.outputs()[-4:])

    steps = []
    monkeypatch.setattr(
        zeroth_order.ZerothOrderRun, "clone_step", lambda self, x, y: steps.append(len(x)) or original_step(self, x, y)
    )
    victim = attacks.BlackBox(victim_model)
    attack = make_attack()
    attack.extract(victim, budget=4 * cost)
    assert victim.queries_used == 3 * cost
    assert attack.queries_used == first_victim.queries_used + 3 * cost
    assert not (tmp_path / "pending.npz").exists()
    # the saved batch was trained on first, then 3 iterations of 3 clone steps (+ replay)
    assert len(steps) >= 1 + 3 * 3
