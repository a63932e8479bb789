"""The web demo through its HTTP API: a real ``codec demo`` server, driven by ``gradio_client``.

The server runs as a subprocess on a free loopback port and is stopped by its PID. It compresses
with a learned codec when one has weights here, else with the test-only lossless ``test-zlib``
codec (conftest.py), which the server then registers through a small boot line.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuralcodec import api
from neuralcodec.app import demo_core as core
from neuralcodec.datasets.images import read_image

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
KODAK = REPO_DIR.parent / "shared" / "data" / "kodak" / "kodim23.png"
READY_TIMEOUT_S = 90.0
BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import conftest; "
    "from neuralcodec.app.cli import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass
class DemoServer:
    url: str
    codec: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def learned_codec() -> str | None:
    """A registered .ncf image codec with weights, neither test-only nor slow (per-image fitting)."""
    names = [n for n in core.ncf_codecs() if not n.startswith("test-") and not core.slow_reason(n)]
    return names[0] if names else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"demo server not ready after {READY_TIMEOUT_S} s:\n{log.read_text()}")


def start_demo(workdir: Path, results: Path) -> DemoServer:
    """``codec demo`` on a free loopback port, ready to serve (stop it with ``.stop()``)."""
    port = free_port()
    codec = learned_codec()
    args = ["demo", "--port", str(port), "--results", str(results)]
    if codec is not None:
        cmd = [sys.executable, "-m", "neuralcodec.app.cli", *args]
    else:
        # The page opens on the first codec of its list (the one tests must use: gradio checks
        # API calls against the ranges the page shows).
        codec, cmd = core.ncf_codecs()[0], [sys.executable, "-c", BOOT, str(TESTS_DIR), *args]
    env = dict(
        os.environ, GRADIO_TEMP_DIR=str(workdir / "gradio"), GRADIO_ANALYTICS_ENABLED="False"
    )
    log = workdir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = DemoServer(f"http://127.0.0.1:{port}/", codec, proc, log)
    try:
        _wait_ready(server.url, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


def kodak_crop(path: Path, size: int = 256) -> Path:
    """A ``size`` x ``size`` crop of kodim23 saved as PNG (keeps the tests fast)."""
    if not KODAK.is_file():
        pytest.skip(f"Kodak image not found at {KODAK}")
    with Image.open(KODAK) as im:
        im.convert("RGB").crop((300, 100, 300 + size, 100 + size)).save(path)
    return path


def fake_results(root: Path) -> Path:
    """A results folder as ``codec bench rd`` leaves it (tiny plots, a BD-rate table)."""
    folder = root / "kodak"
    folder.mkdir(parents=True)
    for name in ("rd_psnr.png", "rd_msssim.png"):
        Image.new("RGB", (64, 48), (40, 80, 160)).save(folder / name)
    (folder / "bdrate.md").write_text(
        "| codec | BD-rate vs jpeg |\n|---|---|\n| mbt-mean | -31.5% |\n"
    )
    return root


# ----------------------------------------------------------------------------- no server


def test_closest_trial_bisects_to_the_nearest_rate():
    calls = []

    def trial_at(q):
        calls.append(q)
        return core.Trial("fake", q, b"", 0.1 * q, 0.0)

    assert core.closest_trial(trial_at, 1, 100, 3.04).quality == 30
    assert len(calls) <= 9  # two ends + about log2(100) bisection steps
    assert core.closest_trial(trial_at, 1, 100, 50.0).quality == 100
    assert core.closest_trial(trial_at, 1, 100, 0.01).quality == 1


def test_crop_box_stays_inside_the_image():
    assert core.crop_box((100, 200, 3), 0.5, 0.5, 40) == (30, 80, 70, 120)
    assert core.crop_box((100, 200, 3), 1.0, 0.0, 40) == (0, 160, 40, 200)
    assert core.crop_box((10, 20, 3), 0.5, 0.5, 64) == (0, 5, 10, 15)
    crop = core.zoomed_crop(np.zeros((100, 200, 3), np.uint8), (0, 0, 32, 32), display=256)
    assert crop.shape == (256, 256, 3)


def test_benchmarks_missing_and_present(tmp_path):
    assert core.load_benchmarks(tmp_path / "nothing").folder is None
    view = core.load_benchmarks(fake_results(tmp_path / "results"))
    assert view.folder.name == "kodak" and view.psnr_plot and "mbt-mean" in view.bdrate


# ----------------------------------------------------------------------------- against a server


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("gradio_client")
    work = tmp_path_factory.mktemp("demo-api")
    server = start_demo(work, fake_results(work / "results"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(demo):
    from gradio_client import Client

    return Client(demo.url, verbose=False, download_files=str(Path(demo.log).parent / "downloads"))


def _compress(client, demo, image: Path, mode: str = "quality level", quality: int | None = None):
    from gradio_client import handle_file

    lo, hi = core.quality_range(demo.codec)
    q = (lo + hi) // 2 if quality is None else quality
    return client.predict(
        handle_file(str(image)), demo.codec, mode, q, 0.5, 50, 50, 96, api_name="/compress"
    )


@pytest.mark.server
def test_compress_reports_bpp_psnr_and_a_decodable_ncf(client, demo, tmp_path):
    image = kodak_crop(tmp_path / "kodim23-crop.png")
    out = _compress(client, demo, image)
    summary, table, ncf_path = out[1], out[2], out[3]
    assert "bpp" in summary and "PSNR" in summary
    rows = {r[0]: r for r in table["data"]}
    ours = rows[f"{demo.codec} (.ncf)"]
    bpp, psnr = float(ours[3]), float(ours[4])
    data = Path(ncf_path).read_bytes()
    assert bpp == pytest.approx(8 * len(data) / (256 * 256), abs=1e-3)
    decoded, info = api.decode_bytes(data)
    original = read_image(image)
    assert decoded.shape == original.shape and info["codec_name"] == demo.codec
    expected = core.psnr_rgb(original, decoded)
    assert psnr == pytest.approx(expected, abs=0.01)
    assert psnr > (99.0 if demo.codec.startswith("test-") else 25.0)
    for anchor in ("jpeg", "webp", "avif"):
        if core.anchor_status()[anchor] is None:
            assert float(rows[anchor][3]) > 0 and float(rows[anchor][4]) > 15


@pytest.mark.server
def test_decompress_returns_png_and_header(client, demo, tmp_path):
    """A file of the server's own codec decodes in the page to the same pixels as here."""
    from gradio_client import handle_file

    image = kodak_crop(tmp_path / "k.png", size=64)
    original = read_image(image)
    ncf = tmp_path / "k.ncf"
    lo, hi = core.quality_range(demo.codec)
    ncf.write_bytes(api.encode_array(original, demo.codec, (lo + hi) // 2))
    _image, png, header, status = client.predict(handle_file(str(ncf)), api_name="/decompress")
    assert header["codec_name"] == demo.codec and header["shape"] == [64, 64, 3]
    assert "64×64" in status
    assert np.array_equal(read_image(png), api.decode_bytes(ncf.read_bytes())[0])


@pytest.mark.server
@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_decompress_corrupted_file_gives_a_clear_message(client, demo, tmp_path, damage):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    data = bytearray(api.encode_array(np.full((32, 32, 3), 90, np.uint8), demo.codec, 1))
    if damage == "flip":
        data[len(data) // 2] ^= 0x5A
    elif damage == "truncate":
        data = data[: len(data) - 7]
    else:
        data = bytearray(b"this is not an ncf file at all" * 4)
    bad = tmp_path / f"{damage}.ncf"
    bad.write_bytes(bytes(data))
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(bad)), api_name="/decompress")
    message = str(err.value)
    assert "Traceback" not in message and len(message) < 400
    assert any(
        word in message.lower() for word in ("crc", "truncated", "magic", "not an .ncf", "corrupt")
    )


@pytest.mark.server
def test_compress_refuses_unreadable_and_oversized_images(client, demo, tmp_path):
    from gradio_client.exceptions import AppError

    not_image = tmp_path / "notes.png"
    not_image.write_bytes(b"plain text, not pixels\n" * 10)
    with pytest.raises(AppError, match="cannot read"):
        _compress(client, demo, not_image)
    too_big = tmp_path / "big.png"
    with open(too_big, "wb") as f:
        f.truncate(65 * 2**20)  # sparse: over the 64 MB limit the server advertises
    with pytest.raises(ValueError, match="maximum file size"):
        _compress(client, demo, too_big)
    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 6400)).save(huge, optimize=False)  # 51.2 Mpixel, a small file
    with pytest.raises(AppError, match="limit"):
        _compress(client, demo, huge)


