"""The demo page in a real browser: Debian's Chromium driven by Playwright, the app served in-process, offline.

Needs ``apt-get install chromium`` and ``pip install playwright pytest-playwright`` (never ``playwright
install``: it downloads a browser). Without them the test is skipped, except under CI, where it fails.
"""
import io
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mergan.views import MAX_SEED

CHROMIUM = "/usr/bin/chromium"
FIRST_WAIT_MS = 30_000      # app load and first generation; Playwright's default 5 s is too short on 2 cores
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 # No DNS but for the app: otherwise Chromium still looks up Google hosts.
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"]


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI; .ci/run must install it (see tests/test_browser.py)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def browser_ready():
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium ({CHROMIUM}, apt-get install chromium)")
    try:
        import pytest_playwright  # noqa: F401
    except ImportError:
        _missing("pytest-playwright (pip install playwright pytest-playwright)")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at the system Chromium (it has no option for a path)."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def app_url(tiny_runs):
    import demo_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = demo_app.build_demo(tiny_runs, live_updates=16)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, share=False,
                quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def image_pixels(page, elem_id: str) -> np.ndarray:
    """The pixels the page shows in an image component, fetched from its img src."""
    from PIL import Image

    src = page.locator(f"#{elem_id} img").first.get_attribute("src")
    body = page.request.get(src).body() if not src.startswith("data:") else None
    if body is None:
        import base64
        body = base64.b64decode(src.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(body)))


def pick(page, elem_id: str, option: str):
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


@pytest.mark.slow
def test_side_by_side_and_timeline_in_chromium(browser_ready, app_url, tiny_runs, request):
    import demo_app

    page = request.getfixturevalue("page")   # pytest-playwright's, only once the browser is known to exist
    page.set_default_timeout(FIRST_WAIT_MS)
    page.goto(app_url)
    page.locator("#task").wait_for()

    # Useful before any click: the example comparison is already there.
    page.locator("#sft-image img").wait_for()
    page.locator("#mergan-image img").wait_for()
    first_src = page.locator("#mergan-image img").get_attribute("src")

    # After task 1, digit 2 is marked as not learned yet.
    pick(page, "task", "after task 1 (learned 1)")
    page.locator("#class input").click()
    page.get_by_role("option", name="2 (not learned yet after task 1)").wait_for()
    page.get_by_role("option", name="0", exact=True).click()
    page.locator("#advanced").get_by_text("Samples and seed").click()   # folded: samples, seed, Generate
    # Typed while the class change's redraw may still be pending: what the visitor types is kept and used.
    page.locator("#seed input").fill("5")
    page.locator("#generate").click()
    page.locator("#info").get_by_text("Seed 5").wait_for()
    page.locator("#info").get_by_text("after task 1 (learned 1)").wait_for()
    assert page.locator("#seed input").input_value() == "5"
    page.wait_for_function(
        "src => { const i = document.querySelector('#mergan-image img');"
        " return i && i.src !== src && i.complete && i.naturalWidth > 0; }",
        arg=first_src)
    sft, mergan = image_pixels(page, "sft-image"), image_pixels(page, "mergan-image")
    assert sft.shape == mergan.shape and sft.shape[0] >= 64       # upscaled: 2 rows of 32x32 digits at least x2
    assert not np.array_equal(sft, mergan), "SFT and MeRGAN-RA drew identical images from the same noise"
    want_sft, want_ra, _ = demo_app.side_by_side(demo_app.discover(tiny_runs).experiments[0], 1, "0", "ra", 16, 5)
    assert np.array_equal(sft, np.asarray(want_sft)) and np.array_equal(mergan, np.asarray(want_ra))

    # The dice writes a new seed into the box and draws with it.
    page.locator("#random-seed").click()
    page.wait_for_function("() => document.querySelector('#seed input').value !== '5'")
    drawn = page.locator("#seed input").input_value()
    page.locator("#info").get_by_text(f"Seed {drawn}:").wait_for()

    shots = Path(tempfile.mkdtemp(prefix="mergan-demo-shots-"))
    page.screenshot(path=shots / "side_by_side.png", full_page=True)

    page.locator("#tab-timeline-button").click()
    page.locator("#timeline-image img").wait_for()          # the example timeline, shown at load
    before = page.locator("#timeline-image img").get_attribute("src")
    pick(page, "timeline-class", "1")
    page.locator("#timeline-generate").click()
    page.wait_for_function(
        "src => { const i = document.querySelector('#timeline-image img');"
        " return i && i.src !== src && i.complete && i.naturalWidth > 0; }", arg=before)
    page.locator("#timeline-info").get_by_text("learned in task 1").wait_for()
    timeline = image_pixels(page, "timeline-image")
    assert timeline.shape[0] > 4 * 60 and timeline.std() > 0                # four strategy rows, not blank
    page.screenshot(path=shots / "timeline.png", full_page=True)

    # A class not learned yet is explained in the page, not a stack trace.
    page.locator("#tab-side-button").click()
    pick(page, "class", "2 (not learned yet after task 1)")   # a control change draws again by itself
    page.locator("#info").get_by_text("learned in task 2").wait_for()

    for name in ("side_by_side", "timeline"):
        shutil.copy(shots / f"{name}.png", f"/tmp/demo_screenshot{'' if name == 'side_by_side' else '_' + name}.png")


