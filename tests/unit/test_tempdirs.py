"""What a process killed with -9 left in the temporary directory is removed; what running
processes use is not."""

from __future__ import annotations

import subprocess
import sys

from baton.tempdirs import owned_temp_dir, remove_stale

PREFIX = "baton-test-tempdirs-"


def test_only_the_directories_of_processes_that_no_longer_run_are_removed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = tmp_path / f"{PREFIX}{finished.stdout.strip()}-abc"
        alive = tmp_path / f"{PREFIX}{running.pid}-abc"
        not_a_pid = tmp_path / f"{PREFIX}x1-abc"
        for path in (dead, alive, not_a_pid):
            path.mkdir()
            (path / "file").write_text("kept?")
        assert remove_stale(PREFIX, tmp_path) == 1
        assert not dead.exists() and alive.exists() and not_a_pid.exists()
    finally:
        running.kill()
        running.wait()


def test_a_process_never_removes_its_own():
    mine = owned_temp_dir(PREFIX)
    try:
        assert mine.name.startswith(f"{PREFIX}")
        assert (mine.stat().st_mode & 0o777) == 0o700
        remove_stale(PREFIX)
        assert mine.exists()
    finally:
        mine.rmdir()
