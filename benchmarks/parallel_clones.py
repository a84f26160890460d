"""Clone-training speed: Keras ``fit`` (one clone at a time) against N clones trained together.

Not a test. Prints one JSON line per setting with the clone-training images per
second (all clones together), the first step's time (compilation, mostly) and
the steady-state rate (the first step left out). The clones train on random
images with random soft targets: speed does not depend on the data.

    # N clones together (JAX backend; --clones 1 is the same program, one clone)
    KERAS_BACKEND=jax python benchmarks/parallel_clones.py vectorized --arch resnet20 --clones 1,2,4,8 --steps 40
    # Keras fit, as KnockoffNets trains (either backend)
    python benchmarks/parallel_clones.py fit --arch resnet20 --steps 40

``--arch`` is a zoo name (``resnet20``, ``small_cnn``...), ``--shape`` the
input (``32,32,3``), ``--width`` the zoo width where it has one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _make_clone(args):
    from keras_dcp.models import get_model

    shape = tuple(int(d) for d in args.shape.split(","))
    extra = {"width": args.width} if args.width else {}

    def make_clone():
        return get_model(args.arch, shape, 10, **extra)

    return make_clone, shape


def _data(shape, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((size, *shape), dtype="float32"), rng.dirichlet(np.ones(10), size=size).astype("float32")


def vectorized(args):
    from keras_dcp.attacks.vectorized import CloneTraining, train_clones

    make_clone, shape = _make_clone(args)
    size = args.steps * args.batch_size
    images, soft = _data(shape, size)
    for clones in [int(c) for c in args.clones.split(",")]:
        rng = np.random.default_rng(clones)
        indices = np.stack([rng.permutation(size) for _ in range(clones)])
        targets = soft[indices]
        trained = train_clones(make_clone, list(range(clones)), images, indices, targets,
                               CloneTraining(epochs=1, batch_size=args.batch_size, augment=args.augment),
                               precision=args.precision, verbose=0)
        steady = clones * (size - args.batch_size) / max(trained.seconds - trained.compile_seconds, 1e-9)
        _report(args, mode="vectorized", clones=clones, seconds=trained.seconds,
                first_step_seconds=trained.compile_seconds, images_per_second=trained.images_per_second,
                steady_images_per_second=steady)


def fit(args):
    import keras

    from keras_dcp.attacks import reference_sgd

    make_clone, shape = _make_clone(args)
    size = args.steps * args.batch_size
    images, soft = _data(shape, size)
    keras.utils.set_random_seed(0)
    clone = make_clone()
    clone.compile(optimizer=reference_sgd(0.1, total_steps=2 * args.steps),
                  loss=keras.losses.CategoricalCrossentropy(), jit_compile="auto")
    started = time.perf_counter()
    clone.fit(images[: args.batch_size], soft[: args.batch_size], batch_size=args.batch_size, epochs=1, verbose=0)
    first = time.perf_counter() - started
    started = time.perf_counter()
    clone.fit(images, soft, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
    seconds = time.perf_counter() - started
    _report(args, mode="fit", clones=1, seconds=first + seconds, first_step_seconds=first,
            images_per_second=(size + args.batch_size) / (first + seconds), steady_images_per_second=size / seconds)


def _report(args, **fields):
    import keras

    fields.update(arch=args.arch, shape=args.shape, width=args.width, batch_size=args.batch_size, steps=args.steps,
                  precision=getattr(args, "precision", "float32"), backend=keras.backend.backend())
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in fields.items()}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("vectorized", "fit"))
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--shape", default="32,32,3")
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="training steps per clone (one epoch)")
    parser.add_argument("--clones", default="1,2,4,8", help="vectorized: the N to try")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args(argv)
    (vectorized if args.mode == "vectorized" else fit)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
