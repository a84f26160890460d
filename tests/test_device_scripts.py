"""tflite/android and tflite/coral scripts against stand-ins for adb, benchmark_model and edgetpu_compiler."""

import json
import os
import subprocess
import sys
import textwrap

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
