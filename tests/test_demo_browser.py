"""The web demo in a real browser: headless Debian Chromium driven by Playwright.

The page is loaded with every request off this machine aborted and recorded, so the test also
checks that the demo works offline and fetches nothing from the network.
"""

import os
from pathlib import Path

import pytest
from test_demo_api import fake_results, kodak_crop, start_demo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LOCAL_PREFIXES = ("http://127.0.0.1", "data:", "blob:", "about:")
TIMEOUT_MS = 45_000

pytestmark = [pytest.mark.browser, pytest.mark.server]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (scripts/sysdeps.sh installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api")
    work = tmp_path_factory.mktemp("demo-browser")
    server = start_demo(work, fake_results(work / "results"))
    yield server
    server.stop()


@pytest.fixture
def page(demo):
    from playwright.sync_api import sync_playwright

    external: list[str] = []

    def only_local(route):
        url = route.request.url
        if url.startswith(LOCAL_PREFIXES):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route("**/*", only_local)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(demo.url)
            page.wait_for_selector("#compress-button")
            yield page
        finally:
            browser.close()
    assert external == [], f"the page tried to fetch from the network: {external}"


def test_compress_shows_bpp_and_psnr(page, demo, tmp_path):
    from playwright.sync_api import expect

    image = kodak_crop(tmp_path / "kodim23-crop.png")
    page.locator("#image-upload input[type=file]").set_input_files(str(image))
    page.get_by_text("256×256 RGB, 8-bit").wait_for()
    page.get_by_label("Codec (.ncf)").click()
    page.get_by_role("option", name=demo.codec, exact=False).first.click()
    page.locator("#compress-button").click()
    summary = page.locator("#summary h3")  # the result heading, not the progress line
    expect(summary).to_contain_text("PSNR", timeout=TIMEOUT_MS)
    text = summary.inner_text()
    assert "bpp" in text and "PSNR" in text and demo.codec in text
    table = page.locator("#comparison").inner_text()
    assert "jpeg" in table and "webp" in table
    page.screenshot(path=str(tmp_path / "demo-compress.png"), full_page=True)
    assert (tmp_path / "demo-compress.png").stat().st_size > 10_000


def test_corrupted_ncf_gives_a_message_in_the_page(page, tmp_path):
    bad = tmp_path / "broken.ncf"
    bad.write_bytes(b"definitely not an ncf container" * 8)
    page.get_by_role("tab", name="Decompress").click()
    page.locator("#ncf-upload input[type=file]").set_input_files(str(bad))
    page.locator("#decompress-button").click()
    page.get_by_text("bad magic bytes").first.wait_for()
    assert "Traceback" not in page.content()


def test_benchmarks_tab_shows_the_bd_rate_table(page):
    page.get_by_role("tab", name="Benchmarks").click()
    page.locator("#bdrate").get_by_text("-31.5%").wait_for()
    assert "kodak" in page.locator("#bench-source").inner_text()


SPLAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "3d" / "gaussian_splats"
SHOTS = Path(os.environ["DEMO_SCREENSHOTS"]) if os.environ.get("DEMO_SCREENSHOTS") else None


def test_3d_tab_compresses_a_mesh_in_the_page(page, tmp_path):
    mesh = SPLAT.parent / "meshes" / "stanford_bunny" / "bun_zipper_res4.ply"
    if not mesh.is_file():
        pytest.skip("shared meshes not found")
    page.get_by_role("tab", name="3D").click()
    page.locator("#three-d-upload input[type=file]").set_input_files(str(mesh))
    page.locator("#three-d-button").click()
    page.wait_for_function(
        "document.querySelector('#three-d-summary').innerText.includes('D1 PSNR')"
    )
    text = page.locator("#three-d-summary").inner_text()
    assert "bytes" in text and "dB" in text
    page.wait_for_function("document.querySelectorAll(\"img[src*='/file=']\").length >= 2")
    # the original's and the decoded mesh's orbit views
    assert page.locator("img[src*='/file=']").count() >= 2
    downloads = page.locator("#three-d-downloads").inner_text().replace("\n", "")
    assert ".ncf" in downloads and "decoded.ply" in downloads
    page.screenshot(path=str(SHOTS / "3d-mesh.png") if SHOTS else str(tmp_path / "3d-tab.png"))


def test_3d_tab_compresses_a_splat_scene_and_shows_both_renders(page, tmp_path):
    scene = SPLAT / "donut_mipsplatting_fused.ply"
    if not scene.is_file():
        pytest.skip("shared splat scenes not found")
    page.get_by_role("tab", name="3D").click()
    page.locator("#three-d-upload input[type=file]").set_input_files(str(scene))
    page.locator("#three-d-button").click()
    page.wait_for_function(
        "document.querySelector('#three-d-summary').innerText.includes('compressed.ply')",
        timeout=240_000,  # importance renders and encoding of a 45k-splat scene on 2 cores
    )
    text = page.locator("#three-d-summary").inner_text()
    assert "splat-vq" in text and "bytes/splat" in text and "dB" in text
    renders = page.locator("img[src*='/file=']")
    assert renders.count() >= 2  # the original's and the decoded scene's orbit views
    downloads = page.locator("#three-d-downloads").inner_text().replace("\n", "")
    assert "scene.ncf" in downloads and "scene-decoded.ply" in downloads
    page.screenshot(path=str(SHOTS / "3d-splat.png") if SHOTS else str(tmp_path / "3d-splat.png"))


def test_video_tab_compresses_a_clip_in_the_page(page, tmp_path):
    from test_demo_api import _tiny_y4m

    from neuralcodec import api
    from neuralcodec.codecs.base import weights_available

    if not weights_available(api.default_codec("video")):
        pytest.skip("no video codec weights here")
    clip = _tiny_y4m(tmp_path / "clip.y4m", frames=3)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-upload input[type=file]").set_input_files(str(clip))
    page.locator("#video-button").click()
    page.wait_for_function("document.querySelector('#video-summary').innerText.includes('bpp')")
    text = page.locator("#video-summary").inner_text()
    assert "PSNR" in text and "frames" in text
    page.screenshot(path=str(SHOTS / "video-tab.png") if SHOTS else str(tmp_path / "video-tab.png"))
