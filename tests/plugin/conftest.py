"""The pytest plugin's own tests: sample projects run with pytester in child processes."""
pytest_plugins = ["pytester"]
