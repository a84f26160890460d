"""``audit_tflite`` and the ``keras-dcp audit`` / ``keras-dcp export`` commands."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_dcp  # noqa: E402
from keras_dcp.cli import main  # noqa: E402
from keras_dcp.tflite import audit_tflite, export_tflite, format_report, protect_for_edgetpu  # noqa: E402
from tests.test_tflite_export import tiny_classifier  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    victim = tiny_classifier()
    images = np.random.default_rng(0).random((32, 8, 8, 3)).astype("float32")
    victim.save(root / "victim.keras")
    np.savez(root / "rep.npz", x=(images * 255).astype("uint8"))
    protected = keras_dcp.protect(victim, keras_dcp.DeceptionLayer())
    export_tflite(protected, root / "float.tflite")
    export_tflite(protect_for_edgetpu(victim), root / "edge.tflite", quantize="int8", representative=images, tail="int8")
    return root


def test_audit_lists_ops_delegation_and_io(files):
    report = audit_tflite(str(files / "float.tflite"))
    assert report["op_counts"]["CONV_2D"] == 1 and "LOG" in report["op_counts"]
    assert report["inputs"][0]["dtype"] == "float32" and report["inputs"][0]["scale"] == []
    assert report["xnnpack_known"] and 0 < report["xnnpack_count"] <= len(report["ops"])
    conv = next(op for op in report["ops"] if op["op"] == "CONV_2D")
    assert conv["xnnpack"] is True and conv["edgetpu"] is False  # float: not for the TPU
    assert not report["edgetpu_all"]
    text = format_report(report)
    assert "CONV_2D" in text and "Edge TPU:" in text and "XNNPACK:" in text


def test_audit_cli_require_edgetpu_exit_status(files, capsys):
    assert main(["audit", str(files / "float.tflite"), "--require", "edgetpu"]) == 1
    assert "unsupported ops" in capsys.readouterr().err
    assert main(["audit", str(files / "edge.tflite"), "--require", "edgetpu", "--require", "int8-io", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["edgetpu_all"] and report["requirements_failed"] == []
    assert report["inputs"][0]["dtype"] == "int8" and len(report["inputs"][0]["scale"]) == 1


def test_export_cli_int8_needs_representative(files, capsys):
    status = main(["export", str(files / "victim.keras"), "-o", str(files / "x.tflite"), "--quantize", "int8",
                   "--defense", "dcp"])
    assert status == 2 and "representative" in capsys.readouterr().err


def test_export_cli_int8_and_edgetpu(files):
    out = files / "cli_int8.tflite"
    assert main(["export", str(files / "victim.keras"), "-o", str(out), "--quantize", "int8",
                 "--representative", str(files / "rep.npz"), "--defense", "dcp:beta=0.6"]) == 0
    report = audit_tflite(str(out))
    assert report["outputs"][0]["dtype"] == "int8" and "LOG" in report["op_counts"]
    edge = files / "cli_edge.tflite"
    assert main(["export", str(files / "victim.keras"), "-o", str(edge), "--edgetpu",
                 "--representative", str(files / "rep.npz")]) == 0
    assert audit_tflite(str(edge))["edgetpu_all"]
