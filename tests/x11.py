"""Close an X11 window the way a window manager's close button does: a WM_DELETE_WINDOW
client message (ICCCM 4.1.2.7), which Qt turns into a spontaneous close event. Xvfb runs no
window manager, so tests send it themselves (libX11 through ctypes)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

CLIENT_MESSAGE = 33
PROPERTY_ANY = 0


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _Event(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def _xlib() -> ctypes.CDLL:
    name = ctypes.util.find_library("X11")
    if name is None:
        raise RuntimeError("libX11 is not installed")
    lib = ctypes.CDLL(name)
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XInternAtom.restype = ctypes.c_ulong
    lib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    lib.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_void_p] * 3 + [ctypes.c_void_p]
    lib.XGetWindowProperty.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_long,
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.XFree.argtypes = [ctypes.c_void_p]
    lib.XFlush.argtypes = [ctypes.c_void_p]
    lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    return lib


def _open() -> tuple[ctypes.CDLL, int]:
    lib = _xlib()
    display = lib.XOpenDisplay(os.environ.get("DISPLAY", "").encode() or None)
    if not display:
        raise RuntimeError(f"cannot open the X display {os.environ.get('DISPLAY')!r}")
    return lib, display


def _pid_of(lib: ctypes.CDLL, display: int, window: int, atom: int) -> int | None:
    actual_type, actual_format = ctypes.c_ulong(), ctypes.c_int()
    count, after, data = ctypes.c_ulong(), ctypes.c_ulong(), ctypes.c_void_p()
    status = lib.XGetWindowProperty(
        display,
        window,
        atom,
        0,
        1,
        0,
        PROPERTY_ANY,
        ctypes.byref(actual_type),
        ctypes.byref(actual_format),
        ctypes.byref(count),
        ctypes.byref(after),
        ctypes.byref(data),
    )
    if status != 0 or not data.value:
        return None
    try:
        return int(ctypes.cast(data, ctypes.POINTER(ctypes.c_ulong))[0]) if count.value else None
    finally:
        lib.XFree(data)


def windows_of(pid: int) -> list[int]:
    """Top-level X windows whose _NET_WM_PID is `pid` (Qt sets it on its top-level windows)."""
    lib, display = _open()
    try:
        atom = lib.XInternAtom(display, b"_NET_WM_PID", 0)
        root_return, parent_return = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        lib.XQueryTree(
            display,
            lib.XDefaultRootWindow(display),
            ctypes.byref(root_return),
            ctypes.byref(parent_return),
            ctypes.byref(children),
            ctypes.byref(count),
        )
        found = [children[i] for i in range(count.value) if _pid_of(lib, display, children[i], atom) == pid]
        if children:
            lib.XFree(children)
        return found
    finally:
        lib.XCloseDisplay(display)


def close_like_window_manager(window: int) -> None:
    """Send WM_DELETE_WINDOW to `window` (an X window id, e.g. QWidget.winId())."""
    lib, display = _open()
    try:
        event = _Event()
        message = event.xclient
        message.type = CLIENT_MESSAGE
        message.window = window
        message.message_type = lib.XInternAtom(display, b"WM_PROTOCOLS", 0)
        message.format = 32
        message.data[0] = lib.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
        message.data[1] = 0  # CurrentTime
        lib.XSendEvent(display, window, 0, 0, ctypes.byref(event))
        lib.XFlush(display)
    finally:
        lib.XCloseDisplay(display)
