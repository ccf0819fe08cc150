"""``python -m stoker`` is the ``stoker`` command (torchrun starts it this way)."""
from stoker.cli.app import main

if __name__ == "__main__":
    main()
