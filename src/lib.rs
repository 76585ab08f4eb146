//! snipjit: a JIT subgraph compiler for CPU inference.
