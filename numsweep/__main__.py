from numsweep.cli import main

main()
