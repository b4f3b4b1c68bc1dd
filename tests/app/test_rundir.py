"""The run folder on disk: made safely, checked before use, loaded without tracebacks."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from contrastkit.app import rundir
from contrastkit.app.rundir import (
    RunFolderError,
    WriteError,
    check_model_spec,
    check_run_folder,
    create_run_folder,
    discard_untrained_run_folder,
    load_safetensors,
    load_state,
    load_weights_into,
    naming_write_errors,
    read_model_json,
    read_reference,
    read_safetensors_header,
    remove_stale_temporaries,
    save_tensors,
    take_default_run_folder,
    write_text_atomic,
)

SRC = str(Path(rundir.__file__).resolve().parents[2])
CONFIG_TEXT = '# contrastkit run configuration\ndata = "digits"\nepochs = 2\n'
SPEC = {"kind": "vectors", "embedding_dim": 4, "hidden": [8], "in_features": 3}
IMAGE_SPEC = {"kind": "images", "embedding_dim": 4, "hidden": [8], "channels": 1, "image_size": 8}
AUTOENCODER = {"noise_std": 0.1, "reconstruction_loss": "mse", "input_range": [0.0, 16.0]}


def one_line(error):
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def dead_pid():
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def no_temporaries(folder):
    return [p for p in Path(folder).rglob("*") if ".tmp-" in p.name] == []


def make_state(epoch=2, **changes):
    state = {
        "epoch": epoch,
        "step": 6,
        "history": [{"epoch": 1}, {"epoch": 2}],
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": None,
    }
    state.update(changes)
    return state


def make_run(root, *, spec=SPEC, weights=True, reference=True, labels=True, checkpoint=None):
    """A synthetic run folder: config, model.json, weights, reference, a checkpoint."""
    run = create_run_folder(root / "run", CONFIG_TEXT)
    write_text_atomic(run / "model.json", json.dumps(spec))
    model = nn.Linear(3, 4)
    if weights:
        save_tensors(run / "model.safetensors", model.state_dict())
    if reference:
        tensors = {"embeddings": torch.randn(5, spec["embedding_dim"])}
        if labels:
            tensors["labels"] = torch.tensor([0, 1, 0, 1, 1])
        save_tensors(run / "reference.safetensors", tensors)
    if checkpoint is not None:
        folder = run / "checkpoints" / f"epoch-{checkpoint:04d}"
        folder.mkdir(parents=True)
        save_tensors(folder / "model.safetensors", model.state_dict())
        torch.save(make_state(checkpoint), folder / "state.pt")
    return run


# --- making a run folder -------------------------------------------------------------


def test_create_run_folder_writes_the_config_first(tmp_path):
    run = create_run_folder(tmp_path / "runs" / "mine", CONFIG_TEXT)
    assert run == tmp_path / "runs" / "mine"
    assert [p.name for p in run.iterdir()] == ["config.toml"]
    assert (run / "config.toml").read_text() == CONFIG_TEXT
    # killed now, in its first epoch: --resume accepts it and starts from epoch 0
    check_run_folder(run, for_resume=True)


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_create_run_folder_never_writes_into_an_existing_path(tmp_path, kind):
    path = tmp_path / "taken"
    if kind == "folder":
        path.mkdir()
        (path / "mine.txt").write_text("the user's")
    else:
        path.write_text("the user's")
    with pytest.raises(RunFolderError, match=f"run folder {re.escape(str(path))} already exists"):
        create_run_folder(path, CONFIG_TEXT)
    if kind == "folder":
        assert [p.name for p in path.iterdir()] == ["mine.txt"]
    else:
        assert path.read_text() == "the user's"


def test_create_run_folder_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "fsync", full)
    run = tmp_path / "run"
    with pytest.raises(WriteError) as caught:
        create_run_folder(run, CONFIG_TEXT)
    assert one_line(caught) == f"cannot write {run / 'config.toml'}: No space left on device"
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert not run.exists()


def test_create_run_folder_under_a_file(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(WriteError, match=f"cannot create the folder {re.escape(str(blocker))}"):
        create_run_folder(blocker / "run", CONFIG_TEXT)


def test_take_default_run_folder_takes_the_first_free_number(tmp_path):
    parent = tmp_path / "runs"
    first = take_default_run_folder(parent, "digits-contrastive", CONFIG_TEXT)
    assert first == parent / "digits-contrastive-1"
    assert (first / "config.toml").read_text() == CONFIG_TEXT
    second = take_default_run_folder(parent, "digits-contrastive", CONFIG_TEXT)
    assert second.name == "digits-contrastive-2"
    (parent / "digits-contrastive-3").write_text("a file, not a run")
    assert take_default_run_folder(parent, "digits-contrastive").name == "digits-contrastive-4"
    assert list((parent / "digits-contrastive-4").iterdir()) == []  # no config asked for
    shutil.rmtree(first)
    assert take_default_run_folder(parent, "digits-contrastive").name == "digits-contrastive-1"


def test_take_default_run_folder_limits_and_bad_stems(tmp_path):
    for n in (1, 2):
        (tmp_path / f"x-{n}").mkdir()
    with pytest.raises(RunFolderError, match=r"no free run folder name x-N .*pass --out"):
        take_default_run_folder(tmp_path, "x", limit=3)
    for stem in ("", "a/b", ".", None):
        with pytest.raises(ValueError, match="stem must be a folder name"):
            take_default_run_folder(tmp_path, stem)


def test_take_default_run_folder_race_between_threads(tmp_path):
    count = 16
    barrier = threading.Barrier(count)
    taken = [None] * count

    def start(i):
        barrier.wait()
        taken[i] = take_default_run_folder(tmp_path / "runs", "digits-contrastive", f"run {i}\n")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in taken) == sorted(f"digits-contrastive-{n}" for n in range(1, 17))
    for i, path in enumerate(taken):
        assert (path / "config.toml").read_text() == f"run {i}\n"


CHILD = """
import os, sys, time
sys.path.insert(0, {src!r})
from contrastkit.app.rundir import take_default_run_folder
go = {go!r}
while not os.path.exists(go):
    time.sleep(0.001)
