"""The shared entropy-coding core: the C range coder and its Python API (``rangecoder``, with a
pure-Python twin in ``reference``), frozen integer coding tables (``tables``, ``cdf``) and the
entropy models that produce them (``models``, ``conditionals``, ``categorical``)."""
