"""Serving the demo to strangers (``mergan.serving``): its own folder removed on every kind of stop (``python
demo_app.py``'s too, gradio's cache inside it), and a visitor's overlapping requests answered newest only."""
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import demo_app
from helpers import free_port
from mergan.serving import NewestOnly, remove_stale


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_the_servers_folder_is_removed_on_every_kind_of_stop(tmp_path, stop):
    """Every file the demo server writes is in one folder of its own: gone after SIGTERM or SIGHUP, and a killed
    server's is removed when the next one starts (``remove_stale``)."""
    root = Path(__file__).resolve().parent.parent
    code = ("import importlib.util, sys, time\n"
            "spec = importlib.util.spec_from_file_location('serving', 'mergan/serving.py')\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "with m.serving_folder(sys.argv[1]) as work:\n"
            "    (work / 'gradio').mkdir(); (work / 'gradio' / 'image.png').write_bytes(b'x')\n"
            "    print(work, flush=True); time.sleep(60)\n")
    server = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True)
    work = Path(server.stdout.readline().strip())
    assert work.parent == tmp_path and (work / "gradio" / "image.png").is_file()
    server.send_signal(getattr(signal, stop))
    server.wait(timeout=30)
    if stop == "SIGKILL":
        assert work.exists() and remove_stale(tmp_path) == [work]
    assert not work.exists()


def test_newest_only_counts_per_visitor_and_forgets_the_oldest():
    newest = NewestOnly(max_clients=2)
    a1 = newest.start("a")
    b1 = newest.start("b")
    a2 = newest.start("a")
    assert (a1, b1, a2) == (1, 1, 2)
    assert not newest.is_newest("a", a1) and newest.is_newest("a", a2) and newest.is_newest("b", b1)
    newest.start("c")                                    # three visitors: "b", the oldest, is forgotten
    assert newest.is_newest("b", b1) and newest.is_newest("a", a2)
    assert newest.start(None) == 0 and newest.is_newest(None, 0)


def test_an_older_overlapping_draw_does_not_overwrite_the_newer(tiny_runs, monkeypatch):
    """Two draws of one visitor that run at once (gradio's page sends a trigger that fires while the first is
    being sent beside it): the first, seed 5, finishes last. It must leave the page to the second, seed 6."""
    demo = demo_app.build_demo(tiny_runs)
    on_draw = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_draw")
    first_started, second_done = threading.Event(), threading.Event()
    compare = demo_app.compare

    def slow_for_seed_5(e, task, class_name, variant, n, seed):
        if seed == 5:
            first_started.set()
            assert second_done.wait(30)
        return compare(e, task, class_name, variant, n, seed)

    monkeypatch.setattr(demo_app, "compare", slow_for_seed_5)
    evt = types.SimpleNamespace(target=types.SimpleNamespace(elem_id="seed"))
    visitor = types.SimpleNamespace(session_hash="visitor")
    name = demo_app.discover(tiny_runs).experiments[0].name
    out = {}

    def draw(seed):
        out[seed] = on_draw(name, 1, "0", "ra", 4, seed, None, evt, visitor)

    first = threading.Thread(target=draw, args=(5,))
    first.start()
    assert first_started.wait(30)
    draw(6)
    second_done.set()
    first.join(30)
    assert "Seed **6**" in out[6][-1]
    assert all(u == {"__type__": "update"} for u in out[5]), "the older draw overwrote the page"


@pytest.mark.slow
def test_the_demo_server_removes_its_files_when_stopped(tiny_runs, tmp_path):
    """``python demo_app.py`` keeps every file it writes in a folder of its own, removed on SIGTERM."""
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "demo_app.py", "--runs", str(tiny_runs), "--port", str(port)],
                              cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        folders = list(tmp_path.glob(f"mergan-demo-{server.pid}-*"))
        assert len(folders) == 1 and (folders[0] / "gradio").is_dir()     # gradio's cache inside it
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.stderr.read()[-2000:]
        assert not folders[0].exists()
    finally:
        if server.poll() is None:
            server.kill()
