"""The shipped weights of the learned codecs, as package data.

``<name>.safetensors`` (float transforms + frozen integer tables + fixed-point nets) and
``manifest.json`` (architecture, training run, measured points; one entry per file). They install
with the package (wheel or editable), so ``neuralcodec.codecs.weights.weights_dir()`` finds them
through ``importlib.resources`` wherever the package lives; in a checkout the root ``weights``
link points here. ``$NEURALCODEC_WEIGHTS`` replaces this folder.
"""
