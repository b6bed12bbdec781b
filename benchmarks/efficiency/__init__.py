"""The efficiency benchmark: harness (timing), systems (what is timed), tables (from the CSVs),
trained (beam curve and int8 on the default set). Run it with `python -m benchmarks.efficiency`."""
