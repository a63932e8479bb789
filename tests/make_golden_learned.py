"""Regenerate tests/golden/learned_image.json after shipping new weights.

    python tests/make_golden_learned.py

For every model in weights/manifest.json: the sha256 of its weights, and the sha256 of the
streams and of the decoded pixels for a fixed crop of examples/sample.png at quality 4.
``tests/test_learned_image.py`` checks that the codec still produces exactly these bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralcodec.codecs.base import codec_class, get_codec  # noqa: E402
from neuralcodec.codecs.learned_image import manifest  # noqa: E402
from tests.test_learned_image import GOLDEN, _photo  # noqa: E402

QUALITY = 4


def main() -> int:
    golden = {}
    for entry in manifest()["models"]:
        if codec_class(entry["name"]).modality != "image":
            continue
        codec = get_codec(entry["name"])
        enc = codec.encode(_photo(), QUALITY)
        streams = b"".join(enc.streams[k] for k in sorted(enc.streams))
        golden[entry["name"]] = {
            "weights_sha256": entry["sha256"],
            "quality": QUALITY,
            "streams_sha256": hashlib.sha256(streams).hexdigest(),
            "pixels_sha256": hashlib.sha256(codec.decode(enc).tobytes()).hexdigest(),
        }
    GOLDEN.write_text(json.dumps(golden, indent=2) + "\n")
    print(f"wrote {GOLDEN} for {', '.join(golden)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
