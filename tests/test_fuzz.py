"""The structure-aware fuzzer: reproducible cases that get past the CRCs, a harness that catches
crashes, hangs, memory blow-ups and stray exceptions, and a short campaign over the real codecs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_DIR

from neuralcodec import api
from neuralcodec.codecs.base import codec_class
from neuralcodec.container import ContainerError, pack, unpack
from neuralcodec.container.mutate import assemble, make_case, pack_block, parse_seed
from neuralcodec.datasets.paths import data_root
from neuralcodec.fuzz import (
    CORPUS_IMAGE,
    OTHER_CODECS,
    SAMPLES,
    Campaign,
    Tally,
    build_corpus,
    load_seeds,
    parser,
    run,
    run_case,
)

CORPUS_CACHE = REPO_DIR / "build" / "fuzz" / "corpus"


@pytest.fixture
def test_seeds():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    files = [api.encode_array(rgb, "test-raw", 2), api.encode_array(rgb, "test-zlib", 5)]
    return [parse_seed(d, f"f{i}") for i, d in enumerate(files)]


def test_assemble_rebuilds_the_writers_bytes(test_seeds):
    for seed in test_seeds:
        for version in (1, 2):
            want = pack(unpack(assemble(pack_block(seed.header), seed.segments, 2)), version)
            assert assemble(pack_block(seed.header), seed.segments, version) == want


def test_cases_are_reproducible_and_most_get_past_the_crcs(test_seeds):
    cases = [make_case(test_seeds, 7, i) for i in range(400)]
    assert cases[:50] == [make_case(test_seeds, 7, i) for i in range(50)]
    assert len({data for data, _ in cases}) > 300
    assert cases[0] != make_case(test_seeds, 8, 0)
    parsed = 0
    for data, _ in cases:
        try:
            unpack(data)
            parsed += 1
        except ContainerError:
            pass
    assert 0.4 * len(cases) < parsed < 0.95 * len(cases)


def test_run_case_classifies_outcomes(test_seeds):
    good = assemble(pack_block(test_seeds[0].header), test_seeds[0].segments)
    assert run_case(good) == ("ok", "")
    assert run_case(good[:-1]) == ("error", "ContainerError")
    zlib_seed = test_seeds[1]
    broken = [(n, b"\x00" + d[1:]) for n, d in zlib_seed.segments]  # not zlib data any more
    assert run_case(assemble(pack_block(zlib_seed.header), broken)) == ("error", "CodecError")


BOMB = textwrap.dedent(
    """
    import ctypes, time
    import numpy as np
    from neuralcodec.codecs.base import Codec, CodecError, Encoded, register

    @register
    class BombCodec(Codec):
        name, codec_id, modality, quality_range = "test-bomb", 249, "image", (1, 20)

        def encode(self, data, quality):
            return Encoded(self.name, {"shape": data.shape, "quality": quality}, {"s": b"1"})

        def decode(self, encoded):
            kind = encoded.header["quality"]
            if kind == 1:
                ctypes.string_at(0)
            if kind == 2:
                time.sleep(600)
            if kind == 7:
                return [][1]
            if kind == 8:
                return bytearray(1 << 36)
            h, w, _ = encoded.header["shape"]
            if h * w > 1 << 16:
                raise CodecError("too large for the bomb codec")
            return np.zeros((h, w, 3), np.uint8)
    """
)
BOMB_KINDS = {1: "crash: worker exit status -11", 2: "hang:", 7: "IndexError", 8: "memory:"}


def _bomb_cases(seeds, seed: int) -> list[int]:
    """One case number per misbehaviour the bomb codec has (found without decoding)."""
    wanted, chosen = set(BOMB_KINDS), []
    for index in range(5000):
        try:
            header = unpack(make_case(seeds, seed, index)[0]).header
        except ContainerError:
            continue
        if header["codec_name"] == "test-bomb" and header["quality"] in wanted:
            wanted.discard(header["quality"])
            chosen.append(index)
    assert not wanted
    return chosen


def test_harness_reports_crash_hang_memory_and_stray_exceptions(tmp_path):
    plugin = tmp_path / "bomb.py"
    plugin.write_text(BOMB)
    args = parser().parse_args(["--out", str(tmp_path), "--plugin", str(plugin)])
    args.timeout, args.workers = 3.0, 1
    exec(compile(BOMB, str(plugin), "exec"), {})
    paths = [tmp_path / "bomb.ncf"]
    paths[0].write_bytes(api.encode_array(np.zeros((2, 3, 3), np.uint8), "test-bomb", 10))
    (tmp_path / "corpus.json").write_text(json.dumps([str(p) for p in paths]))
    seeds = load_seeds(paths)
    chosen = _bomb_cases(seeds, args.seed)
    tally = Tally()
    campaign = Campaign(args, seeds, tally)
    try:
        campaign.run(0, 20)
        for index in sorted(chosen):
            campaign.run(index, index + 1)
    finally:
        campaign.close()
    kinds = " ".join(e["detail"] for e in tally.signatures.values())
    assert tally.counts["fail"] == 4, tally.signatures
    assert tally.counts["ok"] + tally.counts["error"] == 20
    for part in BOMB_KINDS.values():
        assert part in kinds
    written = sorted(p.name for p in (tmp_path / "failures").iterdir())
    assert written == sorted(f"case{i}.{ext}" for i in chosen for ext in ("ncf", "txt"))


# Every shipped .ncf codec of every modality and the two test codecs (they exercise the container
# paths).
SHORT_CAMPAIGN_CODECS = (
    "elic-int4,elic-int,elic,mlic,mbt-mean-int,mbt-mean,wavelet,inr,test-zlib,test-raw,"
    "octree,meshtrav,splat-vq,elic-ip"
)


def test_short_campaign_over_the_shipped_codecs(tmp_path):
    if not (data_root() / CORPUS_IMAGE).is_file():
        pytest.skip("training image for the fuzz corpus not found")
    out = tmp_path / "fuzz"
    argv = ["--out", str(out), "--corpus", str(CORPUS_CACHE), "--cases", "600"]
    argv += ["--plugin", str(Path(__file__).with_name("conftest.py"))]
    args = parser().parse_args([*argv, "--codecs", SHORT_CAMPAIGN_CODECS, "--timeout", "60"])
    state = run(args, log=lambda *a: None)
    counts = state["counts"]
    assert state["next"] == 600 and sum(counts.values()) == 600
    assert counts["fail"] == 0, state["signatures"]
    assert counts["ok"] > 10 and counts["error"] > 100
    labels = {Path(p).stem.split("_")[0] for p in json.loads((out / "corpus.json").read_text())}
    assert labels == set(SHORT_CAMPAIGN_CODECS.split(","))
    again = run(args, log=lambda *a: None)  # resumes: nothing left to do
    assert again["counts"] == counts


# ----------------------------------------------------------------------------- other modalities


def test_corpus_of_every_other_modality_decodes_to_its_header(tmp_path):
    """Point clouds, meshes, splat scenes and video get real corpus files (``--codecs meshtrav``
    once failed building its corpus: it was handed an image crop)."""
    paths = build_corpus(tmp_path, OTHER_CODECS, Path("no-image-needed"), log=lambda *a: None)
    made = {p.stem.split("_")[0] for p in paths}
    assert made == {n for n in OTHER_CODECS if api.weights_available(n)}
    assert {codec_class(n).modality for n in made} <= set(SAMPLES)
    for path in paths:
        data = path.read_bytes()
        assert run_case(data) == ("ok", ""), path.name
        decoded, info = api.decode_bytes(data)
        assert info["codec_name"] == path.stem.split("_")[0]
        if info["modality"] == "video":
            assert len(list(decoded)) == info["shape"][0] == 4
        elif info["modality"] == "mesh":
            assert (len(decoded.vertices), len(decoded.faces)) == tuple(info["shape"])
        else:
            assert 1 <= len(decoded) <= info["shape"][0]


REAL_DECODE = api.decode_bytes


def _decoded(codec: str):
    """A decode of the first corpus sample of ``codec`` and the file's bytes."""
    modality = codec_class(codec).modality
    sample = next(iter(SAMPLES[modality].values()))()
    options = {"gop": 3} if codec == "elic-ip" else None
    data = api.encode_array(sample, codec, 4, options, modality)
    return data, REAL_DECODE(data)[0]


