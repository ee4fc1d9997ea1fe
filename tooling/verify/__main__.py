from tooling.verify.cli import main

main()
