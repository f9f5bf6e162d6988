"""The science, as pure batched maths on tensors: attention as a graph (``graph``), the over-smoothing metrics
(``metrics``), the diagnostics that read weights and attention together (``diagnostics``), attention sinks (``sinks``),
the 2-D projection of token states (``projection``) and shared linear algebra (``linalg``). See docs/SCIENCE.md."""