print(take_default_run_folder({parent!r}, "digits-contrastive", "run %s\\n" % sys.argv[1]))
"""


def test_take_default_run_folder_race_between_processes(tmp_path):
    go, parent = tmp_path / "go", tmp_path / "runs"
    code = CHILD.format(src=SRC, go=str(go), parent=str(parent))
    children = [
        subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    time.sleep(0.2)  # let them start and wait for the signal
    go.touch()
    taken = [Path(child.communicate(timeout=60)[0].strip()) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert sorted(p.name for p in taken) == [f"digits-contrastive-{n}" for n in range(1, 7)]
    for i, path in enumerate(taken):
        assert (path / "config.toml").read_text() == f"run {i}\n"


def test_rundir_does_not_import_torch():
    code = (
        f"import sys; sys.path.insert(0, {SRC!r}); import contrastkit.app.rundir; "
        "print(sorted(m for m in ('torch', 'numpy', 'safetensors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- writing -------------------------------------------------------------------------


def test_write_text_atomic_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    assert write_text_atomic(path, "one") == path
    write_text_atomic(str(path), "two ✓")
    assert path.read_text(encoding="utf-8") == "two ✓"
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, where):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, where, full)
    with pytest.raises(WriteError) as caught:
        write_text_atomic(path, "new")
    assert one_line(caught) == f"cannot write {path}: No space left on device"
    assert caught.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and no_temporaries(tmp_path)


def test_interrupted_write_removes_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(path, "x")
    assert not path.exists() and no_temporaries(tmp_path)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_real_failed_write_names_the_file(tmp_path):
    # a file-size limit makes the write itself fail, as a full disk does
    code = f"""
