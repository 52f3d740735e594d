"""The embedded default: a local Neo4j Community process started from jars fetched by setup.

The Java side is ``tools/neo4j`` (a tiny launcher over ``DatabaseManagementServiceBuilder``).
This module starts it detached, waits for its ready line, records ``pid``/``port`` in the data
home so ``medshadow neo4j status|stop`` from another shell finds it, and stops it with SIGTERM
(the launcher's shutdown hook closes the store cleanly).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from graph.errors import EmbeddedNeo4jError

READY_MARKER = "MEDSHADOW-NEO4J-READY"
JVM_FLAGS = (
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-XX:+ExitOnOutOfMemoryError",
)
FETCH_HINT = "run `make setup` (it fetches them with `mvn -f tools/neo4j/pom.xml package`)"


@dataclass(frozen=True, slots=True)
class Neo4jStatus:
    running: bool
    pid: int | None
    port: int | None
    home: Path

    @property
    def uri(self) -> str | None:
        return f"bolt://127.0.0.1:{self.port}" if self.running and self.port else None


class EmbeddedNeo4j:
    """Lifecycle of one embedded Neo4j home directory."""

    def __init__(
        self,
        home: Path,
        *,
        port: int,
        jars: Path,
        heap: str = "1g",
        pagecache: str = "512m",
        java: str = "java",
        password: str | None = None,
    ) -> None:
        self.home = home
        self.port = port
        self.jars = jars
        self.heap = heap
        self.pagecache = pagecache
        self.java = java
        self._password = password
        self._pidfile = home / "medshadow-neo4j.json"
        self._log = home / "launcher.log"
        self._proc: subprocess.Popen[bytes] | None = None  # kept so we can reap our own child

    # -- queries -------------------------------------------------------------------------
    def status(self) -> Neo4jStatus:
        info = self._read_pidfile()
        if info is None:
            return Neo4jStatus(False, None, None, self.home)
        pid, port = info
        alive = _pid_alive(pid) and _port_open(port)
        return Neo4jStatus(alive, pid if alive else None, port if alive else None, self.home)

    def classpath(self) -> str:
        launcher = sorted(self.jars.glob("medshadow-neo4j-*.jar"))
        lib = self.jars / "lib"
        plugins = self.jars / "plugins"
        if not launcher or not lib.is_dir() or not any(lib.glob("neo4j-kernel-*.jar")):
            raise EmbeddedNeo4jError(f"Neo4j jars are missing under {self.jars}: {FETCH_HINT}")
        if not any(plugins.glob("apoc-core-*.jar")):
            raise EmbeddedNeo4jError(f"APOC jars are missing under {plugins}: {FETCH_HINT}")
        # APOC registers its extension factories through ServiceLoader, so its jars must be on
        # the class path as well as in plugin_dir.
        return os.pathsep.join([str(launcher[-1]), f"{lib}/*", f"{plugins}/*"])

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> Neo4jStatus:
        """Start (or find already running) and return once Bolt accepts connections."""
        current = self.status()
        if current.running:
            return current
        java = shutil.which(self.java)
        if java is None:
            raise EmbeddedNeo4jError(
                f"Java not found ({self.java!r}): install a JDK 17 (e.g. `apt-get install "
                "openjdk-17-jre-headless`) or set MEDSHADOW_NEO4J__URI to an external Neo4j"
            )
        if _port_open(self.port):
            raise EmbeddedNeo4jError(
                f"port {self.port} is already in use by another process: set "
                "MEDSHADOW_NEO4J__PORT to a free port or MEDSHADOW_NEO4J__URI to that server"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        argv = [
            java,
            f"-Xmx{self.heap}",
            *JVM_FLAGS,
            "-cp",
            self.classpath(),
            "medshadow.Launcher",
            "--home",
            str(self.home),
            "--port",
            str(self.port),
            "--plugins",
            str(self.jars / "plugins"),
            "--pagecache",
            self.pagecache,
        ]
        env = dict(os.environ)
        env.pop("MEDSHADOW_NEO4J_PASSWORD", None)
        if self._password:
            env["MEDSHADOW_NEO4J_PASSWORD"] = self._password
        with self._log.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # survives the CLI that started it; stopped by SIGTERM
            )
        self._proc = proc
        self._pidfile.write_text(json.dumps({"pid": proc.pid, "port": self.port}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pidfile.unlink(missing_ok=True)
                self._proc = None
                raise EmbeddedNeo4jError(
                    f"embedded Neo4j exited with code {proc.returncode}; log {self._log}:\n"
                    + self._log_tail()
                )
            if READY_MARKER in self._log.read_text(errors="replace"):
                return Neo4jStatus(True, proc.pid, self.port, self.home)
            time.sleep(0.2)
        proc.terminate()
        proc.wait()
        self._proc = None
        raise EmbeddedNeo4jError(
            f"embedded Neo4j did not become ready in {timeout_s:.0f}s; log {self._log}:\n"
            + self._log_tail()
        )

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the server recorded in this home. Returns False when none was running."""
        info = self._read_pidfile()
        if info is None:
            return False
        pid, _ = info
        if not _pid_alive(pid):
            self._pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait()
            self._proc = None
        self._pidfile.unlink(missing_ok=True)
        return True

    # -- helpers -------------------------------------------------------------------------
    def _read_pidfile(self) -> tuple[int, int] | None:
        try:
            data = json.loads(self._pidfile.read_text())
            return int(data["pid"]), int(data["port"])
        except (OSError, ValueError, KeyError):
            return None

    def _log_tail(self, lines: int = 25) -> str:
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        # The first "Caused by" lines say more than the deepest stack frames.
        causes = [line for line in text.splitlines() if line.startswith("Caused by")]
        return "\n".join(causes[:5] + text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (exited, not yet reaped) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True