@pytest.mark.server
def test_benchmarks_tab_serves_the_results_folder(client):
    psnr, msssim, table, source = client.predict(api_name="/benchmarks")
    assert "mbt-mean" in table and "-31.5%" in table
    assert "kodak" in source and psnr and msssim


# ----------------------------------------------------------------------------- video and 3D tabs

SHARED = REPO_DIR.parent / "shared" / "data"
BUNNY = SHARED / "3d" / "meshes" / "stanford_bunny" / "bun_zipper_res4.ply"


def _tiny_y4m(path: Path, frames: int = 3, w: int = 64, h: int = 48) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
        for t in range(frames):
            y = ((xx * 3 + yy * 2 + 4 * t) % 256).astype(np.uint8)
            y = np.clip(y.astype(int) + rng.integers(-3, 4, y.shape), 0, 255).astype(np.uint8)
            u = np.full((h // 2, w // 2), 120, np.uint8)
            v = np.full((h // 2, w // 2), 136, np.uint8)
            f.write(b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes())
    return path


def test_video_tab_work_codes_and_previews_a_clip(tmp_path):
    from neuralcodec.app import demo_media as media
    from neuralcodec.codecs.base import weights_available

    if not weights_available(api.default_codec("video")):
        pytest.skip("no video codec weights here")
    clip = _tiny_y4m(tmp_path / "clip.y4m")
    r = media.run_video(clip, 3, 2, tmp_path / "out")
    assert "bpp" in r.summary and "PSNR" in r.summary
    assert Path(r.original).suffix == ".mp4" and Path(r.decoded).stat().st_size > 0
    decoded, info = api.decode_bytes(r.ncf.read_bytes())
    assert info["codec_name"] == api.default_codec("video") and len(list(decoded)) == 2
    with pytest.raises(ValueError, match="upload a file first"):
        media.run_video(None, 3, 2, tmp_path)


def test_3d_tab_work_codes_a_mesh_and_refuses_junk(tmp_path):
    from neuralcodec.app import demo_media as media

    if not BUNNY.is_file():
        pytest.skip("shared meshes not found")
    r = media.run_3d(BUNNY, 4, tmp_path / "out")
    assert "D1 PSNR" in r.summary and r.ncf.is_file()
    assert r.viewer.suffix == ".ply" and r.decoded_file == r.viewer and r.viewer.is_file()
    # orbit views of the original and the decoded mesh: same cameras, nearly the same pixels
    assert r.original.shape == r.decoded.shape == (256, 4 * 256, 3)
    drawn = r.original != 250
    assert 0.02 < drawn.mean() < 0.9  # the mesh is in view, not filling it
    assert np.abs(r.original.astype(int) - r.decoded.astype(int)).mean() < 8
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(ValueError):
        media.run_3d(junk, 4, tmp_path / "out")