import resource, signal, sys
sys.path.insert(0, {SRC!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
from contrastkit.app.rundir import WriteError, write_text_atomic
try:
    write_text_atomic({str(tmp_path / "big.txt")!r}, "x" * 100_000)
except WriteError as error:
    print(error)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"cannot write {tmp_path / 'big.txt'}: File too large"
    assert not (tmp_path / "big.txt").exists() and no_temporaries(tmp_path)


def test_naming_write_errors(tmp_path):
    target = tmp_path / "report.html"
    with pytest.raises(WriteError) as caught, naming_write_errors(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert one_line(caught) == f"cannot write {target}: No space left on device"
    other = tmp_path / "figures" / "roc.png"
    with pytest.raises(WriteError, match=f"cannot write {re.escape(str(other))}: Permission"):
        with naming_write_errors(target):
            raise PermissionError(errno.EACCES, "Permission denied", str(other))
    with pytest.raises(ValueError, match="not a write"), naming_write_errors(target):
        raise ValueError("not a write error")


def test_save_tensors_round_trip_and_full_disk(tmp_path, monkeypatch):
    tensors = {"w": torch.arange(6.0).reshape(2, 3).t(), "b": torch.tensor([1, 2])}
    path = save_tensors(tmp_path / "t.safetensors", tensors)
    loaded = load_safetensors(path, "the tensors")
    assert torch.equal(loaded["w"], tensors["w"]) and torch.equal(loaded["b"], tensors["b"])

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "fsync", full)
    with pytest.raises(WriteError, match=r"cannot write .*u\.safetensors: No space left"):
        save_tensors(tmp_path / "u.safetensors", tensors)


# --- cleaning ------------------------------------------------------------------------


def test_remove_stale_temporaries(tmp_path):
    run = create_run_folder(tmp_path / "run", CONFIG_TEXT)
    dead, alive = dead_pid(), os.getpid()
    stale_checkpoint = run / "checkpoints" / f".epoch-0003.tmp-{dead}"
    stale_checkpoint.mkdir(parents=True)
    (stale_checkpoint / "model.safetensors").write_bytes(b"half")
    stale_file = run / f".metrics.json.tmp-{dead}-0a1b2c3d"
    stale_file.write_text("half")
    stale_figure = run / "figures" / f".roc.png.tmp-{dead}-ff"
    stale_figure.parent.mkdir()
    stale_figure.write_text("half")
    live = run / "checkpoints" / f".epoch-0004.tmp-{alive}"
    live.mkdir()
    kept = [run / ".git", run / "checkpoints" / "epoch-0002", run / ".epoch-0001.tmp-x"]
    for path in kept:
        path.mkdir()
    removed = remove_stale_temporaries(run)
    assert sorted(removed) == sorted([stale_checkpoint, stale_file, stale_figure])
    assert not any(p.exists() for p in removed)
    assert live.exists() and all(p.exists() for p in kept)
    assert (run / "config.toml").read_text() == CONFIG_TEXT
    assert remove_stale_temporaries(run) == []
    assert remove_stale_temporaries(tmp_path / "nowhere") == []


def test_discard_untrained_run_folder(tmp_path):
    run = create_run_folder(tmp_path / "a", CONFIG_TEXT)
    write_text_atomic(run / "model.json", json.dumps(SPEC))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / f".epoch-0001.tmp-{os.getpid()}").mkdir()
    assert discard_untrained_run_folder(run) is True
    assert not run.exists()
    trained = make_run(tmp_path / "b", weights=False, reference=False, checkpoint=1)
    assert discard_untrained_run_folder(trained) is False
    assert (trained / "checkpoints" / "epoch-0001" / "state.pt").is_file()
    users = create_run_folder(tmp_path / "c", CONFIG_TEXT)
    (users / "notes.txt").write_text("mine")
    assert discard_untrained_run_folder(users) is False and (users / "notes.txt").exists()
    assert discard_untrained_run_folder(tmp_path / "nowhere") is False


# --- model.json ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", [SPEC, IMAGE_SPEC, {**SPEC, "autoencoder": AUTOENCODER}, {**SPEC, "extra": 1}]
)
def test_valid_model_specs(spec):
    assert check_model_spec(dict(spec), "model.json") == spec


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([1, 2], "must hold a JSON object, got list"),
        ({k: v for k, v in SPEC.items() if k != "kind"}, "has no 'kind'"),
        ({k: v for k, v in SPEC.items() if k != "embedding_dim"}, "has no 'embedding_dim'"),
        ({k: v for k, v in SPEC.items() if k != "hidden"}, "has no 'hidden'"),
        ({k: v for k, v in SPEC.items() if k != "in_features"}, "has no 'in_features'"),
        ({k: v for k, v in IMAGE_SPEC.items() if k != "channels"}, "has no 'channels'"),
        ({k: v for k, v in IMAGE_SPEC.items() if k != "image_size"}, "has no 'image_size'"),
        (
            {**SPEC, "kind": "audio"},
            '\'kind\' must be "vectors", "images" or "text", got \'audio\'',
        ),
        ({**SPEC, "embedding_dim": "32"}, "'embedding_dim' must be a positive integer, got '32'"),
        ({**SPEC, "embedding_dim": True}, "'embedding_dim' must be a positive integer"),
        ({**SPEC, "in_features": 0}, "'in_features' must be a positive integer, got 0"),
        ({**SPEC, "hidden": [8, 0]}, "'hidden' must be a list of positive integers"),
        ({**SPEC, "autoencoder": None}, "'autoencoder' must be a JSON object"),
        ({**SPEC, "autoencoder": {}}, "has no 'autoencoder.noise_std'"),
        ({**SPEC, "autoencoder": {**AUTOENCODER, "noise_std": -1}}, "noise_std' must be a"),
        ({**SPEC, "autoencoder": {**AUTOENCODER, "reconstruction_loss": "l1"}}, '"mse" or "bce"'),
        ({**SPEC, "autoencoder": {**AUTOENCODER, "input_range": [2, 1]}}, "low <= high"),
        ({**SPEC, "autoencoder": {**AUTOENCODER, "input_range": [0, "nan"]}}, "input_range"),
    ],
)
def test_bad_model_specs_name_the_key(spec, match):
    with pytest.raises(RunFolderError, match=re.escape(match)) as caught:
        check_model_spec(spec, "RUN/model.json")
    assert one_line(caught).startswith("RUN/model.json")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is not valid JSON"),
        (b'{"kind": "vectors",', "is not valid JSON"),
        (b"\xff\xfe{}", "is not valid JSON"),
        (json.dumps({**SPEC, "in_features": None}).encode(), "'in_features' must be"),
    ],
)
def test_read_model_json_names_the_file(tmp_path, content, match):
    run = create_run_folder(tmp_path / "run", CONFIG_TEXT)
    (run / "model.json").write_bytes(content)
    with pytest.raises(RunFolderError, match=match) as caught:
        read_model_json(run)
    assert str(run / "model.json") in one_line(caught)


