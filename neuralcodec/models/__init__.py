"""Networks (transforms, hyperprior, ELIC, INR) and what makes them codable: the frozen-weights
protocol (``frozen``), exact fixed-point inference (``fixedpoint``, ``inr_fixed``) and frozen
tables (``inr_tables``). Models never touch files other than their weights."""
