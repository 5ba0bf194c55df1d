"""The Hub both ways, offline (conftest sets HF_HUB_OFFLINE=1): runs fetched by repository id through
huggingface_hub's real download code from a cache filled as a download leaves it (tests/hubcache.py), and the push
prepared as huggingface_hub commit operations and sent up to the library's own refusal to go online."""
import fnmatch
import shutil

import pytest
import torch
from huggingface_hub import ModelCard, constants
from huggingface_hub.errors import OfflineModeIsEnabled

from hubcache import add_commit, run_files
from mergan import cli, load_generator
from mergan.catalog import discover
from mergan.views import numbers
from mergan.checkpoints import CheckpointError
from mergan.hub import HubError, HubSource, hub_source, patterns, pull, push
from mergan.records import RecordError
from mergan.runs import RunFolder, hub_blob


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache of the test's own (the library reads its location when called)."""
    assert constants.HF_HUB_OFFLINE, "these tests must never reach the network"
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sources_are_local_paths_first_then_hub_repositories(tmp_path):
    assert hub_source("me/mnist-ra") == HubSource("me/mnist-ra")
    assert hub_source("me/mnist-ra@v1/runs/ra") == HubSource("me/mnist-ra", "v1", "runs/ra")
    assert hub_source("me/mnist-ra", revision="abc") == HubSource("me/mnist-ra", "abc")
    for local in ("./me/x", "/abs/run", "~/run", "me/task_00.safetensors", "a b/c", "me--x/y", "plain"):
        assert hub_source(local) is None, local
    (tmp_path / "me" / "run").mkdir(parents=True)
    assert hub_source(tmp_path / "me" / "run") is None


def test_load_generator_by_repository_id_from_the_offline_cache(evaluated_run, hub_cache):
    run = evaluated_run.path
    files = run_files(run)
    first = add_commit(hub_cache, "me/tiny-ra", {k: v for k, v in files.items() if "01" not in k}, refs=("v1",))
    latest = add_commit(hub_cache, "me/tiny-ra", files, refs=("main",))
    G, meta = load_generator("me/tiny-ra")                          # main: the generator after the last task
    local, _ = load_generator(run / "task_01.safetensors")
    assert meta.task == 1 and meta.classes == ["3", "0"] and _same_weights(G, local)
    G0, meta0 = load_generator("me/tiny-ra@v1")                     # a tag: the run as it was pushed first
    assert meta0.task == 0 and _same_weights(G0, load_generator(run / "task_00.safetensors")[0])
    assert load_generator("me/tiny-ra", revision=first)[1].task == 0   # a commit
    assert load_generator("me/tiny-ra", revision=latest, task=0)[1].task == 0
    snapshot = hub_cache / "models--me--tiny-ra" / "snapshots" / latest
    assert hub_blob(snapshot / "config.json") and RunFolder(snapshot).read_record().run_id == meta.run_id


def test_what_is_not_there_is_one_line(evaluated_run, hub_cache):
    add_commit(hub_cache, "me/tiny-ra", run_files(evaluated_run.path))
    with pytest.raises(HubError, match="no local path me/absent, and the Hub repository me/absent is not in "
                                       "huggingface_hub's cache .*, and HF_HUB_OFFLINE is set: fetch it once"):
        load_generator("me/absent")
    with pytest.raises(HubError, match="revision 'v9' of the Hub repository me/tiny-ra is not in huggingface_hub's"):
        load_generator("me/tiny-ra@v9")
    with pytest.raises(CheckpointError, match="has no generator of task 5 .*tasks 0, 1"):
        load_generator("me/tiny-ra", task=5)
    with pytest.raises(HubError, match="has no folder 'elsewhere'"):
        load_generator("me/tiny-ra/elsewhere")
    with pytest.raises(CheckpointError, match="no MeRGAN generator at runs/x/task_00.safetensors"):
        load_generator("runs/x/task_00.safetensors")                # a file name is never looked up on the Hub


def test_a_link_is_read_only_inside_the_hub_cache(evaluated_run, tmp_path):
    run = RunFolder(shutil.copytree(evaluated_run.path, tmp_path / "ra"))
    real = run.config_path.rename(tmp_path / "elsewhere.json")
    run.config_path.symlink_to(real)
    assert not hub_blob(run.config_path)
    with pytest.raises(RecordError, match="is not a plain file"):
        run.read_record()