def test_read_model_json_missing(tmp_path):
    run = create_run_folder(tmp_path / "run", CONFIG_TEXT)
    with pytest.raises(RunFolderError, match=r"has no model\.json .*train it again"):
        read_model_json(run)


# --- safetensors files ---------------------------------------------------------------


def test_read_safetensors_header(tmp_path):
    path = save_tensors(tmp_path / "t.safetensors", {"a": torch.zeros(2, 3), "n": torch.ones(4)})
    assert read_safetensors_header(path, "the weights") == {
        "a": ("F32", (2, 3)),
        "n": ("F32", (4,)),
    }
    empty = save_tensors(tmp_path / "e.safetensors", {})
    assert read_safetensors_header(empty, "the weights") == {}


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (
            lambda b: b[:-10],
            "is damaged: truncated: its tensors need 40 bytes of data, it holds 30",
        ),
        (lambda b: b + b"\0" * 8, "is damaged: padded"),
        (lambda b: b[:50], "header claims"),
        (lambda b: b[:5], "5 bytes, too short"),
        (lambda b: b"", "0 bytes, too short"),
        (lambda b: (2**62).to_bytes(8, "little") + b[8:], "header claims"),
        (lambda b: b[:8] + b"\xff" * (len(b) - 8), "header is not JSON"),
        (lambda b: bytes(range(256)) * 4, "is damaged"),
    ],
)
def test_damaged_safetensors_are_found_by_their_header(tmp_path, damage, match):
    path = save_tensors(tmp_path / "w.safetensors", {"a": torch.zeros(10)})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RunFolderError, match=match) as caught:
        read_safetensors_header(path, "the weights")
    assert one_line(caught).startswith(f"the weights {path}")
    with pytest.raises(RunFolderError, match=f"the weights {re.escape(str(path))}"):
        load_safetensors(path, "the weights")


