"""Front-ends: the ``codec`` command line (``cli``), the Gradio demo (``demo``, ``demo_core``) and
the encode report (``report``). They parse, call ``neuralcodec.api`` and print; nothing else."""
