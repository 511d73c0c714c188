"""`python -m hgrnn.cli ...` and `torchrun -m hgrnn.cli ...` (one process per rank)."""

from hgrnn.cli import main

main()