def test_malformed_safetensors_entries(tmp_path):
    def with_header(header, data=b""):
        raw = json.dumps(header).encode()
        path = tmp_path / "m.safetensors"
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
        return path

    path = with_header({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8)
    with pytest.raises(RunFolderError, match="the entry of tensor 'a' is malformed"):
        read_safetensors_header(path, "the weights")
    path = with_header({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(RunFolderError, match=r"tensor 'a' has 8 bytes for shape \[3\]"):
        read_safetensors_header(path, "the weights")
    path = with_header([1, 2])
    with pytest.raises(RunFolderError, match="header is not a JSON object"):
        read_safetensors_header(path, "the weights")
    with pytest.raises(RunFolderError, match=r"the weights .*none\.safetensors does not exist"):
        read_safetensors_header(tmp_path / "none.safetensors", "the weights")


# --- check_run_folder: a trained run -------------------------------------------------


def test_check_run_folder_accepts_a_complete_run(tmp_path):
    run = make_run(tmp_path)
    check_run_folder(run)
    check_run_folder(str(run), need_reference=True)
    # an unfinished run is used through its latest checkpoint
    unfinished = make_run(tmp_path / "u", weights=False, reference=False, checkpoint=3)
    check_run_folder(unfinished)


def test_check_run_folder_the_folder_itself(tmp_path):
    with pytest.raises(RunFolderError, match=r"run folder .*nowhere does not exist"):
        check_run_folder(tmp_path / "nowhere")
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(RunFolderError, match=r"file is not a folder"):
        check_run_folder(file)
    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.png").write_bytes(b"x")
    with pytest.raises(RunFolderError, match=r"other is not a contrastkit run folder \(no config"):
        check_run_folder(other, for_resume=True)
    # killed between creating the folder and writing its config
    early = tmp_path / "early"
    early.mkdir()
    (early / f".config.toml.tmp-{dead_pid()}-00").write_text("half")
    for for_resume in (False, True):
        with pytest.raises(RunFolderError, match="stopped before its configuration") as caught:
            check_run_folder(early, for_resume=for_resume)
        assert "remove it and train again" in one_line(caught)


def test_check_run_folder_weights(tmp_path):
    run = make_run(tmp_path)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(RunFolderError, match=r"the weights .*model\.safetensors is damaged: trunc"):
        check_run_folder(run)
    weights.unlink()
    with pytest.raises(RunFolderError, match="has no trained weights yet"):
        check_run_folder(run)


def test_check_run_folder_model_json(tmp_path):
    run = make_run(tmp_path)
    (run / "model.json").write_text(json.dumps({k: v for k, v in SPEC.items() if k != "hidden"}))
    with pytest.raises(RunFolderError, match=r"model\.json has no 'hidden'"):
        check_run_folder(run)
    (run / "model.json").unlink()
    with pytest.raises(RunFolderError, match=r"has no model\.json"):
        check_run_folder(run)


def test_check_run_folder_reference(tmp_path):
    run = make_run(tmp_path)
    reference = run / "reference.safetensors"
    save_tensors(reference, {"codes": torch.zeros(5, 4)})
    with pytest.raises(RunFolderError, match=r"have no tensor 'embeddings' \(tensors: codes\)"):
        check_run_folder(run)
    save_tensors(reference, {"embeddings": torch.zeros(5, 7)})
    with pytest.raises(RunFolderError, match=r"have size 7, but model\.json says embedding_dim 4"):
        check_run_folder(run)
    save_tensors(reference, {"embeddings": torch.zeros(5)})
    with pytest.raises(RunFolderError, match=r"non-empty \(N, D\) float table, got F32 of shape"):
        check_run_folder(run)
    save_tensors(reference, {"embeddings": torch.zeros(5, 4, dtype=torch.int64)})
    with pytest.raises(RunFolderError, match="got I64"):
        check_run_folder(run)
    save_tensors(reference, {"embeddings": torch.zeros(5, 4), "labels": torch.zeros(4).long()})
    with pytest.raises(
        RunFolderError, match=r"'labels' must be 5 integers, got I64 of shape \[4\]"
    ):
        check_run_folder(run)
    save_tensors(reference, {"embeddings": torch.zeros(5, 4), "labels": torch.zeros(5)})
    with pytest.raises(RunFolderError, match="'labels' must be 5 integers, got F32"):
        check_run_folder(run)
    reference.unlink()
    check_run_folder(run)  # evaluate and embed do without it
    with pytest.raises(RunFolderError, match=r"has no reference\.safetensors .*to score inputs"):
        check_run_folder(run, need_reference=True)


# --- check_run_folder: resuming ------------------------------------------------------


def test_resume_checks(tmp_path):
    run = make_run(tmp_path, weights=False, reference=False, checkpoint=2)
    check_run_folder(run, for_resume=True)
    # temporaries of a killed checkpoint write do not matter
    (run / "checkpoints" / f".epoch-0003.tmp-{dead_pid()}").mkdir()
    check_run_folder(run, for_resume=True)


def test_resume_without_model_json_or_checkpoint(tmp_path):
    run = create_run_folder(tmp_path / "run", CONFIG_TEXT)
    (run / "checkpoints").mkdir()
    check_run_folder(run, for_resume=True)


def test_resume_refuses_an_invalid_model_json(tmp_path):
    run = make_run(tmp_path, weights=False, reference=False, checkpoint=2)
    (run / "model.json").write_text('{"kind": "vectors"}')
    with pytest.raises(RunFolderError, match=r"model\.json has no 'embedding_dim'"):
        check_run_folder(run, for_resume=True)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: (f / "state.pt").write_bytes(b""), r"state\.pt is empty"),
        (lambda f: (f / "state.pt").write_bytes(os.urandom(500)), "damaged or not a torch file"),
        (lambda f: torch.save(5, f / "state.pt"), "holds a value of type int, not a dict"),
        (lambda f: torch.save({"epoch": 2}, f / "state.pt"), "has no 'step'"),
        (lambda f: torch.save(make_state(optimizer=[]), f / "state.pt"), "'optimizer' has a wrong"),
        (lambda f: torch.save(make_state(3), f / "state.pt"), "is of epoch 3, but its folder is"),
        (
            lambda f: (f / "state.pt").unlink(),
            r"is incomplete \(no state\.pt\); remove that folder",
        ),
        (lambda f: (f / "model.safetensors").unlink(), r"incomplete \(no model\.safetensors\)"),
        (
            lambda f: (f / "model.safetensors").write_bytes(b"\0" * 20),
            "the checkpoint weights .* is damaged",
        ),
    ],
)
def test_resume_refuses_a_damaged_checkpoint(tmp_path, damage, match):
    run = make_run(tmp_path, weights=False, reference=False, checkpoint=2)
    folder = run / "checkpoints" / "epoch-0002"
    damage(folder)
    with pytest.raises(RunFolderError, match=match) as caught:
        check_run_folder(run, for_resume=True)
    assert str(folder) in one_line(caught)