def test_the_demo_reads_a_hub_repository_of_runs(evaluated_run, tiny_runs, hub_cache):
    files = {**run_files(evaluated_run.path, "evaluated/"), **run_files(tiny_runs / "mnist-sft", "sft/"),
             **run_files(tiny_runs / "mnist-ra", "ra/")}
    add_commit(hub_cache, "me/mergan-runs", files)
    catalog = discover("me/mergan-runs")
    assert not catalog.messages
    assert sorted((e.classes, sorted(e.runs)) for e in catalog.experiments) == [(["0", "1", "2"], ["ra", "sft"]),
                                                                                 (["3", "0"], ["ra"])]
    one = discover("me/mergan-runs/evaluated")                     # one run of the repository
    assert [sorted(e.runs) for e in one.experiments] == [["ra"]]
    view = numbers(one.experiments[0])                             # its metrics and forgetting grid, via the cache
    assert "Average accuracy" in view.html and view.pictures["MeRGAN-RA"].grid is not None
    missing = discover("me/other-runs")
    assert not missing.experiments and "HF_HUB_OFFLINE" in missing.messages[0]


def test_pull_prints_the_cached_run(evaluated_run, hub_cache, capsys):
    add_commit(hub_cache, "me/tiny-ra", run_files(evaluated_run.path))
    assert cli.main(["pull", "me/tiny-ra"]) == 0
    folder = capsys.readouterr().out.strip()
    assert RunFolder(folder).read_metrics().run_id == RunFolder(evaluated_run.path).read_record().run_id
    with pytest.raises(HubError, match="is a local path"):
        pull(str(evaluated_run.path))


def test_push_prepares_one_commit_of_the_evaluated_run(evaluated_run, capsys):
    run = RunFolder(evaluated_run.path)
    card_before = run.card_path.read_text()
    plan = push(run.path, "me/tiny-ra", path_in_repo="runs/ra", revision="v2", dry_run=True)
    expected = ["README.md", "config.json", "metrics.json", "task_00.safetensors", "samples/task_00.png",
                "task_01.safetensors", "samples/task_01.png", "forgetting_grid.png", "forgetting.gif", "accuracy.png"]
    assert [p for p, _ in plan.files] == [f"runs/ra/{f}" for f in expected]
    assert all(n == (run.path / p[len("runs/ra/"):]).stat().st_size for p, n in plan.files[1:])
    assert all(any(fnmatch.fnmatch(f, p) for p in patterns()) for f in expected)   # a pull fetches all of it
    assert "data folder this run read" in plan.notes[0] and plan.url is None
    card = ModelCard(plan.operations[0].path_or_fileobj.decode())   # the card as it goes: written for the repository
    assert 'load_generator("me/tiny-ra@v2/runs/ra")' in card.text and card.data.eval_results
    assert hub_source("me/tiny-ra@v2/runs/ra") == HubSource("me/tiny-ra", "v2", "runs/ra")
    assert run.card_path.read_text() == card_before                 # a dry run changes nothing here
    assert cli.main(["push", str(run.path), "me/tiny-ra", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would push 10 files") and "nothing was sent" in out


def test_push_goes_up_to_the_hub_api_and_stops_there_offline(evaluated_run):
    with pytest.raises(HubError, match="cannot push to me/tiny-ra while HF_HUB_OFFLINE is set") as info:
        push(evaluated_run.path, "me/tiny-ra")
    assert isinstance(info.value.__cause__, OfflineModeIsEnabled)


def test_push_refuses_a_run_not_evaluated_since_its_last_task(evaluated_run, tmp_path, capsys):
    run = RunFolder(shutil.copytree(evaluated_run.path, tmp_path / "ra"))
    m = run.read_metrics()
    m.tasks = m.tasks[:1]
    run.write_metrics(m)
    with pytest.raises(HubError, match="not pushing .*evaluated on 1 task file"):
        push(run.path, "me/tiny-ra", dry_run=True)
    run.metrics_path.unlink()
    assert cli.main(["push", str(run.path), "me/tiny-ra", "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has not been evaluated (no metrics.json); evaluate it first: mergan test --out" in err[0]
    for bad, why in ((tmp_path, "not a run folder"), (evaluated_run.path, "not a Hub repository id")):
        with pytest.raises(HubError, match=why):
            push(bad, "me/tiny-ra" if bad == tmp_path else "me/bad--name", dry_run=True)


def test_mergan_demo_fetches_a_hub_repository_before_the_demo_starts(evaluated_run, hub_cache, monkeypatch, capsys):
    import demo_app

    add_commit(hub_cache, "me/mergan-runs", run_files(evaluated_run.path, "ra/"))
    started = []
    monkeypatch.setattr(demo_app, "main", started.append)   # the page itself is tested in test_demo/test_browser
    assert cli.main(["demo", "--port", "7999", "--runs", "me/mergan-runs"]) == 0
    assert started[0][:2] == ["--port", "7999"] and started[0][2] == "--runs"
    assert RunFolder(f"{started[0][3]}/ra").read_record().strategy.name == "ra"
    assert cli.main(["demo", "--runs", str(evaluated_run.path)]) == 0   # a local folder passes as it is
    assert started[1] == ["--runs", str(evaluated_run.path)]
    assert cli.main(["demo", "--runs", "me/absent"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "me/absent" in err[0] and "HF_HUB_OFFLINE" in err[0]
