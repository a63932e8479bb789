"""``codec bench speed``: our codecs and their CompressAI counterparts, timed on the same image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuralcodec.bench import speed
from neuralcodec.codecs.learned_image import manifest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [m["name"] for m in manifest()["models"]]


@pytest.mark.parametrize("name", sorted(set(SHIPPED) & set(speed.COMPRESSAI_COUNTERPARTS)))
def test_speed_times_a_shipped_codec_next_to_its_compressai_counterpart(tmp_path, name, capsys):
    pytest.importorskip("compressai")
    out = tmp_path / "speed.json"
    argv = ["--image", str(ROOT / "examples" / "sample.png"), "--codecs", name, "--repeat", "1"]
    assert speed.main([*argv, "--quality", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    label = speed.COMPRESSAI_COUNTERPARTS[name][0]
    assert list(doc["results"]) == [f"ours ({name})", label]
    for row in doc["results"].values():
        assert row["enc_s"] > 0 and row["dec_s"] > 0 and row["bytes"] > 0
    assert label in capsys.readouterr().out