def test_state_truncated(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(make_state(), path)
    assert load_state(path)["epoch"] == 2
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RunFolderError, match="damaged or not a torch file") as caught:
        load_state(path)
    one_line(caught)
    with pytest.raises(RunFolderError, match=r"checkpoint state .*none\.pt does not exist"):
        load_state(tmp_path / "none.pt")


def test_state_with_objects_weights_only_refuses(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({**make_state(), "extra": threading.Lock}, path)
    with pytest.raises(RunFolderError, match="damaged or not a torch file") as caught:
        load_state(path)
    one_line(caught)


# --- loading -------------------------------------------------------------------------


def test_load_weights_into(tmp_path):
    source = nn.Linear(3, 4)
    path = save_tensors(tmp_path / "w.safetensors", source.state_dict())
    target = nn.Linear(3, 4)
    load_weights_into(target, path)
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)
    with pytest.raises(RunFolderError) as caught:
        load_weights_into(nn.Linear(3, 5), path)
    message = one_line(caught)
    assert f"the weights {path} do not fit the network of model.json" in message
    assert "'weight' of shape [4, 3] for [5, 3]" in message
    with pytest.raises(RunFolderError, match=r"no '1\.weight', .*an unexpected 'weight'"):
        load_weights_into(nn.Sequential(nn.Identity(), nn.Linear(3, 4)), path)


