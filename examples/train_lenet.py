"""Train LeNet-5 on the MNIST files shipped in this repository's data/ folder.

    python examples/train_lenet.py                  # default recipe, 5 epochs
    python examples/train_lenet.py --help           # every option (also: minidl-train --help)
"""

import sys
from pathlib import Path

from minidl.train import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    repo_data = Path(__file__).resolve().parent.parent / "data"
    if not any(a.startswith("--data-root") for a in argv) and (repo_data / "mnist").is_dir():
        argv = ["--data-root", str(repo_data)] + argv
    main(argv)
