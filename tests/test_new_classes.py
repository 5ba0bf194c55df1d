"""A finished run learns categories that were not there when it started, and reads back whatever it wrote."""
import json

import pytest
import torch
from PIL import Image

import train
from mergan.checkpoints import load_generator, read_metadata
from mergan.models import build_critic, build_generator, grow_state, model_config
from mergan.runs import RunFolder
from test_robustness import one_error_line

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")   # see conftest

QUICK = ["--dataset", "folder", "--dim", "2", "--iters", "1", "--batch-size", "4", "--critic-iters", "1"]


def categories(root, names):
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("RGB", (36, 36), (20 * k % 256, 90 + 10 * i, 255 - 20 * k % 256)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("arch, channels, dim", [("dcgan32", 1, 4), ("resnet64", 3, 2)])
def test_label_tables_grow_and_what_was_learned_is_unchanged(arch, channels, dim):
    torch.manual_seed(0)
    small, large = (model_config(arch, channels=channels, n_classes=n, dim=dim) for n in (10, 11))
    G10, D10 = build_generator(small), build_critic(small)
    for p in [*G10.parameters(), *D10.parameters()]:   # trained weights, not the initialisation
        p.data.add_(torch.randn_like(p) * 0.1)
    G11, D11 = build_generator(large), build_critic(large)
    G11.load_state_dict(grow_state(G10.state_dict(), G11.state_dict(), 1))
    D11.load_state_dict(grow_state(D10.state_dict(), D11.state_dict(), 1))
    with pytest.raises(ValueError, match="fc.weight"):   # another network is not grown into this one
        grow_state({**G10.state_dict(), "fc.weight": torch.zeros(3, 3)}, G11.state_dict(), 1)
    z, y = torch.randn(20, 128), torch.arange(20) % 10
    with torch.no_grad():
        torch.testing.assert_close(G11(z, y, groups=2), G10(z, y, groups=2), rtol=0, atol=1e-5)  # old labels: same
        x = G10(z, y)
        (c10, l10), (c11, l11) = D10(x), D11(x)
        torch.testing.assert_close(c11, c10, rtol=0, atol=1e-5)
        torch.testing.assert_close(l11[:, :10], l10, rtol=0, atol=1e-5)
        assert l11.shape == (20, 11) and G11(z[:4], torch.full((4,), 10)).shape[0] == 4   # the new label draws
    if arch == "dcgan32":   # the new label's conditional batch norm starts as plain batch norm
        assert all((n.scale[10] == 1).all() and (n.offset[10] == 0).all() for n in G11.norms)


def test_ewc_state_grows_with_the_generator():
    from mergan.strategies import EWC

    small, large = (model_config("dcgan32", channels=1, n_classes=n, dim=2) for n in (10, 11))
    G10, G11 = build_generator(small), build_generator(large)
    ewc = EWC(1.0)
    ewc.fisher = {k: torch.rand_like(p) for k, p in G10.named_parameters()}
    ewc.anchor = {k: p.detach().clone() for k, p in G10.named_parameters()}
    before = {k: v.clone() for k, v in ewc.fisher.items()}
    ewc.grow(G11, 1)
    assert {k: v.shape for k, v in ewc.fisher.items()} == {k: p.shape for k, p in G11.named_parameters()}
    scale = "norms.0.scale"
    assert torch.equal(ewc.fisher[scale][:10], before[scale]) and (ewc.fisher[scale][10] == 0).all()
    assert float(ewc.penalty(G11).detach()) >= 0


def test_a_ten_category_run_learns_an_eleventh(tmp_path, capsys):
    """Ten folders on day one, an eleventh added later: the same command extends the finished run (the new
    category after the old ones, though it sorts among them), and every file reads back."""
    data = categories(tmp_path / "data", [f"c{k}" for k in range(10)])
    out = tmp_path / "run"
    args = ["--strategy", "ra", "--out", str(out), "--data-dir", str(data), *QUICK]
    assert train.main(args) == 0
    record = RunFolder(out).read_record()
    assert record.config.model["n_classes"] == 10
    categories(data, ["c10"])                          # alphabetically between c1 and c2
    assert train.main(args) == 0
    assert "done: 11 task(s)" in capsys.readouterr().out
    again = RunFolder(out).read_record()
    assert again.run_id == record.run_id and again.config.model == record.config.model   # the same run
    assert again.config.classes == [*record.config.classes, "c10"]
    G, meta = load_generator(out / "task_10.safetensors")
    assert meta.classes[-1] == "c10" and meta.model["n_classes"] == 11 and G.n_classes == 11
    assert [RunFolder(out).read_task(t, again).task for t in range(11)] == list(range(11))
    assert train.main(args) == 0                       # nothing left to train: it reads all of it back
    assert "already has all 11 tasks" in capsys.readouterr().out


def test_more_categories_than_a_run_can_learn_one_line(tmp_path, capsys):
    data = tmp_path / "many"
    for k in range(1001):
        (data / f"k{k:04d}").mkdir(parents=True)
        Image.new("L", (4, 4)).save(data / f"k{k:04d}" / "a.png")
    assert train.main(["--strategy", "sft", "--out", str(tmp_path / "run"), "--data-dir", str(data), *QUICK]) == 1
    one_error_line(capsys, "1001 classes", "at most 1000", "--classes")
    assert not (tmp_path / "run").exists()


def test_a_run_reads_back_what_it_wrote(tmp_path, capsys):
    """A class name and a data path of every length a file system allows: refused in one line if a record
    cannot hold it, else written and read back."""
    deep = tmp_path.joinpath(*(["d" * 200] * 5))       # a data folder path over 1,000 characters
    categories(deep, ["a", "b"])
    out = tmp_path / "run"
    assert train.main(["--strategy", "sft", "--out", str(out), "--data-dir", str(deep), *QUICK]) == 0
    record = RunFolder(out).read_record()
    assert record.config.data_source.location == str(deep.resolve())
    assert read_metadata(out / "task_01.safetensors").config.data_source == record.config.data_source
    assert json.loads((out / "config.json").read_text())["run_id"] == record.run_id
    long = categories(tmp_path / "long", ["n" * 201, "b"])
    assert train.main(["--strategy", "sft", "--out", str(tmp_path / "r2"), "--data-dir", str(long), *QUICK]) == 1
    one_error_line(capsys, "longer than 200 characters", "rename it")
