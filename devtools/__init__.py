"""Developer tools shared by the tests, the workflow generator and the benchmarks; the pack never imports them."""
