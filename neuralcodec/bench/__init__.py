"""Benchmarks: entropy-coder speed (``entropy``), rate-distortion curves with BD-rate tables and
plots (``rd``, ``bdrate``, ``plots``, ``metrics``, published points in ``reference``) and codec speed
(``speed``). They print and save numbers; tests never assert timings."""
