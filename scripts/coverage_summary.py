"""Print line coverage per package and per module from colcon's coverage data files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import coverage


def summarize(data_file: Path, bar: float) -> tuple[float, list[str]]:
    """Print one package's modules and return its total and the modules under the bar."""
    cov = coverage.Coverage(data_file=str(data_file))
    cov.load()
    data = cov.get_data()
    total_statements = total_missing = 0
    below: list[str] = []
    rows: list[tuple[str, int, int, float]] = []
    for filename in sorted(data.measured_files()):
        path = Path(filename)
        if '/test/' in filename or path.name == 'setup.py':
            continue
        _, statements, _, missing, _ = cov.analysis2(filename)
        n, m = len(statements), len(missing)
        if n == 0:
            continue
        percent = 100.0 * (n - m) / n
        rows.append((filename, n, m, percent))
        total_statements += n
        total_missing += m
        if percent < bar:
            below.append(filename)
    for filename, n, m, percent in rows:
        mark = '  BELOW BAR' if percent < bar else ''
        print(f'  {percent:5.1f}%  {n:5d} lines  {m:4d} missed  {filename}{mark}')
    total = 100.0 * (total_statements - total_missing) / max(total_statements, 1)
    return total, below


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--bar', type=float, default=80.0, help='required percent per module')
    parser.add_argument('data_files', nargs='+', type=Path)
    args = parser.parse_args()
    failed = False
    summary: list[str] = []
    for data_file in args.data_files:
        package = data_file.parent.name
        if not data_file.exists():
            print(f'{package}: no coverage data at {data_file}')
            failed = True
            continue
        print(f'{package}:')
        total, below = summarize(data_file, args.bar)
        summary.append(f'{package} {total:.1f}% ({len(below)} modules below {args.bar:.0f}%)')
        failed = failed or bool(below)
    print('coverage: ' + '; '.join(summary))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
