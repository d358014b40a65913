#!/usr/bin/env python3
"""The main job's last step, run by setup.sh once berthd is up: a real
Debian image (mmdebstrap --variant=minbase bookworm, built once and cached)
is pushed to a registry started on 127.0.0.1 for the purpose, pulled through
berthd, and a container made from it prints its /etc/os-release.

    scripts/first_container.py BERTH [--address ADDR]

The registry is stopped afterwards; the image stays in berthd's store,
tagged debian:bookworm (that is, localhost/debian:bookworm).
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "fixtures"))

import images  # noqa: E402  (test/fixtures/images.py)
from registry import Registry  # noqa: E402  (test/fixtures/registry.py)

CACHE = os.environ.get("BERTH_TEST_FIXTURES", "/var/tmp/berth-test-fixtures")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("berth")
    p.add_argument("--address", default=None)
    args = p.parse_args()
    base = [args.berth] + (["--address", args.address] if args.address else [])

    print("building the Debian image (cached in %s) ..." % CACHE, flush=True)
    images.build(CACHE, debian=True, quiet=True)
    with Registry() as reg:
        reg.push(os.path.join(CACHE, "debian-oci"), "debian", "bookworm")
        ref = "%s/debian:bookworm" % reg.url
        print("pulling %s through berthd ..." % ref, flush=True)
        subprocess.run(base + ["pull", "--tls-verify=false", ref], check=True)
    # The registry goes away; a short local name stays.
    subprocess.run(base + ["tag", ref, "debian:bookworm"], check=True)
    print("running a container from it (berth run --rm debian:bookworm "
          "cat /etc/os-release):", flush=True)
    rc = subprocess.run(base + ["run", "--rm", "debian:bookworm", "cat",
                                "/etc/os-release"]).returncode
    if rc != 0:
        print("the container exited with %d" % rc, file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
