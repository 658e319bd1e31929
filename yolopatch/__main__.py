from yolopatch.cli import main

main()
