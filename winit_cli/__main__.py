from winit_cli.cli import main

main()
