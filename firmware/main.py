# ESP32 entry point: copy firmware/ to the board's filesystem (mpremote cp -r svnode main.py :).
from svnode.app import main

main()
