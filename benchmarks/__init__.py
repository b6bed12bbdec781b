"""Stand-alone benchmarks (not part of the tests); see benchmarks/README.md."""
