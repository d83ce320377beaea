"""Byte-compile target-side code with the running interpreter (3.6 and up):
a syntax or stdlib-import error here is a fleet that cannot run the module."""
import os
import sys


def main(dirs):
    bad = 0
    for top in dirs:
        for base, _dirs, files in os.walk(top):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(base, name)
                with open(path, "rb") as f:
                    source = f.read()
                try:
                    compile(source, path, "exec")
                except (SyntaxError, ValueError) as e:
                    print("%s: %s" % (path, e))
                    bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
