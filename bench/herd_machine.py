"""What a herd of sockets needs of the machine: file limits, kernel settings, /proc readings."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SYS = Path("/proc/sys")


def sysctl(name: str) -> list[int] | None:
    """A sysctl's integers (``net.ipv4.tcp_mem`` -> 3), or None where it does not exist."""
    path = SYS / name.replace(".", "/")
    try:
        return [int(v) for v in path.read_text().split()]
    except (OSError, ValueError):
        return None


def raise_file_limit(need: int) -> int:
    """Raise this process's RLIMIT_NOFILE (children inherit it) to ``need`` if it is lower:
    the soft limit up to the hard one; the hard one too where allowed (root, up to
    fs.nr_open). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    ceiling = (sysctl("fs.nr_open") or [hard])[0]
    wanted = min(need, ceiling)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):  # not root: as far as the hard limit goes
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def kernel_notes(sockets: int, backlog: int) -> list[str]:
    """The settings that decide whether ``sockets`` loopback connections fit, each with
    what it allows; the ones that do not fit say LOW."""
    notes = []
    ports = sysctl("net.ipv4.ip_local_port_range")
    if ports:
        notes.append(
            f"net.ipv4.ip_local_port_range {ports[0]}-{ports[1]}: {ports[1] - ports[0] + 1:,} "
            "ports per source address (the clients spread over 127.0.0.0/8)"
        )
    somaxconn = (sysctl("net.core.somaxconn") or [0])[0]
    syn = (sysctl("net.ipv4.tcp_max_syn_backlog") or [0])[0]
    notes.append(
        f"net.core.somaxconn {somaxconn}, tcp_max_syn_backlog {syn}: the gateway listens with "
        f"a backlog of {min(backlog, somaxconn)}" + (" (LOW)" if somaxconn < backlog else "")
    )
    tcp_mem = sysctl("net.ipv4.tcp_mem")
    if tcp_mem:
        mb = [v * PAGE // 2**20 for v in tcp_mem]
        notes.append(f"net.ipv4.tcp_mem {mb[0]}/{mb[1]}/{mb[2]} MB (low/pressure/max)")
    conntrack = sysctl("net.netfilter.nf_conntrack_max")
    if conntrack:
        low = conntrack[0] < sockets + 10_000
        notes.append(
            f"net.netfilter.nf_conntrack_max {conntrack[0]:,}: one entry per connection, "
            "where the firewall tracks loopback" + (" (LOW)" if low else "")
        )
    file_max = (sysctl("fs.file-max") or [0])[0]
    notes.append(
        f"fs.file-max {file_max:,}, fs.nr_open {(sysctl('fs.nr_open') or [0])[0]:,}: "
        f"{2 * sockets:,} descriptors open on this machine (both ends)"
        + (" (LOW)" if file_max < 2 * sockets + 10_000 else "")
    )
    return notes


def netstat(*names: str) -> dict[str, int]:
    """TcpExt counters from /proc/net/netstat (ListenOverflows, ListenDrops, ...)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    values: dict[str, int] = {}
    for head, row in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            values = dict(zip(head.split()[1:], map(int, row.split()[1:]), strict=True))
    return {name: values.get(name, 0) for name in names}


def tcp_memory_mb() -> float:
    """The kernel's memory in TCP buffers, all sockets (/proc/net/sockstat, pages)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * PAGE / 2**20
    return 0.0


def slab_bytes() -> int:
    """The kernel's unreclaimable slab (socket, inode, epoll structures live there)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SUnreclaim:"):
            return int(line.split()[1]) * 1024
    return 0


def conntrack_count() -> int | None:
    """Connections the firewall tracks now (None: no conntrack on this machine)."""
    count = sysctl("net.netfilter.nf_conntrack_count")
    return count[0] if count else None


@dataclass(frozen=True)
class Proc:
    """A process seen through /proc."""

    pid: int

    def cpu(self) -> float:
        """utime + stime in seconds (stat(5) fields 14, 15)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def waited(self) -> float:
        """Seconds it was runnable but waited for a CPU (/proc/<pid>/schedstat, 2nd field):
        what the machine's other work took from it."""
        return int(Path(f"/proc/{self.pid}/schedstat").read_text().split()[1]) / 1e9

    def status(self, field: str) -> int:
        """A /proc/<pid>/status figure in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        return 0

    def file_limit(self) -> int:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        return 0