def _with_decode(monkeypatch, data: bytes, decoded) -> tuple[str, str]:
    """``run_case(data)`` when the decoder returns ``decoded`` (and the file's own info)."""
    monkeypatch.setattr(api, "decode_bytes", lambda blob: (decoded, REAL_DECODE(blob)[1]))
    return run_case(data)


def test_run_case_checks_decoded_geometry_against_the_header(monkeypatch):
    data, cloud = _decoded("octree")
    cloud.xyz = cloud.xyz[:-1]
    assert _with_decode(monkeypatch, data, cloud)[1].startswith("shape: xyz is")
    data, mesh = _decoded("meshtrav")
    mesh.faces = mesh.faces.copy()
    mesh.faces[0, 0] = len(mesh.vertices)
    assert "faces index outside" in _with_decode(monkeypatch, data, mesh)[1]
    mesh.faces = mesh.faces[:-1]
    assert _with_decode(monkeypatch, data, mesh)[0] == "fail"
    data, scene = _decoded("splat-vq")
    scene.opacities = scene.opacities[1:]
    assert _with_decode(monkeypatch, data, scene)[1].startswith("shape: opacities is")
    scene.sh_degree = 3  # more SH coefficients than the header allows
    assert "SH degree 3" in _with_decode(monkeypatch, data, scene)[1]


