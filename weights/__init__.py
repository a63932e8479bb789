"""The shipped weights of the learned codecs, as package data.

``<name>.safetensors`` (float transforms + frozen integer tables + fixed-point nets) and
``manifest.json`` (architecture, training run, measured points; one entry per file). They install
with the package (wheel or editable), so ``neuralcodec.codecs.weights.weights_dir()`` finds them
through ``importlib.resources`` wherever the package lives. In a checkout the files live in the
root ``weights/`` folder and ``neuralcodec/weights`` is a link to it (a wheel holds a copy).
``$NEURALCODEC_WEIGHTS`` replaces this folder.
"""
