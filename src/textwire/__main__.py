from textwire.cli import main

main()
