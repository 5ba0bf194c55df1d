"""The benchmark script runs for every strategy and prints one row each."""
from mergan import bench
from mergan.strategies import STRATEGIES


def test_bench_prints_a_row_per_strategy(capsys):
    bench.main(["--dim", "4", "--iters", "1", "--repeats", "1", "--warmup", "0", "--cpu",
                "--strategies", ",".join(STRATEGIES)])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    assert sorted(r[0] for r in rows) == sorted(STRATEGIES)
    assert all(float(r[1]) > 0 and float(r[5]) > 0 for r in rows)  # ms/iter and GFLOP/iter
