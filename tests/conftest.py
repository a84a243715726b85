"""Shared pytest options: --fuzz-long runs many more generated fuzz cases (test_fuzz.py)."""


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help="run ~10x more generated cases in tests/test_fuzz.py (minutes, not seconds)",
    )


def pytest_terminal_summary(terminalreporter):
    from test_fuzz import STATS

    if STATS["cases"]:
        terminalreporter.write_line(
            f"fuzz: {STATS['cases']} generated cases in {STATS['children']} child processes, "
            f"peak RSS of a child {STATS['peak_mib']} MiB"
        )
