"""Before anything runs: the packages that are missing, and the Release
build in BENCH_BUILD_DIR (unless BENCH_SKIP_BUILD=1).
"""
import os
import shutil
import subprocess

from . import scenarios
from .procs import fail

INSTALL_DEPS_TIMEOUT_S = 1800
APT_TIMEOUT_S = 900
CONFIGURE_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 3600   # a build that takes an hour is broken


def _run(argv, timeout_s, **more):
    """Runs a setup command; fails naming it when it fails or times out."""
    try:
        done = subprocess.run(argv, timeout=timeout_s, check=False, **more)
    except subprocess.TimeoutExpired:
        fail(f"{' '.join(argv[:4])} ... did not end within {timeout_s} s")
    except OSError as error:
        fail(f"{argv[0]}: {error}")
    if done.returncode != 0:
        fail(f"{' '.join(argv[:4])} ... failed (exit status {done.returncode})")


def install(cfg):
    """scripts/install-deps bench (build packages and wrk), then through
    apt-get whatever command the wanted scenarios still miss."""
    install_deps = cfg.root / "scripts" / "install-deps"
    if os.access(install_deps, os.X_OK):
        _run([str(install_deps), "bench"], INSTALL_DEPS_TIMEOUT_S)
    missing = sorted({package for command, package in scenarios.packages(cfg)
                      if not shutil.which(command)})
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(sudo + ["apt-get", "update", "-qq"], APT_TIMEOUT_S, env=env)
    _run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
         APT_TIMEOUT_S, env=env)


def build(cfg):
    """Configures and builds Release; returns the paths of the node's
    binary and the broker's (the broker only built when a scenario needs
    it)."""
    binary = cfg.build_dir / "app" / "reservations"
    broker = cfg.build_dir / "messaging" / "kafka_broker" / "rsv-kafka-broker"
    needs_broker = cfg.postgres and scenarios.needs_broker(cfg)
    if not cfg.skip_build:
        _run(["cmake", "-S", str(cfg.root), "-B", str(cfg.build_dir), "-G", "Ninja",
              "-DCMAKE_BUILD_TYPE=Release", "-DRSV_BUILD_TESTS=OFF"], CONFIGURE_TIMEOUT_S,
             stdout=subprocess.DEVNULL)
        targets = ["reservations"] + (["rsv_kafka_broker"] if needs_broker else [])
        _run(["cmake", "--build", str(cfg.build_dir), "--target", *targets], BUILD_TIMEOUT_S)
    if not os.access(binary, os.X_OK):
        fail(f"no binary at {binary}")
    if needs_broker and not os.access(broker, os.X_OK):
        fail(f"no broker at {broker}")
    return binary, broker
