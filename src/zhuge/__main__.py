from zhuge.cli import main

main()
