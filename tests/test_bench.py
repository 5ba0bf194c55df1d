"""The benchmark script runs for every strategy and prints one consistent row each."""
import pytest

from mergan import bench
from mergan.strategies import STRATEGIES


def test_bench_prints_a_consistent_row_per_strategy(capsys):
    bench.main(["--dim", "4", "--iters", "1", "--repeats", "2", "--warmup", "0", "--cpu",
                "--strategies", ",".join(STRATEGIES)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:6] == ["strategy", "ms/iter", "min", "max", "img/s", "GFLOP/iter"]
    rows = {r[0]: [float(v.rstrip("%")) for v in r[1:]] for r in (line.split() for line in lines[3:])}
    assert sorted(rows) == sorted(STRATEGIES)
    for med, lo, hi, images, gflop, rate, share in rows.values():
        assert 0 < lo <= med <= hi
        assert images == pytest.approx(64 * (1 + 5) / (med / 1e3), rel=0.01, abs=1)   # paper batch, 5 critic steps
        assert rate == pytest.approx(gflop / (med / 1e3), rel=0.05, abs=0.1) and 0 < share
    flops = {s: row[4] for s, row in rows.items()}
    # the base game costs the same whatever the labels (joint) or an elementwise penalty (ewc); replays add to it
    assert flops["joint"] == flops["sft"] == flops["ewc"] > 0
    assert flops["jtr"] > flops["dgr"] > flops["ra"] > flops["sft"]
