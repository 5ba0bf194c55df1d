"""The package as a user installs it: the dependency lists agree, the ``mergan`` command dispatches every script,
and the wheel, installed into a fresh virtual environment without downloading anything, trains, evaluates, writes
a card the Hub's parser reads back, and loads a run by Hub repository id from an offline cache."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from packaging.requirements import Requirement

from hubcache import add_commit, run_files
from mergan import __version__, cli

ROOT = Path(__file__).resolve().parent.parent


def _requirements(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {(r := Requirement(line)).name.lower(): str(r.specifier) for line in lines
            if line and not line.startswith("-r")}


def _declared(items) -> dict[str, str]:
    return {(r := Requirement(item)).name.lower(): str(r.specifier) for item in items if not item.startswith("mergan")}


def test_requirements_files_are_the_packages_dependencies():
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    assert _requirements(ROOT / "requirements.txt") == {**_declared(project["dependencies"]),
                                                        **_declared(extras["demo"])}
    assert _requirements(ROOT / "requirements-test.txt") == _declared(extras["test"])
    assert "-r requirements.txt" in (ROOT / "requirements-test.txt").read_text() and "mergan[demo]" in extras["test"]
    assert project["dynamic"] == ["version"] and pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "mergan.__version__"}
    assert project["scripts"] == {"mergan": "mergan.cli:main"}


def test_the_mergan_command_lists_and_dispatches_every_command(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name}" in listed for name in cli.COMMANDS) and __version__ in listed
    for name in cli.COMMANDS:   # each command's own parser answers its --help
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: "), name
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert capsys.readouterr().out.startswith("usage: mergan train [-h]")   # argparse names it as it was called
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'trian'; choose one of train, test" in err[0]


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel, built offline from a copy of the sources (a build writes build/ and *.egg-info beside them)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "train.py", "demo_app.py"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mergan", src / "mergan", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("mnist", "classifiers"):
        shutil.copytree(ROOT / "assets" / folder, src / "assets" / folder)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp_path / "dist")], check=True)
    return next((tmp_path / "dist").glob("mergan-*.whl"))


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment that sees this interpreter's packages through a .pth file (so torch is not
    installed again), with the wheel installed from the file alone: its declared dependencies must be there."""
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    site = Path(subprocess.run([env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "outer.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-index",
                    "-q", str(wheel)], check=True)
    return env


@pytest.mark.slow
def test_the_wheel_installs_trains_evaluates_and_loads_from_the_hub_cache(tmp_path, mnist_slice, slice_evaluators):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert f"mergan-{__version__}-py3-none-any.whl" == wheel.name
    assert {"train.py", "demo_app.py", "mergan/cli.py", "mergan/card.py", "mergan/hub.py"} <= set(names)
    assert {f"mergan/assets/mnist/{f}" for f in os.listdir(ROOT / "assets" / "mnist")} <= set(names)
    assert not any("assets/runs" in n for n in names)
    env = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "work"   # not the repository: nothing of the checkout is importable from here
    shutil.copytree(slice_evaluators.cache, work / "classifiers")   # the evaluation's cache, as a user's would be
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), OMP_NUM_THREADS="1")

    def mergan(*args):
        done = subprocess.run([env / "bin" / "mergan", *args], cwd=work, env=environ, capture_output=True, text=True)
        assert done.returncode == 0, f"mergan {' '.join(args)}:\n{done.stderr[-2000:]}"
        return done.stdout

    listed = mergan("--help")
    assert all(f"  {name}" in listed for name in ("train", "test", "push", "pull", "demo"))
    mergan("train", "--dim", "4", "--iters", "3", "--batch-size", "8", "--classes", "0,1", "--cpu",
           "--data-dir", str(mnist_slice), "--out", "run")
    run = work / "run"
    assert ModelCard.load(run / "README.md").data.library_name == "mergan"
    mergan("test", "--out", "run", "--eval-samples", "64")
    metrics = json.loads((run / "metrics.json").read_text())
    card = ModelCard.load(run / "README.md")   # the Hub's parser
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["Average accuracy after 2 tasks (cnn32 evaluator, %)"] == round(
        100 * metrics["tasks"][-1]["main"]["average"], 2)
    assert values["Reverse accuracy (classifier trained on generated images, %)"] == round(
        100 * metrics["variety"]["reverse_accuracy"], 2)
    add_commit(tmp_path / "hub", "me/wheel-run", run_files(run))
    check = ("import mergan, mergan.data as d\n"
             "from mergan import load_generator\n"
             "G, meta = load_generator('me/wheel-run')\n"
             "print(mergan.__file__, meta.task, ','.join(meta.classes), meta.run_id)\n"
             "print(d.load_task_data('mnist', 'nowhere', '0,1').source.description)\n")
    done = subprocess.run([env / "bin" / "python", "-c", check], cwd=work, env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded, data = done.stdout.splitlines()[-2:]
    assert loaded.split()[0].startswith(str(env)), "the checkout's mergan was imported, not the wheel's"
    assert loaded.split()[1:] == ["1", "0,1", metrics["run_id"]]
    assert data.startswith("mnist: 60,000 training and 10,000 test digits, the official files shipped")
