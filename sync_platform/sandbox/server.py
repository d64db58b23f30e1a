"""Run the sandbox app under uvicorn in a background thread (tests, demo) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path
from types import TracebackType

import uvicorn

from .app import build_app
from .state import SandboxConfig, SandboxState
from .tls import TlsFiles, generate_tls_files


class SandboxServer:
    """A sandbox bound to ``host:port`` (port 0 picks a free one).

    The listening socket is bound and listening before the server thread starts, so clients
    can connect as soon as ``start()`` returns: their connections wait in the backlog.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        tls_dir: Path | None = None,
        state: SandboxState | None = None,
        log_level: str = "warning",
    ) -> None:
        self.state = state or SandboxState(config)
        self.host = host
        self.tls: TlsFiles | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        if tls:
            if tls_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="sync-platform-tls-")
                tls_dir = Path(self._tmp.name)
            self.tls = generate_tls_files(
                tls_dir, hosts=(host, "localhost") if host != "localhost" else (host,)
            )
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(512)
        self.port = self._sock.getsockname()[1]
        scheme = "https" if tls else "http"
        self.state.base_url = f"{scheme}://{host}:{self.port}"
        config_kwargs = {}
        if self.tls:
            config_kwargs = {
                "ssl_certfile": str(self.tls.server_cert),
                "ssl_keyfile": str(self.tls.server_key),
            }
        self._server = uvicorn.Server(
            uvicorn.Config(
                build_app(self.state),
                log_level=log_level,
                access_log=False,
                timeout_graceful_shutdown=2,
                lifespan="off",
                date_header=False,  # the app stamps Date from the sandbox clock
                **config_kwargs,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.state.base_url

    @property
    def ca_file(self) -> str | None:
        return str(self.tls.ca_cert) if self.tls else None

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="crm-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C)."""
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
