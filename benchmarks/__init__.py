"""halodb benchmarks and stress scripts."""
