from yolopatch.cli.main import main

main()
