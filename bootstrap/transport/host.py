"""``SSHHost``: one connected master (implements ``bootstrap.model.RemoteHost``).

One paramiko connection per host for the whole run; commands, SFTP and forwards share it
(paramiko multiplexes channels on one transport and is thread-safe for that; the SFTP
client is not, so it is guarded by a lock).

Safety: secrets never appear in log lines or error messages. File contents (FileSpec.content,
secret or not) only travel over SFTP and are never quoted; scripts contain paths and modes
only; the sudo password only goes to sudo's stdin.
"""

from __future__ import annotations

import contextlib
import posixpath
import secrets
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bootstrap import model
from bootstrap.errors import (
    AuthenticationFailed,
    OperationTimeout,
    RemoteCommandFailed,
    TransportError,
)
from bootstrap.inventory.model import Master
from bootstrap.model import CommandResult, FileSpec, RemoteFile
from bootstrap.transport import remote_sh
from bootstrap.transport.connection import CHANNEL_OPEN_TIMEOUT, DEFAULT_COMMAND_TIMEOUT
from bootstrap.transport.forward import Forwarder
from bootstrap.transport.sshlib import paramiko

STDERR_TAIL = 2000  # characters of stderr kept in RemoteCommandFailed messages
CHUNK = 64 * 1024
STAGING_PREFIX = "/tmp/bootstrap-stage-"  # sudo writes: private per-write dir, 0700, user-owned


def _tail(data: bytes, limit: int = STDERR_TAIL) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _short(command: str, limit: int = 160) -> str:
    first = command.strip().splitlines()[0] if command.strip() else ""
    return first if len(first) <= limit and "\n" not in command.strip() else first[:limit] + " ..."


