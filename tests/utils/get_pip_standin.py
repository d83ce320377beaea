"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test runs ``python get_pip_X_Y.py <pip options> pip==X.Y --no-setuptools --no-wheel``
inside a fresh virtualenv.  Here: bootstrap the bundled pip with ensurepip, then
install the requested packages from the machine's configured package index.
"""
import os
import subprocess
import sys


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    env = dict(os.environ)
    # ensurepip points PIP_CONFIG_FILE at /dev/null, which hides this machine's
    # pip configuration (its certificate and package indexes).
    env.pop("PIP_CONFIG_FILE", None)
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args, env=env)


if __name__ == "__main__":
    main()
