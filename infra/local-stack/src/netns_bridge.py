# Runs inside a private network namespace made by `unshare --user --map-root-user --net`
# (what an unprivileged user may do): brings up loopback, starts the server given after `--`
# (tied to this process with PR_SET_PDEATHSIG), and once the server answers on 127.0.0.1:PORT
# inside the namespace, bridges a Unix socket at SOCKET to it. A Unix socket is a file, not a
# network endpoint, so it crosses the namespace boundary; its directory is the stack user's
# own (mode 0700). infra/devtools/src/process.rs forwards the host's 127.0.0.1 to it.
#   python3 netns_bridge.py SOCKET PORT -- server args...
import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

sock_path, port, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
child = subprocess.Popen(cmd, preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL))
# A SIGTERM (a graceful stop, DynamoDbLocal::stop) goes on to the server, whose exit ends this
# process; without this Python would die at once and PR_SET_PDEATHSIG would SIGKILL the server.
signal.signal(signal.SIGTERM, lambda *_: child.terminate())

# Listen only once the server answers: a connection to the socket means it is up.
while True:
    if child.poll() is not None:
        sys.exit(child.returncode or 1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        break
    except OSError:
        time.sleep(0.1)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def handle(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    up_writer.close()
    writer.close()


async def main():
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    os.umask(0o077)
    server = await asyncio.start_unix_server(handle, path=sock_path, backlog=512)
    await asyncio.get_running_loop().run_in_executor(None, child.wait)
    server.close()
    return child.returncode


sys.exit(asyncio.run(main()) or 0)
