# Run as root on a Debian machine: both targets install what they need.
.PHONY: test demo

test:
	bash tests/run-tests.sh

demo:
	bash scripts/demo.sh
