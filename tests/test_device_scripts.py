"""Device scripts: tflite/android and tflite/coral against stand-ins for adb, benchmark_model and
edgetpu_compiler; benchmarks/device (the GPU CIFAR-10 run) with its data packing and a dry run on JAX."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tflite", "android"))
sys.path.insert(0, os.path.join(ROOT, "tflite", "coral"))

import benchmark_android  # noqa: E402
import benchmark_coral  # noqa: E402

FAKE_ADB = r'''#!{python}
"""Stand-in for adb: records argv, answers like a Pixel running benchmark_model."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:2] == ["-s", "SERIAL1"]:
    args = args[2:]
if args[:1] == ["shell"] and "getprop" in args:
    print("Pixel 7")
elif args[:1] == ["shell"] and os.path.basename(args[1]).startswith("benchmark"):
    graph = [a for a in args if a.startswith("--graph=")][0]
    if "--use_gpu=true" in args:
        print("ERROR: GPU delegate failed to initialize", file=sys.stderr); sys.exit(1)
    avg = 1010.0 if "protected" in graph else 1000.0
    if "--num_threads=4" in args:
        avg /= 3
    if args[1].endswith("benchmark_litert_model"):  # LiteRT's tool, answering in ms
        print("Model initialization:  3.10 ms\nInference (avg):       %.3f ms (100 runs)" % (avg / 1000))
        print("Inference (median):    %.3f ms" % (avg / 1000))
        sys.exit(0)
    print("STARTING!\nLog parameter values verbosely: [0]\nGraph: [" + graph[8:] + "]\nLoaded model " + graph[8:])
    print("The input model file size (MB): 0.3\nInitialized session in 12.5ms.")
    print("Running benchmark for at least 10 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.")
    print("count=10 first=2201 curr=1100 min=1012 max=2201 avg=1180.3 std=340")
    print("Running benchmark for at least 100 iterations and at least 1 seconds but terminate if exceeding 150 seconds.")
    print("count=100 first=1102 curr=1000 min=990 max=1201 avg=%.1f std=21" % avg)
    print("Inference timings in us: Init: 12500, First inference: 2201, Warmup (avg): 1180.3, Inference (avg): %.1f" % avg)
    print("Memory footprint delta from the start of the tool (MB): init=3.1 overall=4.2")