def test_random_seed_and_side_by_side_through_the_api(app_url):
    """The real queue, no browser: the dice endpoint draws a seed, which the side-by-side names and reproduces."""
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    name = "mnist: classes 0, 1, 2"
    seeds = {client.predict(api_name="/random_seed") for _ in range(3)}
    assert all(isinstance(s, (int, float)) and 0 <= s <= MAX_SEED for s in seeds) and len(seeds) > 1
    seed = int(seeds.pop())
    _, sft, _, ra, info = client.predict(name, 2, "0", "ra", 4, seed, api_name="/side_by_side")
    assert f"Seed **{seed}**" in info and Path(sft).is_file() and Path(ra).is_file()
    again = client.predict(name, 2, "0", "ra", 4, seed, api_name="/side_by_side")
    assert f"Seed **{seed}**" in again[4] and Path(again[3]).read_bytes() == Path(ra).read_bytes()
    *_, info = client.predict(name, 0, "2", "ra", 4, 0, api_name="/side_by_side")
    assert "learned in task 2" in info
    # a seed out of range: the app's own one line, no error from the server
    *_, info = client.predict(name, 2, "0", "ra", 4, -3, api_name="/side_by_side")
    assert "Seed must be between 0 and" in info


@pytest.mark.parametrize("size", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_verdicts_on_the_first_screen_and_updated_by_every_control(browser_ready, app_url, request, size):
    """A first-time visitor, at desktop and phone size: both panels' verdicts and pictures on the first screen, no
    label over the pictures, and a control change (the class) redraws and re-scores without pressing Generate."""
    page = request.getfixturevalue("page")
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.set_default_timeout(FIRST_WAIT_MS)
    page.goto(app_url)
    page.locator("#mergan-image img").wait_for()
    for panel in ("sft", "mergan"):
        box = page.locator(f"#{panel}-image img").bounding_box()
        assert box["y"] < size[1] * (1.0 if panel == "sft" or size[0] > 500 else 1.25), (panel, box)
        for label in page.locator(f"#{panel}-image label").all():             # nothing drawn over the digits
            lb = label.bounding_box() if label.is_visible() else None
            assert lb is None or lb["y"] + lb["height"] <= box["y"] or lb["y"] >= box["y"] + box["height"], lb
    before = page.locator("#mergan-verdict").inner_text()
    assert before.startswith("MeRGAN-RA")
    src = page.locator("#mergan-image img").get_attribute("src")
    pick(page, "class", "1")
    page.wait_for_function(
        "src => { const i = document.querySelector('#mergan-image img');"
        " return i && i.src !== src && i.complete && i.naturalWidth > 0; }", arg=src)
    page.wait_for_function("t => document.querySelector('#mergan-verdict').innerText !== t", arg=before)
    # an example is one click away and answers with its own verdicts
    after = page.locator("#mergan-verdict").inner_text()
    page.locator("#examples").get_by_text("Forgetting: class 0 after task 2").click()
    page.wait_for_function("t => document.querySelector('#mergan-verdict').innerText !== t", arg=after)
    assert "0" in page.locator("#mergan-verdict").inner_text()


@pytest.mark.slow
def test_live_tab_streams_a_lesson_to_the_end(browser_ready, app_url, request):
    """Teach it a new digit: SFT's and RA's grids arrive several times while they learn, then the lesson ends."""
    page = request.getfixturevalue("page")
    page.set_default_timeout(FIRST_WAIT_MS)
    page.goto(app_url)
    page.locator("#tab-live-button").click()
    pick(page, "live-class", "5")
    page.locator("#live-go").click()
    page.locator("#live-status").get_by_text("Learning").wait_for()
    first = page.locator("#live-ra img").get_attribute("src")
    page.locator("#live-status").get_by_text("Done").wait_for(timeout=120_000)
    assert page.locator("#live-ra img").get_attribute("src") != first     # streamed: a later grid replaced it
    assert "16" in page.locator("#live-status").inner_text()
    assert image_pixels(page, "live-sft").shape[0] > 4 * 32