class SSHHost:
    def __init__(
        self,
        master: Master,
        client: paramiko.SSHClient,
        *,
        jump: paramiko.SSHClient | None = None,
        sudo_password: str | None = None,
        notices: list[str] | None = None,
    ) -> None:
        self.name = master.name
        self.master = master
        self.notices: list[str] = notices if notices is not None else []  # e.g. accepted keys
        self._client = client
        self._jump = jump
        self._sudo_password = sudo_password
        self._sudo_prefix: str | None = None  # decided on first sudo use
        self._sudo_lock = threading.Lock()
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.RLock()
        self._forwarders: set[Forwarder] = set()
        self._closed = False
        # Leftovers of a write whose connection dropped (a dot-temp beside the target, a
        # staging dir in /tmp holding a copy of the content) are removed before the first
        # write of this connection into that directory / through sudo.
        self._swept_dirs: set[str] = set()
        self._staging_swept = False

    def __repr__(self) -> str:
        ssh = self.master.ssh
        return f"SSHHost({self.name!r}, {ssh.user}@{self.master.ssh_host}:{ssh.port})"

    # --- plumbing -----------------------------------------------------------------------

    @property
    def uses_sudo(self) -> bool:
        return self.master.ssh.sudo

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if self._closed or transport is None or not transport.is_active():
            raise TransportError(
                "the SSH connection is closed" if self._closed else "the SSH connection was lost",
                host=self.name,
                hint="check the host and the network; re-run (writes are idempotent)",
            )
        return transport

    def _lost(self, what: str, e: BaseException) -> TransportError:
        # paramiko's messages sometimes end in an empty detail ("...dropped: ").
        detail = str(e).strip().rstrip(":").strip() or type(e).__name__
        return TransportError(
            f"{what} failed: connection problem: {detail}",
            host=self.name,
            hint="check the host and the network; re-run (writes are idempotent)",
        )

    def _dropped(self, e: BaseException) -> bool:
        """A failure that is the connection going away, whatever paramiko raised for it
        (a dropped session surfaces in SFTP as OSError "Socket is closed")."""
        if isinstance(e, (paramiko.SSHException, EOFError)):
            return True
        transport = self._client.get_transport()
        return transport is None or not transport.is_active()

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._sftp_lock:
            if self._sftp is None:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(self._transport())
                except (paramiko.SSHException, EOFError, OSError) as e:
                    raise TransportError(
                        f"cannot open an SFTP session: {e}",
                        host=self.name,
                        hint="the host's sshd needs the sftp subsystem (Subsystem sftp ...)",
                    ) from None
                if self._sftp is None:
                    raise TransportError("the host refused the SFTP subsystem", host=self.name)
            return self._sftp

    # --- commands -----------------------------------------------------------------------

    def _exec(self, command: str, stdin: bytes | None, timeout: float) -> CommandResult:
        transport = self._transport()
        try:
            channel = transport.open_session(timeout=CHANNEL_OPEN_TIMEOUT)
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise self._lost("starting a command", e) from None
        out: list[bytes] = []
        err: list[bytes] = []

        def drain(recv: object, into: list[bytes]) -> None:
            with contextlib.suppress(Exception):
                while True:
                    data = recv(CHUNK)  # type: ignore[operator]
                    if not data:
                        return
                    into.append(data)

        def feed() -> None:
            with contextlib.suppress(Exception):
                if stdin:
                    channel.sendall(stdin)
                channel.shutdown_write()

        # Both streams are drained at once: they share one flow-control window, so a
        # command that fills stderr while we wait on stdout would otherwise deadlock.
        threads = [
            threading.Thread(target=drain, args=(channel.recv, out), daemon=True),
            threading.Thread(target=drain, args=(channel.recv_stderr, err), daemon=True),
            threading.Thread(target=feed, daemon=True),
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout
        finished = channel.status_event.wait(timeout)
        for t in threads[:2]:
            t.join(max(0.0, deadline - time.monotonic()) if finished else 0.0)
        if not finished or any(t.is_alive() for t in threads[:2]):
            channel.close()
            raise OperationTimeout(
                f"command did not finish within {timeout:g} s: {_short(command)}",
                host=self.name,
                hint="the host may be overloaded; the command may still be running there",
            )
        status = channel.recv_exit_status()
        channel.close()
        if status == -1 and not transport.is_active():
            raise self._lost(f"command {_short(command)}", EOFError("transport closed"))
        return CommandResult(exit_status=status, stdout=b"".join(out), stderr=b"".join(err))

    def _sudo(self) -> str:
        """The sudo prefix for this host, probing once: NOPASSWD (`sudo -n`) or a password
        fed on stdin (`sudo -S -k -p ''`; -k makes sudo always read it, so the password line
        can never leak into the command's own stdin)."""
        with self._sudo_lock:
            if self._sudo_prefix is not None:
                return self._sudo_prefix
            user = self.master.ssh.user
            probe = self._exec("sudo -n true", None, DEFAULT_COMMAND_TIMEOUT)
            if probe.exit_status == 0:
                self._sudo_prefix = "sudo -n"
                return self._sudo_prefix
            if self._sudo_password is None:
                raise AuthenticationFailed(
                    f"sudo for {user} does not work without a password: {_tail(probe.stderr, 300)}",
                    host=self.name,
                    hint=f"give {user} a NOPASSWD sudoers entry, or set BOOTSTRAP_SUDO_PASSWORD",
                )
            prefix = "sudo -S -k -p ''"
            check = self._exec(
                f"{prefix} true", self._sudo_password.encode() + b"\n", DEFAULT_COMMAND_TIMEOUT
            )
            if check.exit_status != 0:
                # sudo's stderr says "incorrect password" / "not in the sudoers file";
                # it never echoes the password.
                raise AuthenticationFailed(
                    f"sudo refused {user}: {_tail(check.stderr, 300)}",
                    host=self.name,
                    hint="check BOOTSTRAP_SUDO_PASSWORD and the sudoers entry for the user",
                )
            self._sudo_prefix = prefix
            return prefix

    def check_sudo(self) -> None:
        """Raise AuthenticationFailed unless root commands work (no-op for sudo: false)."""
        if self.uses_sudo:
            self._sudo()

    def run(
        self,
        command: str,
        *,
        sudo: bool = True,
        check: bool = True,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run ``command`` under /bin/sh; as root through sudo when the host uses sudo."""
        result = self._run(command, sudo=sudo, timeout=timeout, stdin=stdin)
        if check:
            self._check(result, f"command failed: {_short(command)}")
        return result

    def _run(
        self, command: str, *, sudo: bool, timeout: float | None, stdin: bytes | None
    ) -> CommandResult:
        wrapped = remote_sh.sh_c(command)
        feed = stdin
        if sudo and self.uses_sudo:
            prefix = self._sudo()
            wrapped = f"{prefix} {wrapped}"
            if prefix.startswith("sudo -S"):
                assert self._sudo_password is not None
                feed = self._sudo_password.encode() + b"\n" + (stdin or b"")
        return self._exec(wrapped, feed, DEFAULT_COMMAND_TIMEOUT if timeout is None else timeout)

    def _check(self, result: CommandResult, what: str) -> None:
        """Raise RemoteCommandFailed for a non-zero exit; ``what`` says what we were doing
        (the scripts' own text would not: their first line is "set -eu")."""
        if result.exit_status == 0:
            return
        status = result.exit_status
        shown = status if status >= 0 else "unknown (killed?)"
        raise RemoteCommandFailed(
            f"{what} (exit status {shown})"
            + (f"\n{_tail(result.stderr)}" if result.stderr.strip() else ""),
            host=self.name,
            exit_status=status,
            stderr=_tail(result.stderr),
            hint="see the remote error above; fix the host and re-run",
        )

    def _script(self, script: str, what: str, *, sudo: bool = True) -> CommandResult:
        result = self._run(script, sudo=sudo, timeout=None, stdin=None)
        self._check(result, what)
        return result

    def hold(self, command: str, *, sudo: bool = True) -> model.HeldCommand:
        """Start ``command`` under /bin/sh with its stdin left open (see HeldCommand)."""
        wrapped = remote_sh.sh_c(command)
        feed = b""
        if sudo and self.uses_sudo:
            prefix = self._sudo()
            wrapped = f"{prefix} {wrapped}"
            if prefix.startswith("sudo -S"):
                assert self._sudo_password is not None
                feed = self._sudo_password.encode() + b"\n"
        transport = self._transport()
        try:
            channel = transport.open_session(timeout=CHANNEL_OPEN_TIMEOUT)
            channel.exec_command(wrapped)
            if feed:
                channel.sendall(feed)
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise self._lost("starting a command", e) from None
        return _Held(self.name, channel)

    # --- files --------------------------------------------------------------------------

    def stat_files(self, paths: Sequence[str]) -> dict[str, RemoteFile | None]:
        """sha256 + mode of every path in one exec round trip (as root when sudo)."""
        paths = list(paths)
        if not paths:
            return {}
        result = self._run(remote_sh.stat_script(paths), sudo=True, timeout=None, stdin=None)
        try:
            if result.exit_status != 0:
                raise remote_sh.StatParseError(f"exit status {result.exit_status}")
            return remote_sh.parse_stat(paths, result.stdout.decode("utf-8", errors="replace"))
        except remote_sh.StatParseError as e:
            raise RemoteCommandFailed(
                f"cannot inspect remote files: {e}"
                + (f"\n{_tail(result.stderr)}" if result.stderr else ""),
                host=self.name,
                exit_status=result.exit_status,
                stderr=_tail(result.stderr),
                hint="the host needs POSIX sh, sha256sum and GNU stat (coreutils)",
            ) from None

    def read_file(self, path: str) -> bytes:
        if self.uses_sudo:
            return self._script(f"cat -- {shlex.quote(path)}", f"cannot read {path}").stdout
        with self._sftp_lock:
            sftp = self._sftp_client()
            try:
                with sftp.open(path, "rb") as f:
                    return f.read()
            except OSError as e:
                raise RemoteCommandFailed(
                    f"cannot read {path}: {e.strerror or e}",
                    host=self.name,
                    hint="check that the file exists and the SSH user may read it",
                ) from None
            except (paramiko.SSHException, EOFError) as e:
                raise self._lost(f"reading {path}", e) from None

    def write_file_atomic(self, spec: FileSpec) -> None:
        """Parents created, content staged, mode set, renamed over the target: a reader
        sees the old file or the new one, never a mix (rename(2) on one filesystem)."""
        if not posixpath.isabs(spec.path) or spec.path.endswith("/"):
            raise ValueError(f"remote path must be an absolute file path: {spec.path!r}")
        if self.uses_sudo:
            self._write_via_sudo(spec)
        else:
            self._write_via_sftp(spec)

    def _upload(self, sftp: paramiko.SFTPClient, path: str, content: bytes, mode: int) -> None:
        # "x": exclusive create, never through a planted file or symlink. The mode is set
        # while the file is still empty, so key material is never readable by others.
        # Not pipelined: paramiko drops the status of pipelined writes, so a full disk
        # would leave a truncated file that we then renamed into place. Unpipelined, every
        # write's status is checked (files here are one or two 32 KiB requests anyway).
        with sftp.open(path, "wxb") as f:
            f.chmod(mode)
            f.write(content)

    def _free_space_note(self, directory: str) -> str:
        """SFTP reports ENOSPC as a bare "Failure": say how much room the target has."""
        with contextlib.suppress(Exception):
            df = self._run(
                f"df -Pk {shlex.quote(directory)} | tail -n 1", sudo=False, timeout=20, stdin=None
            )
            fields = df.stdout.decode(errors="replace").split()
            if df.exit_status == 0 and len(fields) >= 4 and fields[3].isdigit():
                free = int(fields[3])
                full = " (no space left on device)" if free < 64 else ""
                return f"; {fields[3]} KiB free in {directory}{full}"
        return ""

    def _write_via_sftp(self, spec: FileSpec) -> None:
        directory = posixpath.dirname(spec.path)
        token = secrets.token_hex(8)
        tmp = remote_sh.temp_name(spec.path, token)
        with self._sftp_lock:
            sftp = self._sftp_client()
            try:
                # A directory swept on this connection exists (we never remove one): one
                # round trip less per file of a push (22 files per master on a fresh init).
                if directory not in self._swept_dirs:
                    sftp.stat(directory)
            except FileNotFoundError:
                self._script(
                    remote_sh.mkdir_parents(directory), f"cannot create {directory}", sudo=False
                )
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise self._lost(f"checking {directory}", e) from None
            try:
                self._sweep_dir(sftp, directory)
                self._upload(sftp, tmp, spec.content, spec.mode)
                sftp.posix_rename(tmp, spec.path)  # plain SFTP rename refuses to replace
            except BaseException as e:
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                if isinstance(e, Exception) and self._dropped(e):
                    raise self._lost(f"writing {spec.path}", e) from None
                if isinstance(e, OSError):
                    raise RemoteCommandFailed(
                        f"cannot write {spec.path}: {e.strerror or e}"
                        + self._free_space_note(directory),
                        host=self.name,
                        hint=f"if the disk is full, free space in {directory}; otherwise check "
                        f"that {self.master.ssh.user} may write there (ssh.sudo: non-root)",
                    ) from None
                if isinstance(e, (paramiko.SSHException, EOFError)):
                    raise self._lost(f"writing {spec.path}", e) from None
                raise

    def _sweep_dir(self, sftp: paramiko.SFTPClient, directory: str) -> None:
        """Remove stale temp files (``.<name>.bootstrap-tmp-<hex>``) of dropped writes in
        ``directory``, once per connection: dot-files the kubelet ignores, but they hold
        (partial) file contents and would pile up."""
        if directory in self._swept_dirs:
            return
        for name in sftp.listdir(directory):
            if remote_sh.is_stale_temp(name):
                with contextlib.suppress(FileNotFoundError):
                    sftp.remove(posixpath.join(directory, name))
        self._swept_dirs.add(directory)

    def _sweep_staging(self) -> None:
        """Once per connection: the user's staging dirs left in /tmp by dropped writes."""
        if not self._staging_swept:
            self._script(
                remote_sh.remove_stale_staging(STAGING_PREFIX),
                "cannot remove stale staging dirs in /tmp",
                sudo=False,
            )
            self._staging_swept = True

    def _write_via_sudo(self, spec: FileSpec) -> None:
        self._sweep_staging()
        token = secrets.token_hex(16)
        staging = STAGING_PREFIX + token
        staged = staging + "/content"
        with self._sftp_lock:
            sftp = self._sftp_client()
            try:
                # mkdir fails if the name exists: a directory planted in /tmp is never used.
                sftp.mkdir(staging, 0o700)
                self._upload(sftp, staged, spec.content, 0o600)
            except BaseException as e:
                with contextlib.suppress(Exception):
                    sftp.remove(staged)
                with contextlib.suppress(Exception):
                    sftp.rmdir(staging)
                if isinstance(e, Exception) and self._dropped(e):
                    raise self._lost(f"staging {spec.path}", e) from None
                if isinstance(e, OSError):
                    raise RemoteCommandFailed(
                        f"cannot stage {spec.path} under /tmp: {e.strerror or e}"
                        + self._free_space_note("/tmp"),
                        host=self.name,
                        hint="check free space and permissions of /tmp on the host",
                    ) from None
                if isinstance(e, (paramiko.SSHException, EOFError)):
                    raise self._lost(f"staging {spec.path}", e) from None
                raise
        try:
            # The script removes the staging dir and the temp file itself (trap on EXIT).
            self._script(
                remote_sh.install_as_root(staged, staging, spec.path, spec.mode, token[:16]),
                f"cannot install {spec.path}",
            )
        except BaseException:
            with self._sftp_lock:
                with contextlib.suppress(Exception):
                    sftp.remove(staged)
                with contextlib.suppress(Exception):
                    sftp.rmdir(staging)
            raise

    def remove_files(self, paths: Sequence[str]) -> None:
        """rm -f (as root when sudo); absent paths are fine."""
        if paths:
            self._script(remote_sh.remove_script(paths), f"cannot remove {len(paths)} file(s)")

    def backup_files(self, paths: Sequence[str], backup_dir: str) -> None:
        """cp -p each existing path into backup_dir (mkdir -p, 0700), flat by basename.
        Two paths with the same basename would overwrite each other: refused."""
        names = [posixpath.basename(p) for p in paths]
        if len(set(names)) != len(names):
            raise ValueError(f"backup_files needs unique basenames, got {sorted(paths)}")
        if paths:
            self._script(
                remote_sh.backup_script(paths, backup_dir), f"cannot back up into {backup_dir}"
            )

    # --- forwarding ---------------------------------------------------------------------

    @contextmanager
    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> Iterator[int]:
        """Yields a local 127.0.0.1 port forwarded to remote_host:remote_port on the host."""
        forwarder = Forwarder(
            self._transport(),
            remote_host,
            remote_port,
            label=self.name,
            channel_open_timeout=CHANNEL_OPEN_TIMEOUT,
        )
        self._forwarders.add(forwarder)
        try:
            yield forwarder.port
        finally:
            self._forwarders.discard(forwarder)
            forwarder.close()

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for forwarder in list(self._forwarders):
            forwarder.close()
        self._forwarders.clear()
        with self._sftp_lock:
            if self._sftp is not None:
                with contextlib.suppress(Exception):
                    self._sftp.close()
                self._sftp = None
        with contextlib.suppress(Exception):
            self._client.close()
        if self._jump is not None:
            with contextlib.suppress(Exception):
                self._jump.close()

    def __enter__(self) -> SSHHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Held:
    """One running command's channel: stdout read line by line, stdin open until release."""

    def __init__(self, host: str, channel: paramiko.Channel) -> None:
        self._host = host
        self._channel = channel
        self._buffer = b""
        self._eof = False

    def readline(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer and not self._eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OperationTimeout(
                    f"no answer from a remote command within {timeout:g} s",
                    host=self._host,
                    hint="the host may be overloaded; re-run",
                )
            self._channel.settimeout(left)
            try:
                data = self._channel.recv(CHUNK)
            except TimeoutError:
                continue
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise TransportError(
                    f"reading a remote command's output failed: {e}", host=self._host
                ) from None
            if not data:
                self._eof = True
            self._buffer += data
        if not self._buffer:
            return None
        line, _sep, rest = self._buffer.partition(b"\n")
        self._buffer = rest
        return line.decode("utf-8", errors="replace")

    def release(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(Exception):
            self._channel.shutdown_write()
        with contextlib.suppress(Exception):
            self._channel.status_event.wait(timeout)
        with contextlib.suppress(Exception):
            self._channel.close()


def _conforms(host: SSHHost) -> model.RemoteHost:
    """mypy proves here that SSHHost implements the RemoteHost protocol."""
    return host