'''

FAKE_COMPILER = r'''#!{python}
"""Stand-in for edgetpu_compiler: records argv, writes <stem>_edgetpu.tflite, prints its log."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
out_dir = args[args.index("-o") + 1]
model = args[-1]
stem = os.path.splitext(os.path.basename(model))[0]
open(os.path.join(out_dir, stem + "_edgetpu.tflite"), "wb").write(open(model, "rb").read())
naive = "naive" in model
print("Edge TPU Compiler version 16.0.384591198\nStarted a compilation timeout timer of 180 seconds.\n")
print("Model compiled successfully in 312 ms.\n")
print("Input model: " + model + "\nInput size: 280.52KiB\nOutput model: " + os.path.join(out_dir, stem + "_edgetpu.tflite"))
print("Output size: 424.37KiB\nOn-chip memory used for caching model parameters: 345.00KiB")
print("Number of Edge TPU subgraphs: 1\nTotal number of operations: %d" % (60 if naive else 122))
print("Operation log: " + os.path.join(out_dir, stem + "_edgetpu.log") + "\n")
print("Model successfully compiled but not all operations are supported by the Edge TPU." if naive else "")
print("Number of operations that will run on Edge TPU: %d" % (40 if naive else 122))
print("Number of operations that will run on CPU: %d\n" % (20 if naive else 0))
print("Operator                       Count      Status\n")
print("CONV_2D                        21         Mapped to Edge TPU")
print("ADD                            34         Mapped to Edge TPU")
print("SOFTMAX                        1          Mapped to Edge TPU")
if naive:
    print("LOG                            1          Operation not supported")
    print("DIV                            2          Operation not supported")
    print("MUL                            5          More than one subgraph is not supported")
'''


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in (("adb", FAKE_ADB), ("edgetpu_compiler", FAKE_COMPILER)):
        path = bin_dir / name
        path.write_text(source.replace("{python}", sys.executable))
        path.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_LOG=str(log))
    for name in ("bare.tflite", "protected.tflite", "naive.tflite"):
        (tmp_path / name).write_bytes(b"\x1c\x00\x00\x00TFL3fake")
    return tmp_path, env, log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_parse_benchmark_model_outputs():
    assert benchmark_android.parse_average_us("Inference timings in us: Init: 1, First inference: 2, "
                                              "Warmup (avg): 3.5, Inference (avg): 812.25") == 812.25
    old = "count=50 first=900 curr=800 min=790 max=990 avg=801.5 std=12\n"
    assert benchmark_android.parse_average_us(old) == 801.5
    with pytest.raises(ValueError, match="no inference time"):
        benchmark_android.parse_average_us("Failed to apply GPU delegate.")


def test_android_script_pushes_runs_every_setting_and_writes_json(fakes):
    tmp, env, log = fakes
    out = tmp / "android.json"
    tool = tmp / "benchmark_model"
    tool.write_bytes(b"ELF")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tflite", "android", "benchmark_android.py"),
         "--bare", str(tmp / "bare.tflite"), "--protected", str(tmp / "protected.tflite"),
         "--benchmark-binary", str(tool), "--serial", "SERIAL1", "--repeats", "2", "--num-runs", "100",
         "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "Pixel 7"
    xnn = report["settings"]["xnnpack_1thread"]
    assert xnn["bare_us"] == 1000.0 and xnn["protected_us"] == 1010.0 and xnn["ratio"] == pytest.approx(1.01)
    assert report["settings"]["cpu_4threads"]["bare_us"] == pytest.approx(1000 / 3, abs=0.1)
    assert "ratio" not in report["settings"]["gpu"] and "errors" in report["settings"]["gpu"]
    assert report["settings"]["nnapi"]["ratio"] == pytest.approx(1.01)
    recorded = calls(log)
    assert all(c[:2] == ["-s", "SERIAL1"] for c in recorded)
    pushes = [c[2:] for c in recorded if c[2] == "push"]
    assert ["push", str(tmp / "bare.tflite"), "/data/local/tmp/keras_dcp/bare.tflite"] in pushes
    assert ["push", str(tool), "/data/local/tmp/keras_dcp/benchmark_model"] in pushes
    runs = [c[3:] for c in recorded if c[2] == "shell" and c[3].endswith("benchmark_model")]
    assert len(runs) == 6 * 2 * 2  # settings x repeats x (bare, protected)
    assert runs[0][1:] == ["--graph=/data/local/tmp/keras_dcp/bare.tflite", "--num_runs=100", "--warmup_runs=10",
                           "--num_threads=1", "--use_xnnpack=false"]
    assert runs[1][1].endswith("protected.tflite")  # interleaved
    assert any("--use_nnapi=true" in r for r in runs) and any("--use_gpu=true" in r for r in runs)


def test_android_script_drives_benchmark_litert_model(fakes):
    tmp, env, log = fakes
    out = tmp / "litert.json"
    tool = tmp / "benchmark_model"
    tool.write_bytes(b"ELF")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tflite", "android", "benchmark_android.py"), "--tool", "litert",
         "--bare", str(tmp / "bare.tflite"), "--protected", str(tmp / "protected.tflite"),
         "--benchmark-binary", str(tool), "--repeats", "2", "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["tool"] == "litert" and set(report["settings"]) == set(benchmark_android.LITERT_SETTINGS)
    cpu = report["settings"]["cpu_1thread"]
    assert cpu["bare_us"] == pytest.approx(1000.0) and cpu["ratio"] == pytest.approx(1.01)
    assert "errors" in report["settings"]["gpu"]
    recorded = calls(log)
    assert ["push", str(tool), "/data/local/tmp/keras_dcp/benchmark_litert_model"] in [c[0:] for c in recorded]
    runs = [c[1:] for c in recorded if c[0] == "shell" and c[1].endswith("benchmark_litert_model")]
    assert len(runs) == 4 * 2 * 2
    assert runs[0][1:] == ["--graph=/data/local/tmp/keras_dcp/bare.tflite", "--num_runs=100", "--warmup_runs=10",
                           "--num_threads=1"]
    assert any("--use_npu=true" in r for r in runs)


def test_parse_litert_python_mirror_output_in_ms():
    assert benchmark_android.parse_average_us("Inference (avg):       0.40 ms (50 runs)") == pytest.approx(400.0)


def test_android_unknown_setting_is_an_error(fakes):
    tmp, env, _ = fakes
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tflite", "android", "benchmark_android.py"),
         "--bare", str(tmp / "bare.tflite"), "--protected", str(tmp / "protected.tflite"), "--settings", "tpu"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "unknown settings" in result.stderr


def test_compiler_log_parsing():
    log = textwrap.dedent("""\
        Number of operations that will run on Edge TPU: 40
        Number of operations that will run on CPU: 3

        Operator                       Count      Status

        CONV_2D                        21         Mapped to Edge TPU
        LOG                            1          Operation not supported
        MUL                            2          More than one subgraph is not supported
        MUL                            5          Mapped to Edge TPU
        """)
    parsed = benchmark_coral.parse_compiler_log(log)
    assert parsed["edgetpu_ops"] == 40 and parsed["cpu_ops"] == 3 and not parsed["all_mapped"]
    assert parsed["ops"]["MUL"] == {"edgetpu": 5, "cpu": 2, "reasons": ["More than one subgraph is not supported"]}
    assert parsed["ops"]["LOG"]["reasons"] == ["Operation not supported"]


@pytest.mark.parametrize("protected, expected_status", [("protected.tflite", 0), ("naive.tflite", 1)])
def test_coral_script_compiles_and_reports_mapping(fakes, protected, expected_status):
    tmp, env, log = fakes
    out = tmp / "coral.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tflite", "coral", "benchmark_coral.py"),
         "--bare", str(tmp / "bare.tflite"), "--protected", str(tmp / protected), "--out-dir", str(tmp / "tpu"),
         "--skip-timing", "--require-all-mapped", "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == expected_status, result.stderr
    report = json.loads(out.read_text())
    assert calls(log)[0] == ["-s", "-o", str(tmp / "tpu"), str(tmp / "bare.tflite")]
    assert report["models"]["bare"]["compiled"] == str(tmp / "tpu" / "bare_edgetpu.tflite")
    assert report["models"]["protected"]["all_mapped"] is (expected_status == 0)
    if expected_status:
        assert report["models"]["protected"]["ops"]["DIV"]["cpu"] == 2


# --- benchmarks/device: the paper-scale CIFAR-10 run on a lent GPU ---------------------------------

DEVICE = os.path.join(ROOT, "benchmarks", "device")
sys.path.insert(0, DEVICE)

import pack_data  # noqa: E402


def _npz(path, rows, seed, shape=(32, 32, 3)):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 256, size=(rows, *shape), dtype=np.uint8), rng.integers(0, 10, size=rows)
    np.savez_compressed(path, x=x, y=y)
    return x, y


def test_pack_splits_into_bundles_under_the_limit_and_join_puts_them_back(tmp_path):
    sources = {name: str(tmp_path / f"{name}.npz") for name in ("train", "extra", "test")}
    arrays = {name: _npz(path, rows, seed) for (name, path), rows, seed in zip(sources.items(), (90, 130, 40), (1, 2, 3))}
    manifests = pack_data.pack(sources, str(tmp_path / "devdata"), limit_mb=0.25, first_limit_mb=0.15)
    assert len(manifests) >= 4
    for manifest in manifests:
        limit = (0.15 if manifest["bundle"] == 1 else 0.25) * pack_data.MB
        assert 0 < manifest["bytes"] <= limit
    bundles = sorted(str(p) for p in (tmp_path / "devdata").iterdir())
    status = {}
    for count in range(1, len(bundles) + 1):  # one call after another
        status = pack_data.join(bundles[:count], str(tmp_path / "pieces"), str(tmp_path / "data"))
        if count == 1:
            assert all(s != "joined" or name == "train" for name, s in status.items())
    assert set(status.values()) <= {"joined", "ready"} and set(status) == set(sources)
    for name, (x, y) in arrays.items():
        with np.load(tmp_path / "data" / f"{name}.npz") as joined:
            np.testing.assert_array_equal(joined["x"], x)
            np.testing.assert_array_equal(joined["y"], y)
    assert pack_data.join(bundles, str(tmp_path / "pieces"), str(tmp_path / "data")) == {n: "ready" for n in sources}


def test_cifar10_gpu_script_dry_run_on_jax(tmp_path):
    """The four device calls, end to end, at toy size on this CPU: JAX backend, TensorFlow never imported."""
    pytest.importorskip("jax")
    shared = tmp_path / "shared"
    (shared / "cifar10").mkdir(parents=True)
    (shared / "tinyimagenet").mkdir()
    for name, rows, seed in (("cifar10/train", 96, 1), ("cifar10/train_extra", 64, 2), ("cifar10/test", 48, 3),
                             ("tinyimagenet/queries", 80, 4)):
        _npz(shared / f"{name}.npz", rows, seed)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoTensorFlow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
        "            raise ImportError('no tensorflow on this machine')\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
    )
    env = dict(
        os.environ, SHARED=str(shared), DEVDATA=str(tmp_path / "devdata"), W=str(tmp_path / "w"),
        OUT=str(tmp_path / "out"), PYTHON=sys.executable, SKIP_WHEELS="1", PYTHONPATH=str(blocker),
        PACK_LIMIT_MB="0.4", PACK_FIRST_MB="0.3", ARCH="small_cnn", WIDTH="4", VICTIM_EPOCHS="1",
        # Every group has 2 clones at 64 queries, so one program is compiled for the whole grid.
        CLONE_EPOCHS="1", BUDGET="64", BASELINE_BUDGETS="64", SWEEPS="dcp:beta=0.9,gamma=0.2 mad:eps=1.0 nosuch",
        PARALLEL="2", PRECISION="float32", EVAL_BATCH="64", GRID_SECONDS="400", JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    script = os.path.join(DEVICE, "cifar10_gpu.sh")

    def call(phase):
        result = subprocess.run(["bash", script, phase], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=500)
        assert result.returncode == 0, (phase, result.stdout[-2000:], result.stderr[-2000:])
        return result.stdout

    call("pack")
    bundles = sorted(os.listdir(tmp_path / "devdata"), key=int)
    assert len(bundles) >= 3
    call("start")
    for _ in bundles[1:]:  # the script joins whatever has arrived; all of it is there already here
        call("stage")
    call("grid")
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    from keras_dcp.experiments import validate_results

    validate_results(results)
    runs = [(r["spec"], r["attack"], r["budget"]) for r in results["runs"]]
    # none, DCP and MAD (the unknown name is skipped with a note), then the undefended budget sweep
    assert runs == [("none", "knockoff", 64), ("none", "knockoff-label", 64),
                    ("dcp:beta=0.9,gamma=0.2", "knockoff", 64), ("dcp:beta=0.9,gamma=0.2", "knockoff-label", 64),
                    ("mad:eps=1.0", "knockoff", 64), ("mad:eps=1.0", "knockoff-label", 64),
                    ("none", "knockoff", 64), ("none", "knockoff-label", 64)]
    assert "skipping 'nosuch'" in (tmp_path / "w" / "logs" / "grid.log").read_text()
    assert all(r["queries_used"] == 64 for r in results["runs"])
    assert results["victim"]["training"]["train_images"] == 96 + 64
    assert results["config"]["parallel_clones"] == 2 and results["config"]["clone_images_per_second"] > 0
    assert [g["clones"] for g in results["config"]["clone_groups"]] == [2, 2, 2, 2]
    timing = json.loads((out / "timing.json").read_text())
    assert timing["victim_start_to_grid_end_s"] > 0
    assert "best response" in (out / "table.txt").read_text() and (out / "tradeoff.png").exists()
