"""Attacks under tf.distribute.MirroredStrategy with two logical CPU devices.

Logical devices must be configured before TensorFlow initialises its runtime, so the check runs
in a fresh interpreter and cannot clash with the other tests.
"""

import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    from keras_dcp import attacks
    from keras_dcp.attacks import _testing
    from keras_dcp.attacks.generator import make_generator

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    data = _testing.digits(16)
    victim_model = _testing.digits_victim(16)
    out = {"replicas": strategy.num_replicas_in_sync}

    victim = attacks.BlackBox(victim_model, budget=500)
    attack = attacks.KnockoffNets(lambda: _testing.make_mlp(), epochs=12, verbose=0, distribute_strategy=strategy)
    clone = attack.extract(victim, data["query"][0], budget=500)
    out["knockoff_mirrored"] = all(
        isinstance(v.value, tf.distribute.DistributedValues) for v in clone.trainable_variables
    )
    out["knockoff"] = attacks.evaluate_clone(clone, victim, *data["test"])

    victim = attacks.BlackBox(victim_model, budget=2000)
    attack = attacks.DFME(
        lambda: _testing.make_small_cnn(width=4),
        make_generator=lambda: make_generator(8, (16, 16, 3), width=4),
        batch_size=8, latent_dim=8, verbose=0, distribute_strategy=strategy,
    )
    clone = attack.extract(victim, budget=1000)
    out["dfme_mirrored"] = all(
        isinstance(v.value, tf.distribute.DistributedValues) for v in clone.trainable_variables
    )
    out["dfme_queries"] = victim.queries_used
    out["dfme_cost"] = attack.cost_per_iteration()
    out["dfme_finite"] = bool(all(np.isfinite(v).all() for v in attack.history.values()))
    print("RESULT " + json.dumps(out))
    """
)


def test_knockoff_and_dfme_under_mirrored_strategy():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")][0]
    out = json.loads(line[len("RESULT ") :])
    assert out["replicas"] == 2
    assert out["knockoff_mirrored"] and out["dfme_mirrored"]
    assert out["knockoff"]["attacker_accuracy"] > 0.8
    assert out["knockoff"]["queries_used"] == 500
    assert out["dfme_queries"] == (1000 // out["dfme_cost"]) * out["dfme_cost"]
    assert out["dfme_finite"]
