"""Hosts made of network namespaces (iproute2): a hub that runs the platform and two worker
hosts, each on a veth pair of its own, on private test addresses.

The hub's services listen on ``HUB_IP`` (an address on the hub's loopback), routed to from
every other host, the test's own (root) namespace included, so every process uses one URL
for each service whichever host it runs on. ``cut`` takes a worker host's link down (its
route goes with it) and ``restore`` brings both back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

HUB_IP = "10.200.0.1"


def available() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


def _ip(*argv: str, netns: str | None = None) -> None:
    command = ["ip", *argv] if netns is None else ["ip", "netns", "exec", netns, "ip", *argv]
    subprocess.run(command, check=True, capture_output=True, timeout=30)


@dataclass
class Link:
    netns: str  # the far end's namespace (None: the root one)
    device: str  # the far end's device
    address: str  # the far end's address
    gateway: str  # the hub's end


@dataclass
class Hosts:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hub: str = ""
    workers: list[str] = field(default_factory=list)
    links: dict[str, Link] = field(default_factory=dict)
    _devices: list[str] = field(default_factory=list)

    @property
    def hub_name(self) -> str:
        """The hub's namespace (known before ``build``, to place services there)."""
        return f"zt{self.tag}hub"

    def build(self, n_workers: int = 2) -> Hosts:
        self.hub = self.hub_name
        _ip("netns", "add", self.hub)
        _ip("link", "set", "lo", "up", netns=self.hub)
        _ip("addr", "add", f"{HUB_IP}/32", "dev", "lo", netns=self.hub)
        # the test's own namespace reaches the hub too (it submits and reads the store)
        self._pair(None, 3)
        for i in range(n_workers):
            name = f"zt{self.tag}w{i}"
            _ip("netns", "add", name)
            _ip("link", "set", "lo", "up", netns=name)
            self.workers.append(name)
            self._pair(name, 10 + i)
        return self

    def _pair(self, netns: str | None, subnet: int) -> None:
        near, far = f"zt{self.tag}h{subnet}", f"zt{self.tag}f{subnet}"
        _ip("link", "add", near, "type", "veth", "peer", "name", far)
        self._devices.append(near)
        _ip("link", "set", near, "netns", self.hub)
        gateway, address = f"10.200.{subnet}.1", f"10.200.{subnet}.2"
        _ip("addr", "add", f"{gateway}/30", "dev", near, netns=self.hub)
        _ip("link", "set", near, "up", netns=self.hub)
        if netns is not None:
            _ip("link", "set", far, "netns", netns)
        _ip("addr", "add", f"{address}/30", "dev", far, netns=netns)
        link = Link(netns=netns or "", device=far, address=address, gateway=gateway)
        self.links[netns or "root"] = link
        self.restore(netns or "root")

    def cut(self, host: str) -> None:
        """The host drops off the network: its link goes down (in-flight packets are lost)."""
        link = self.links[host]
        _ip("link", "set", link.device, "down", netns=link.netns or None)

    def restore(self, host: str) -> None:
        link = self.links[host]
        _ip("link", "set", link.device, "up", netns=link.netns or None)
        _ip("route", "replace", f"{HUB_IP}/32", "via", link.gateway, netns=link.netns or None)

    def host_of(self, address: str) -> str | None:
        """The worker host whose link has ``address`` (a Dask worker's tls://ip:port)."""
        for host, link in self.links.items():
            if f"//{link.address}:" in address:
                return host
        return None

    def prefix(self, netns: str) -> list[str]:
        return ["ip", "netns", "exec", netns]

    def destroy(self) -> None:
        root = self.links.get("root")
        if root is not None:
            subprocess.run(["ip", "link", "del", root.device], capture_output=True, check=False)
        for name in [*self.workers, self.hub]:
            if name:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
