"""Several processes: the README's commands really train every process as a rank of one group, each on its own
batches (the saved state records what each drew), and a launch whose processes would not form a group is
refused in one line naming the command that works."""
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import train
from mergan.checkpoints import load_state, read_metadata
from mergan.launch import LaunchError, check_group, use_cpu
from test_train import ROOT, TINY

ACCELERATE_CPU = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
TORCHRUN = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "0", "RANK": "0"}


def test_what_each_launch_gets(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert use_cpu(False, {}) is False and use_cpu(True, {}) is True          # one process, as asked
    assert use_cpu(False, TORCHRUN) is True                                    # no GPU: they join over gloo
    with pytest.raises(LaunchError, match="starts one process, not N.*torchrun --standalone --nproc_per_node N"):
        use_cpu(True, ACCELERATE_CPU)                                          # accelerate launch --cpu -n 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert use_cpu(False, {**TORCHRUN, "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}) is False
    with pytest.raises(LaunchError, match="2 processes on this machine but 1 GPU"):
        use_cpu(False, TORCHRUN)
    assert use_cpu(True, TORCHRUN) is True
    with pytest.raises(LaunchError, match="started 2 processes but they formed a group of 1"):
        check_group(SimpleNamespace(num_processes=1), TORCHRUN)


def launch(tmp_path, data, launcher, *extra):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", *launcher, "train.py", *extra, "--strategy", "jtr", "--classes", "0,1",
           "--out", str(out), "--data-dir", str(data), *TINY]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**env, "OMP_NUM_THREADS": "1"})
    return proc, out


@pytest.fixture(scope="module")
def one_process(mnist_slice, tmp_path_factory):
    """What a single process draws for the same command: the state of an in-process run."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    out = tmp_path_factory.mktemp("one") / "run"
    assert train.main(["--strategy", "jtr", "--classes", "0,1", "--out", str(out), "--data-dir", str(mnist_slice),
                       *TINY]) == 0
    AcceleratorState._reset_state(True)
    return load_state(out / "state.pt")


COMMANDS = {   # the README's two commands of several processes (the second also covers a launch without --cpu)
    "torchrun --cpu": (["torch.distributed.run", "--standalone", "--nproc_per_node", "2"], ["--cpu"]),
    "accelerate --multi_gpu, no GPU": (["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                                        "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend",
                                        "no"], []),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_several_processes_train_every_rank_on_its_own_batches(tmp_path, mnist_slice, one_process, command):
    launcher, extra = COMMANDS[command]
    if not extra and torch.cuda.is_available():
        pytest.skip("without --cpu this machine's GPUs are used")
    proc, out = launch(tmp_path, mnist_slice, launcher, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2" in proc.stderr and proc.stdout.count("done: 2 task(s)") == 1   # one group; the main one reports
    state = load_state(out / "state.pt")
    assert state.processes == 2 and len(state.drawn) == 2                       # both ranks stepped and saved
    assert all(state.drawn) and state.drawn[0] != state.drawn[1]                # on batches of their own
    assert not torch.equal(state.rng[0], state.rng[1])                          # and noise of their own
    assert read_metadata(out / "task_01.safetensors").classes == ["0", "1"]
    assert one_process.drawn == [state.drawn[0]]   # rank 0 drew what one process draws: split by seed, not repeated


@pytest.mark.slow
def test_accelerate_launch_cpu_with_several_processes_is_refused(tmp_path, mnist_slice):
    proc, out = launch(tmp_path, mnist_slice, ["accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines",
                                  "1", "--mixed_precision", "no", "--dynamo_backend", "no"])
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[0] == (
        "error: accelerate launch --cpu --num_processes N starts one process, not N (Accelerate starts several CPU "
        "processes only through MPI); start them with: torchrun --standalone --nproc_per_node N train.py --cpu "
        "...")
    assert not out.exists()
