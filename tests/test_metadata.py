"""Metadata of the wrong type: every field of a task file's metadata and of config.json, given a value of
another JSON type, is refused with one line naming the file (never a TypeError further on); the CLI says it in
one line, the demo skips that file with a note and serves the rest."""
import json

import pytest
from safetensors.torch import load_file

import train
from mergan.checkpoints import FORMAT, CheckpointError, read_header, read_metadata, write_safetensors
from mergan.records import RecordError
from mergan.runs import RunFolder
from test_robustness import copy_run, finished, one_error_line   # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest


def other_types(value) -> list:
    """Values of another JSON type than ``value`` (an integer stands for a float: JSON cannot tell them apart)."""
    if isinstance(value, bool):
        return ["true", 2]
    if isinstance(value, int):
        return ["7", 7.5, [7]]
    if isinstance(value, float):
        return ["0.5", [0.5]]
    if isinstance(value, str):
        return [5, ["x"], {"x": 1}]
    if isinstance(value, list):
        return [5, "x", {"x": 1}]
    if isinstance(value, dict):
        return [5, "x", ["x"]]
    return []   # null: an optional field left out


def fields(node, path=()):
    """(path, value) of every field under ``node``, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        yield (*path, key), value
        yield from fields(value, (*path, key))


def replaced(node, path, value):
    node = json.loads(json.dumps(node))
    inner = node
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return node


def test_every_task_file_field_of_another_type_is_refused_by_name(finished, tmp_path):
    path = finished / "task_01.safetensors"
    raw = read_header(path, FORMAT, "", "")
    meta = {k: json.loads(v) for k, v in raw.items() if k not in ("format", "format_version")}
    tensors, target, tried = load_file(str(path)), tmp_path / "task_01.safetensors", 0
    for where, value in fields(meta):
        for bad in other_types(value):
            crafted = replaced(meta, where, bad)
            write_safetensors(target, tensors, {**raw, **{k: json.dumps(v) for k, v in crafted.items()}})
            with pytest.raises(CheckpointError, match="task_01.safetensors"):
                read_metadata(target)
            tried += 1
    assert tried > 150


def test_every_config_field_of_another_type_is_refused_by_name(finished, tmp_path):
    record = json.loads((finished / "config.json").read_text())
    run, tried = RunFolder(tmp_path), 0
    for where, value in fields(record):
        for bad in other_types(value):
            (tmp_path / "config.json").write_text(json.dumps(replaced(record, where, bad)))
            with pytest.raises(RecordError, match="config.json"):
                run.read_record()
            tried += 1
    assert tried > 100


@pytest.mark.parametrize("classes", [5, {"0": 1, "1": 2}])
def test_a_task_file_whose_classes_are_not_a_list(finished, tmp_path, capsys, classes):
    """One line in the CLI; in the demo a note, and the rest of the runs served."""
    from mergan.catalog import discover

    runs = tmp_path / "runs"
    good, bad = copy_run(finished, runs / "good"), copy_run(finished, runs / "bad")
    path = bad / "task_01.safetensors"
    raw = read_header(path, FORMAT, "", "")
    write_safetensors(path, load_file(str(path)), {**raw, "classes": json.dumps(classes)})
    assert train.main(["--test", "--out", str(bad)]) == 1
    one_error_line(capsys, "task_01.safetensors", "'classes'")
    assert train.main(["--classes", "0,1,2", "--out", str(bad), "--dim", "4", "--iters", "3", "--save-every",
                       "2", "--batch-size", "8"]) == 1
    one_error_line(capsys, "task_01.safetensors", "'classes'")
    catalog = discover(runs)
    assert any("bad/task_01.safetensors" in m and "'classes'" in m for m in catalog.messages), catalog.messages
    (exp,) = catalog.experiments
    shown = exp.runs["ra"]
    assert shown.path.name in ("good", "bad") and 0 in shown.generators
    assert good.is_dir()
