from halodb.cli import main

main()
