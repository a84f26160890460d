"""The command line's error contract, over bad inputs of every subcommand.

Every bad input exits with 2 and prints one line, ``keras-dcp <command>: error: ...``, that names
what to fix; never a traceback, never exit 1; and nothing that existed is lost.
"""

import json
import os
import zipfile

import numpy as np
import pytest

from keras_dcp.attacks import _testing
from keras_dcp.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid tiny victim and every kind of broken file the table below feeds the commands."""
    root = tmp_path_factory.mktemp("cli_errors")
    victim = root / "victim.keras"
    _testing.make_mlp((8, 8, 1), 3, hidden=8).save(victim)
    content = victim.read_bytes()

    corrupt = bytearray(content)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (root / "corrupt.keras").write_bytes(bytes(corrupt))
    (root / "truncated.keras").write_bytes(content[: len(content) // 3])
    with zipfile.ZipFile(root / "noconfig.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    with zipfile.ZipFile(victim) as source:
        members = {name: source.read(name) for name in source.namelist()}
    with zipfile.ZipFile(root / "badweights.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data[: len(data) // 4] if name.endswith(".h5") else data)
    config = json.loads(members["config.json"])
    config["class_name"] = "NoSuchModelClass"
    with zipfile.ZipFile(root / "unknownclass.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, json.dumps(config) if name == "config.json" else data)

    _testing.make_mlp((8, 8, 1), 5, hidden=8).save(root / "five_classes.keras")
    _testing.make_mlp((4, 4, 1), 3, hidden=8).save(root / "other_input.keras")
    import keras_dcp

    keras_dcp.protect(_testing.make_mlp((8, 8, 1), 3, hidden=8),
                      keras_dcp.MAD(eps=0.5, objective="jacobian")).save(root / "mad_jacobian.keras")

    from keras_dcp.tflite import export_tflite

    tflite = export_tflite(_testing.make_mlp((8, 8, 1), 3, hidden=8))
    (root / "model.tflite").write_bytes(tflite)
    (root / "truncated.tflite").write_bytes(tflite[: len(tflite) // 2])
    garbled = bytearray(tflite)
    garbled[8:64] = os.urandom(56)
    (root / "garbled.tflite").write_bytes(bytes(garbled))

    np.savez(root / "wrong_shape.npz", x=np.zeros((4, 5, 5, 1), "uint8"))
    np.savez(root / "data.npz", x=np.zeros((20, 8, 8, 1), "uint8"), y=np.arange(20) % 10)
    (root / "notnpz.txt").write_text("hello")
    (root / "afile").write_text("a file, not a folder")
    (root / "existing.keras").write_bytes(b"keep me")
    (root / "nonempty").mkdir()
    (root / "nonempty" / "saved_model.pb").write_bytes(b"keep me")
    (root / "adir").mkdir()
    (root / "dir.keras").mkdir()
    return root


def _cases(r):
    v = str(r / "victim.keras")
    protect = ["protect", v, "--from-probabilities"]
    return {
        "protect corrupt": ["protect", str(r / "corrupt.keras"), "-o", str(r / "o1.keras")],
        "protect truncated": ["protect", str(r / "truncated.keras"), "-o", str(r / "o1.keras")],
        "protect no config.json": ["protect", str(r / "noconfig.keras"), "-o", str(r / "o1.keras")],
        "protect truncated weights": ["protect", str(r / "badweights.keras"), "-o", str(r / "o1.keras")],
        "protect unknown class": ["protect", str(r / "unknownclass.keras"), "-o", str(r / "o1.keras")],
        "protect model is a directory": ["protect", str(r / "adir"), "-o", str(r / "o1.keras")],
        "protect -o a directory": protect + ["-o", str(r / "dir.keras")],
        "protect -o under a file": protect + ["-o", str(r / "afile" / "o.keras")],
        "protect -o missing folder": protect + ["-o", str(r / "missing" / "o.keras")],
        "protect -o existing file": protect + ["-o", str(r / "existing.keras")],
        "protect -o non-empty folder": protect + ["-o", str(r / "nonempty")],
        "protect --beta inf": protect + ["-o", str(r / "o2.keras"), "--beta", "inf"],
        "protect --beta nan": protect + ["-o", str(r / "o2.keras"), "--beta", "nan"],
        "protect unknown defense": protect + ["-o", str(r / "o2.keras"), "--defense", "magic"],
        "export corrupt": ["export", str(r / "corrupt.keras"), "-o", str(r / "o.tflite")],
        "export truncated": ["export", str(r / "truncated.keras"), "-o", str(r / "o.tflite")],
        "export -o a directory": ["export", v, "-o", str(r / "adir")],
        "export -o existing": ["export", v, "-o", str(r / "existing.keras")],
        "export --num-calibration -1": ["export", v, "-o", str(r / "o.tflite"), "--num-calibration", "-1"],
        "export representative wrong shape": ["export", v, "-o", str(r / "o.tflite"), "--quantize", "int8",
                                              "--representative", str(r / "wrong_shape.npz")],
        "export representative not npz": ["export", v, "-o", str(r / "o.tflite"), "--quantize", "int8",
                                          "--representative", str(r / "notnpz.txt")],
        "export int8 without data": ["export", v, "-o", str(r / "o.tflite"), "--quantize", "int8"],
        "evaluate corrupt victim": ["evaluate", "--victim", str(r / "corrupt.keras"), "--dataset",
                                    str(r / "data.npz"), "--queries", str(r / "data.npz")],
        "evaluate 3-class victim on 10 classes": ["evaluate", "--victim", v, "--dataset", str(r / "data.npz"),
                                                  "--queries", str(r / "data.npz"), "--quiet"],
        "evaluate --json a directory": ["evaluate", "--victim", v, "--dataset", str(r / "data.npz"),
                                        "--json", str(r / "adir")],
        "evaluate empty sweep value": ["evaluate", "--victim", v, "--dataset", str(r / "data.npz"),
                                       "--sweep", "dcp:beta=0.3//0.5"],
        "evaluate unknown attack": ["evaluate", "--victim", v, "--dataset", str(r / "data.npz"),
                                    "--attack", "jbda"],
        "audit a directory": ["audit", str(r / "adir")],
        "audit truncated": ["audit", str(r / "truncated.tflite")],
        "audit garbled": ["audit", str(r / "garbled.tflite")],
        "audit a .keras file": ["audit", v],
        "audit missing": ["audit", str(r / "missing.tflite")],
        "train-victim -o existing": ["train-victim", "--dataset", "digits", "-o", str(r / "existing.keras")],
        "train-victim -o under a file": ["train-victim", "--dataset", "digits", "-o", str(r / "afile" / "v.keras")],
        "train-victim unknown dataset": ["train-victim", "--dataset", str(r / "missing.npz"), "-o",
                                         str(r / "v.keras")],
        "evaluate --parallel-clones 0": ["evaluate", "--victim", v, "--dataset", str(r / "data.npz"),
                                         "--parallel-clones", "0"],
        "evaluate --parallel-clones -3": ["evaluate", "--victim", v, "--dataset", str(r / "data.npz"),
                                          "--parallel-clones", "-3"],
        "evaluate --precision float16": ["evaluate", "--victim", v, "--dataset", str(r / "data.npz"),
                                         "--precision", "float16"],
        "demo --parallel-clones 0": ["demo", "--parallel-clones", "0", "--plot", "none"],
        "demo --precision bf16": ["demo", "--precision", "bf16", "--plot", "none"],
        "demo --json a directory": ["demo", "--json", str(r / "adir"), "--plot", "none"],
        "demo --plot existing": ["demo", "--plot", str(r / "existing.keras")],
        "bench --json existing": ["bench", "layer", "--json", str(r / "existing.keras")],
        "bench --seconds 0": ["bench", "layer", "--seconds", "0"],
        "protect mad surrogate missing": protect + ["-o", str(r / "o3.keras"), "--defense",
                                                    f"mad:eps=0.5,surrogate={r / 'missing.keras'}"],
        "protect mad surrogate corrupt": protect + ["-o", str(r / "o3.keras"), "--defense",
                                                    f"mad:surrogate={r / 'corrupt.keras'}"],
        "protect mad surrogate other classes": protect + ["-o", str(r / "o3.keras"), "--defense",
                                                          f"mad:surrogate={r / 'five_classes.keras'}"],
        "protect mad surrogate other input": protect + ["-o", str(r / "o3.keras"), "--defense",
                                                        f"mad:surrogate={r / 'other_input.keras'}"],
        "protect mad negative eps": protect + ["-o", str(r / "o3.keras"), "--defense", "mad:eps=-1"],
        "protect mad unknown objective": protect + ["-o", str(r / "o3.keras"), "--defense", "mad:objective=hessian"],
        "protect mad with --beta": protect + ["-o", str(r / "o3.keras"), "--defense", "mad", "--beta", "0.5"],
        "protect am model a directory": protect + ["-o", str(r / "o3.keras"), "--defense", f"am:model={r / 'adir'}"],
        "protect am tau 0": protect + ["-o", str(r / "o3.keras"), "--defense", "am:tau=0"],
        "protect am surrogate argument": protect + ["-o", str(r / "o3.keras"), "--defense", "am:surrogate=x.keras"],
        "export mad jacobian": ["export", str(r / "mad_jacobian.keras"), "-o", str(r / "o.tflite")],
        "bench model without --model": ["bench", "model"],
        "bench model corrupt": ["bench", "model", "--model", str(r / "corrupt.keras")],
        "bench model unknown defense": ["bench", "model", "--model", v, "--defense", "magic"],
        "bench model --rounds 0": ["bench", "model", "--model", v, "--rounds", "0"],
        "bench model --batch 0": ["bench", "model", "--model", v, "--batch", "0"],
        "bench model --seconds": ["bench", "model", "--model", v, "--seconds", "1"],
        "bench model --json existing": ["bench", "model", "--model", v, "--json", str(r / "existing.keras")],
        "bench layer --model": ["bench", "layer", "--model", v],
    }


CASES = sorted(_cases(__import__("pathlib").Path("/r")))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(case, files, capsys):
    argv = _cases(files)[case]
    before = {p: p.read_bytes() for p in (files / "existing.keras", files / "nonempty" / "saved_model.pb")}
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"keras-dcp {argv[0]}: error: "), err
    for path, content in before.items():  # nothing that existed was touched
        assert path.read_bytes() == content


def test_unwritable_folder_is_refused_before_any_work(files, capsys, monkeypatch):
    # As root (CI) a read-only folder is still writable, so the permission check is what is tested.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(files / "adir") else
                        real_access(path, mode))
    code = main(["protect", str(files / "victim.keras"), "-o", str(files / "adir" / "o.keras"),
                 "--from-probabilities"])
    assert code == 2 and "permission denied" in capsys.readouterr().err


def test_overwrite_replaces_and_a_good_run_still_works(files, capsys):
    target = files / "replace.keras"
    target.write_bytes(b"old")
    assert main(["protect", str(files / "victim.keras"), "-o", str(target), "--from-probabilities"]) == 2
    assert target.read_bytes() == b"old"
    assert main(["protect", str(files / "victim.keras"), "-o", str(target), "--from-probabilities",
                 "--overwrite"]) == 0
    assert zipfile.is_zipfile(target)
    saved = files / "saved"
    assert main(["protect", str(files / "victim.keras"), "-o", str(saved), "--from-probabilities"]) == 0
    assert (saved / "saved_model.pb").exists()
    assert not [name for name in os.listdir(files) if name.startswith(".keras-dcp-")]  # no temporary left
