#!/usr/bin/env python3
"""Regenerate given_names.txt and surnames.txt from the US Census Bureau 1990 name files.

Usage: python3 make_name_lists.py [DIR]
DIR holds dist.male.first, dist.female.first and dist.all.last (default:
/tmp/names-0.3.0/names, the files shipped in the PyPI package names==0.3.0).
Each input line is "NAME FREQ CUMFREQ RANK", most frequent first.
"""
import os
import sys

SURNAME_LIMIT = 30000  # the most frequent surnames; the long tail is mostly noise and false positives


def read_names(path, limit=None):
    names = []
    with open(path, encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            names.append(parts[0].lower())
            if limit is not None and len(names) >= limit:
                break
    return names


def write(path, names):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for n in sorted(set(names)):
            f.write(n + "\n")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/tmp/names-0.3.0/names"
    here = os.path.dirname(os.path.abspath(__file__))
    given = read_names(os.path.join(src, "dist.male.first")) + read_names(os.path.join(src, "dist.female.first"))
    surnames = read_names(os.path.join(src, "dist.all.last"), SURNAME_LIMIT)
    write(os.path.join(here, "given_names.txt"), given)
    write(os.path.join(here, "surnames.txt"), surnames)
    print(f"given_names.txt: {len(set(given))}, surnames.txt: {len(set(surnames))}")


if __name__ == "__main__":
    main()