def test_a_warning_during_a_decode_is_a_failure(monkeypatch):
    data, cloud = _decoded("octree")

    def noisy(blob):
        np.float32(np.float64(1e300))  # numpy: overflow encountered in cast
        return cloud, REAL_DECODE(blob)[1]

    monkeypatch.setattr(api, "decode_bytes", noisy)
    status, detail = run_case(data)
    assert status == "fail" and detail.startswith("warning: RuntimeWarning at test_fuzz.py")
    assert "overflow" in detail
    monkeypatch.setattr(api, "decode_bytes", REAL_DECODE)
    assert run_case(data) == ("ok", "")


@pytest.mark.skipif(not api.weights_available("elic-ip"), reason="elic-ip weights not shipped")
def test_run_case_reads_a_decoded_video_to_its_end(monkeypatch):
    data, source = _decoded("elic-ip")
    frames = list(source)
    assert _with_decode(monkeypatch, data, iter(frames)) == ("ok", "")
    assert "3 frames decoded, header says 4" in _with_decode(monkeypatch, data, iter(frames[:3]))[1]
    assert "5 frames decoded" in _with_decode(monkeypatch, data, iter(frames + frames[:1]))[1]
    small = [tuple(p[:-2] for p in f) for f in frames]
    assert "planes" in _with_decode(monkeypatch, data, iter(small))[1]

    def failing():
        yield frames[0]
        raise IndexError("decoder bug")

    status, detail = _with_decode(monkeypatch, data, failing())
    assert status == "fail" and detail.startswith("exception: IndexError")


def test_shape_damage_of_other_modalities_changes_their_counts():
    """Header shape damage of a mesh file keeps mostly two counts (V, F) and changes one, so the
    codec's own checks get exercised, not only the adapter's refusal of an image-like shape."""
    path = build_corpus(REPO_DIR / "build" / "fuzz" / "corpus", ("meshtrav",), Path("-"), print)[0]
    seeds = load_seeds([path])
    want = tuple(seeds[0].header["shape"])
    shapes = []
    for index in range(3000):
        data, steps = make_case(seeds, 5, index)
        if steps == f"from {seeds[0].label}; header shape":
            try:
                shapes.append(tuple(unpack(data).header["shape"]))
            except ContainerError:  # the container's own limits refuse huge counts
                shapes.append(None)
    assert len(shapes) > 20 and shapes.count(None) < len(shapes) // 2
    shapes = [s for s in shapes if s is not None]
    assert want not in shapes or shapes.count(want) < len(shapes) // 4
    assert sum(len(s) == 2 for s in shapes) > 0.6 * len(shapes)
    assert any(s in {(want[0] + 1, want[1]), (want[0], want[1] + 1)} for s in shapes)
