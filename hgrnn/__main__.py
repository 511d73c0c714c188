from hgrnn.cli import main

main()
