"""The benchmark script runs for every strategy and prints one consistent row each."""
import pytest

from mergan import bench
from mergan.strategies import STRATEGIES


@pytest.fixture(autouse=True)
def small_peak_probe(monkeypatch):
    """The matmul peak from 512x512 products: the full probe's 2.5 s buys nothing that these tests check (the
    share is a few percent at width 4)."""
    probe = bench.matmul_flops.__wrapped__
    monkeypatch.setattr(bench, "matmul_flops", lambda device: probe(device, n=512))


@pytest.mark.slow
def test_bench_prints_a_consistent_row_per_strategy(capsys):
    bench.main(["--dim", "4", "--batch-size", "16", "--iters", "1", "--repeats", "2", "--warmup", "0", "--cpu",
                "--strategies", ",".join(STRATEGIES)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:6] == ["strategy", "ms/iter", "min", "max", "img/s", "GFLOP/iter"]
    rows = {r[0]: [float(v.rstrip("%")) for v in r[1:]] for r in (line.split() for line in lines[3:])}
    assert sorted(rows) == sorted(STRATEGIES)
    for med, lo, hi, images, gflop, rate, share in rows.values():
        assert 0 < lo <= med <= hi
        assert images == pytest.approx(16 * (1 + 5) / (med / 1e3), rel=0.01, abs=1)   # 5 critic steps per update
        assert rate == pytest.approx(gflop / (med / 1e3), rel=0.05, abs=0.1) and 0 < share
    flops = {s: row[4] for s, row in rows.items()}
    # the base game costs the same whatever the labels (joint) or an elementwise penalty (ewc); replays add to it
    assert flops["joint"] == flops["sft"] == flops["ewc"] > 0
    assert flops["jtr"] > flops["dgr"] > flops["ra"] > flops["sft"]


@pytest.mark.slow
def test_quick_preset_row_and_the_paper_cost_line(capsys):
    bench.main(["--preset", "quick", "--dim", "4", "--batch-size", "16", "--iters", "4", "--repeats", "1", "--warmup",
                "0", "--cpu", "--strategies", "ra"])
    out = capsys.readouterr().out.splitlines()
    assert "preset quick: ns-r1" in out[1] and "1 critic step(s)" in out[1] and "penalty every 4" in out[1]
    med, lo, hi, images = (float(v) for v in out[3].split()[1:5])
    assert images == pytest.approx(16 * 2 / (med / 1e3), rel=0.01, abs=1)   # one critic batch per update
    assert out[4].startswith("paper preset, RA at task 4:") and "minutes per MNIST task of 4000 updates" in out[4]


@pytest.mark.slow
def test_time_to_quality_trains_scores_and_says_what_was_reached(tmp_path):
    lines = bench.time_to_quality([1], eval_samples=16, cpu=True, out_root=str(tmp_path))
    assert lines[0].startswith("RA,     1 updates per task:") and "cnn32" in lines[0] and "mlp32" in lines[0]
    assert (tmp_path / "ra-1" / "task_04.safetensors").is_file()
    assert not (tmp_path / "ra-1" / "metrics.json").exists()   # accuracy only: no variety, FID or metrics file
    # one update per task draws no digits: neither goal is reached, and the report says so
    assert lines[1:] == ["time to 90% (both evaluators): not reached at these budgets",
                         "time to 96% (both evaluators): not reached at these budgets"]
