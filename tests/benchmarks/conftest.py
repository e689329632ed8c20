# The scripts here are benchmarks run by hand (see README.md), not tests.
collect_ignore_glob = ["*.py"]
