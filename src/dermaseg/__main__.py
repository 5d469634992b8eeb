"""`python -m dermaseg` runs the `dermaseg` command."""

from dermaseg.cli import main

main()
