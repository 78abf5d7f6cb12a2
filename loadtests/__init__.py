"""Load generators and benchmarks of the lip-sync stack.

Run the modules from the repository root with the project's virtualenv, e.g.
``.venv/bin/python -m loadtests.wsload --help``; ``loadtests/README.md`` lists them all.
"""