def test_read_reference(tmp_path):
    run = make_run(tmp_path)
    embeddings, labels = read_reference(run, embedding_dim=4)
    assert embeddings.shape == (5, 4) and labels.tolist() == [0, 1, 0, 1, 1]
    pairs = make_run(tmp_path / "pairs", labels=False)
    assert read_reference(pairs)[1] is None
    with pytest.raises(RunFolderError, match=r"have size 4, but model\.json says embedding_dim 9"):
        read_reference(run, embedding_dim=9)
    reference = run / "reference.safetensors"
    reference.write_bytes(reference.read_bytes()[:-1])
    with pytest.raises(RunFolderError, match=r"the reference embeddings .* is damaged"):
        read_reference(run)
    reference.unlink()
    with pytest.raises(RunFolderError, match=r"has no reference\.safetensors"):
        read_reference(run)


# --- a real run folder, as train_run writes it ---------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from contrastkit.app.config import RunConfig
    from contrastkit.app.run import train_run

    run = tmp_path_factory.mktemp("real") / "run"
    config = RunConfig(epochs=2, steps_per_epoch=2, batch_size=16, hidden=[8], embedding_dim=2)
    train_run(config, run, progress=False, log=lambda *_: None)
    return run


@pytest.mark.slow
def test_a_real_run_passes_every_check(trained_run):
    from contrastkit.app.run import load_run

    check_run_folder(trained_run, need_reference=True)
    check_run_folder(trained_run, for_resume=True)
    spec = read_model_json(trained_run)
    embeddings, labels = read_reference(trained_run, embedding_dim=spec["embedding_dim"])
    assert embeddings.shape[1] == 2 and labels is not None
    _, model = load_run(trained_run)
    load_weights_into(model, trained_run / "model.safetensors")
    state = load_state(trained_run / "checkpoints" / "epoch-0002" / "state.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert discard_untrained_run_folder(trained_run) is False


@pytest.mark.slow
def test_a_real_run_damaged(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunFolderError, match="is damaged"):
        check_run_folder(run)
    state = run / "checkpoints" / "epoch-0002" / "state.pt"
    state.write_bytes(os.urandom(64))
    with pytest.raises(RunFolderError, match="damaged or not a torch file"):
        check_run_folder(run, for_resume=True)
    spec = json.loads((run / "model.json").read_text())
    del spec["in_features"]
    (run / "model.json").write_text(json.dumps(spec))
    with pytest.raises(RunFolderError, match="has no 'in_features'"):
        check_run_folder(run, for_resume=True)
