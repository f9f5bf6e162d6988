from smoothviz.cli import main

main()
