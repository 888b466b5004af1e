from mlsd_operator.cli import main

main()
