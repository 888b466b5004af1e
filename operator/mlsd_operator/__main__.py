from mlsd_contract.cli import main

main()
