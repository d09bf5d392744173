"""A tiny RTSP server for tests and demos: serves an H.264 mp4 at rtsp://127.0.0.1:PORT/PATH, in real time.

Run by the SYSTEM Python (GStreamer's bindings are the Debian package python3-gi, not a PyPI package):

    /usr/bin/python3 rtsp_server.py CLIP [--port 0] [--path /live] [--lifetime 300] [--trace]

Every client gets its own pipeline that plays the clip from its start (the H.264 is sent as is, no
re-encoding). Prints ``READY <port>`` on stdout once it listens; with ``--trace``, ``PLAY <epoch seconds>``
each time a client's pipeline starts playing: the wall-clock time of its running time 0 (a frame is sent when
the pipeline clock reaches its running time, so frame ``pts`` leaves at that time + ``pts``). Stops by itself
after ``--lifetime`` seconds, when its parent process dies, or on SIGTERM/SIGINT. Standard library and
GStreamer only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def playing(media: GstRtspServer.RTSPMedia, state: Gst.State) -> None:
    if state == Gst.State.PLAYING:
        # The pipeline may not have its clock yet when the state changes (seen on a loaded machine):
        # report from the main loop, retrying every 5 ms for up to a second.
        attempts = iter(range(200))
        GLib.timeout_add(5, report_play, media, attempts)


def report_play(media: GstRtspServer.RTSPMedia, attempts: object) -> bool:
    """Print when running time 0 was on the wall clock; True asks GLib to call again (no clock yet)."""
    pipeline = media.get_element().get_parent()
    clock = pipeline.get_clock() if pipeline is not None else None
    if clock is None:
        return next(attempts, None) is not None  # type: ignore[call-overload]
    running = clock.get_time() - pipeline.get_base_time()  # ns of running time now
    sys.stdout.write(f"PLAY {time.time() - running / 1e9:.6f}\n")
    sys.stdout.flush()
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", help="an mp4 file with one H.264 video track")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--path", default="/live")
    parser.add_argument("--lifetime", type=float, default=300.0, help="seconds before stopping by itself")
    parser.add_argument("--trace", action="store_true", help="print when each client's playback starts")
    args = parser.parse_args()

    Gst.init(None)
    clip = os.path.abspath(args.clip).replace("\\", "\\\\").replace('"', '\\"')
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{clip}" ! qtdemux ! rtph264pay name=pay0 pt=96 config-interval=-1 )')
    factory.set_shared(False)  # each client plays from the start
    if args.trace:
        factory.connect("media-configure", lambda _factory, media: media.connect("new-state", playing))
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.stderr.write(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}\n")
        return 1

    loop = GLib.MainLoop()
    parent = os.getppid()

    def orphaned() -> bool:
        if os.getppid() != parent:
            loop.quit()
            return False
        return True

    GLib.timeout_add_seconds(1, orphaned)
    GLib.timeout_add(int(args.lifetime * 1000), loop.quit)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    sys.stdout.write(f"READY {server.get_bound_port()}\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
