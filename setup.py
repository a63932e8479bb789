"""Build script for the C extension(s); all metadata lives in pyproject.toml."""

import os

from setuptools import Extension, setup

# -fno-math-errno: sqrt compiles to the instruction (same IEEE result, no errno bookkeeping);
# -ffp-contract=off: no fused multiply-adds, so float kernels round as NumPy does (video_intra)
extra_compile_args = [
    "-O3",
    "-fno-math-errno",
    "-ffp-contract=off",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
]
extra_link_args = []
if os.environ.get("NEURALCODEC_ASAN"):
    extra_compile_args = [
        "-O1",
        "-g",
        "-std=c11",
        "-Wall",
        "-fsanitize=address,undefined",
        "-fno-omit-frame-pointer",
    ]
    extra_link_args = ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "neuralcodec.entropy._rangecoder",
            sources=["neuralcodec/entropy/_rangecoder.c"],
            depends=["neuralcodec/entropy/_rangecoder_api.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
        Extension(
            "neuralcodec.kernels._exact",
            sources=["neuralcodec/kernels/_exact.c"],
            depends=["neuralcodec/kernels/_buffers.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
        Extension(
            "neuralcodec.kernels._intnet",
            sources=["neuralcodec/kernels/_intnet.c"],
            depends=["neuralcodec/kernels/_buffers.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
        Extension(  # imports the range decoder's C API (a capsule) at load time
            "neuralcodec.kernels._inr_arm",
            sources=["neuralcodec/kernels/_inr_arm.c"],
            depends=["neuralcodec/entropy/_rangecoder_api.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
        Extension(  # adaptive binary context models over the range decoder's C API
            "neuralcodec.kernels._adaptive",
            sources=["neuralcodec/kernels/_adaptive.c"],
            depends=["neuralcodec/entropy/_rangecoder_api.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
    ]
)
