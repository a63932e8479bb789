"""Build script for the C extension(s); all metadata lives in pyproject.toml."""

import os

from setuptools import Extension, setup

extra_compile_args = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
extra_link_args = []
if os.environ.get("NEURALCODEC_ASAN"):
    extra_compile_args = ["-O1", "-g", "-std=c11", "-Wall", "-fsanitize=address,undefined",
                          "-fno-omit-frame-pointer"]
    extra_link_args = ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "neuralcodec.entropy._rangecoder",
            sources=["neuralcodec/entropy/_rangecoder.c"],
            depends=["neuralcodec/entropy/_mlp_decode.h"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
        Extension(
            "neuralcodec.models._exact",
            sources=["neuralcodec/models/_exact.c"],
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        ),
    ]
)
