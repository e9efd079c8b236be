"""The composed config before anything runs: the checks of values a schema cannot express, and `--help`."""
