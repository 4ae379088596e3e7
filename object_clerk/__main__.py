"""``python -m object_clerk``: the command line (needs ``pip install 'object-clerk[cli]'``)."""

import sys

try:
    from object_clerk.cli import main
except ImportError as exc:  # click or tqdm missing: a usage error (exit 2)
    print(
        f"object-clerk: the command line needs the cli extra ({exc.name} is missing):"
        " pip install 'object-clerk[cli]'",
        file=sys.stderr,
    )
    sys.exit(2)

main(prog_name="object-clerk")
