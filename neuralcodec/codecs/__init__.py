"""Codecs: the registry and ``Codec`` protocol (``base``), the latent codecs they are composed of
(``latent/``), the learned image codecs (``learned_image``, ``learned_elic``), the per-image INR
codec (``inr``), benchmark-only classical codecs (``classical``) and shipped weights (``weights``)."""
