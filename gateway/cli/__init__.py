"""The command line: `python -m gateway serve | check-config | mock-upstream | policy explain | audit verify`."""
